"""Incomplete or odd data never turns a found harm into silence (issue 14), through the HTTP API.

The patient is the well-managed Prolia patient of the baseline scenario (no cards with her full
record); each test takes something away, cuts it, hides it behind a page link or a reference, or
writes it the way some EHR does, and checks the cards a clinician would need from what arrived.
The FHIR server is mocked with `responses`; it honours `_sort` and pages at its own size.
"""

from __future__ import annotations

import copy
import json
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import responses

from cds_service.config import Settings
from tests.requests_for_tests import FHIR_BASE, baseline_request, searchset

TOKEN = "access-token-for-the-test"
PID = "pat-wm-0001"
AS_OF = datetime(2026, 11, 25, 15, 0, tzinfo=timezone.utc)
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CALCIUM, ALBUMIN, EGFR = "17861-6", "1751-7", "98979-8"
ORDER_SIGN = "/cds-services/order-sign"


# --- realistic data ------------------------------------------------------------------------------

def lab(lab_id: str, code: str, when: datetime, value=None, unit: str | None = "mg/dL", *, subject="default", **extra) -> dict:
    """A US Core lab Observation as Epic / Oracle Health send it."""
    resource = {
        "resourceType": "Observation", "id": lab_id, "status": "final",
        "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab"]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "effectiveDateTime": when.isoformat(), "issued": (when + timedelta(hours=3)).isoformat(),
    }
    if subject == "default":
        resource["subject"] = {"reference": f"Patient/{PID}"}
    elif subject is not None:
        resource["subject"] = subject
    if value is not None:
        quantity = {"value": value}
        if unit:
            quantity.update(unit=unit, system="http://unitsofmeasure.org", code=unit)
        resource["valueQuantity"] = quantity
    resource.update(extra)
    return resource


def days_ago(days: float) -> datetime:
    return AS_OF - timedelta(days=days)


def labs_without_calcium(request: dict) -> list[dict]:
    """The baseline's labs (albumin, eGFR, vitamin D) without its calcium."""
    return [e["resource"] for e in request["prefetch"]["labResults"]["entry"]
            if e["resource"]["code"]["coding"][0]["code"] not in (CALCIUM,)]


def normal_calciums(count: int, newest_days_ago: float = 40) -> list[dict]:
    """A long history of normal calciums, newest first, all older than the 30-day window."""
    return [lab(f"ca-old-{i}", CALCIUM, days_ago(newest_days_ago + 30 * i), 9.3) for i in range(count)]


def low_calcium(days: float = 3) -> dict:
    return lab("ca-low", CALCIUM, days_ago(days), 7.4)  # below 8.0 mg/dL: CTCAE grade 2, critical


def with_fhir_server(request: dict) -> dict:
    request["fhirServer"] = FHIR_BASE
    request["fhirAuthorization"] = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300,
                                    "scope": "patient/*.read", "subject": "denosumab-cds"}
    return request


def cards_of(response) -> dict[str, dict]:
    assert response.status_code == 200, response.get_data(as_text=True)
    cards = response.get_json()["cards"]
    by_topic = {c["source"]["topic"]["code"]: c for c in cards}
    assert len(by_topic) == len(cards)
    return by_topic


def indicators(response) -> dict[str, str]:
    return {topic: card["indicator"] for topic, card in cards_of(response).items()}


class PagingServer:
    """A FHIR server that answers searches newest first (when asked) at its own page size."""

    def __init__(self, rsps, page_size: int = 5, honour_sort: bool = True):
        self.rsps, self.page_size, self.honour_sort = rsps, page_size, honour_sort
        self.searches: list[str] = []

    def serve(self, resource_type: str, resources: list[dict], *, date_of=lambda r: r["effectiveDateTime"],
              fail_page: int | None = None, slow_page: int | None = None) -> None:
        def answer(request):
            query = parse_qs(urlsplit(request.url).query)
            page = int(query.get("page", ["1"])[0])
            if page == 1:
                self.searches.append(request.url)
            if page == fail_page:
                return 500, {}, json.dumps({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]})
            if page == slow_page:
                time.sleep(1.5)
            ordered = list(resources)
            if self.honour_sort and query.get("_sort", [""])[0].startswith("-"):
                ordered.sort(key=date_of, reverse=True)
            chunk = ordered[(page - 1) * self.page_size: page * self.page_size]
            more = page * self.page_size < len(ordered)
            # The next link keeps the search (its sort) and names the next page, as servers do.
            query = {name: values[0] for name, values in query.items()} | {"page": str(page + 1)}
            body = searchset(chunk, f"{FHIR_BASE}/{resource_type}?{urlencode(query)}" if more else None)
            return 200, {"Content-Type": "application/fhir+json"}, json.dumps(body)

        self.rsps.add_callback(responses.GET, f"{FHIR_BASE}/{resource_type}", callback=answer)


@pytest.fixture
def fhir_app(make_app):
    def factory(**settings):
        base = dict(allowed_fhir_servers=(FHIR_BASE,), fhir_timeout_seconds=1.0, fhir_max_pages=3)
        return make_app(Settings(**{**base, **settings}), as_of=AS_OF).test_client()
    return factory


# --- 1. the page limit is not the whole history --------------------------------------------------

def test_page_limit_costs_old_history_not_the_newest_low_calcium(fhir_app):
    """60 older normal calciums listed before a low one, page size 5, page limit 3: asked newest
    first, the low calcium is on page 1; the cut is reported, no "no calcium" card."""
    client = fhir_app()
    request = with_fhir_server(baseline_request())
    others = labs_without_calcium(request)
    del request["prefetch"]["labResults"]
    with responses.RequestsMock() as rsps:
        server = PagingServer(rsps)
        server.serve("Observation", normal_calciums(60) + [low_calcium()] + others)
        response = client.post(ORDER_SIGN, json=request)
    (search,) = server.searches
    assert parse_qs(urlsplit(search).query)["_sort"] == ["-date"] and "_count" in parse_qs(urlsplit(search).query)
    got = indicators(response)
    assert got["hypocalcemia"] == "critical"
    assert "calcium-monitoring" not in got
    assert got["data-unavailable"] == "info"  # nothing that could be critical was left unchecked
    detail = cards_of(response)["data-unavailable"]["detail"]
    assert "Lab results: cut at the page limit" in detail and "reaches back to" in detail


def test_a_server_that_ignores_sort_cut_at_the_page_limit_gives_no_absence_card(fhir_app):
    """The same history from a server that ignores `_sort` (oldest first): the low calcium is
    beyond the page limit. Nothing found in the window proves nothing: no "no calcium" card, the
    check is listed instead."""
    client = fhir_app()
    request = with_fhir_server(baseline_request())
    others = labs_without_calcium(request)
    del request["prefetch"]["labResults"]
    history = list(reversed(normal_calciums(60))) + [low_calcium()] + others
    with responses.RequestsMock() as rsps:
        PagingServer(rsps, honour_sort=False).serve("Observation", history)
        response = client.post(ORDER_SIGN, json=request)
    got = indicators(response)
    assert "calcium-monitoring" not in got
    detail = cards_of(response)["data-unavailable"]["detail"]
    assert "a serum calcium in the last 30 days" in detail and "cut at the page limit" in detail


def test_page_limit_on_conditions_still_finds_the_active_pregnancy(fhir_app):
    """60 resolved encounter diagnoses recorded before an active pregnancy: newest first by
    recorded-date, the pregnancy is read and the critical card issued."""
    client = fhir_app()
    request = with_fhir_server(baseline_request())
    del request["prefetch"]["conditions"]
    old = [{"resourceType": "Condition", "id": f"enc-dx-{i}", "subject": {"reference": f"Patient/{PID}"},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "encounter-diagnosis"}]}],
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "resolved"}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "J06.9"}]},
            "recordedDate": days_ago(60 + 20 * i).date().isoformat()} for i in range(60)]
    pregnancy = {"resourceType": "Condition", "id": "dx-pregnancy", "subject": {"reference": f"Patient/{PID}"},
                 "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}],
                 "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                 "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
                 "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "Z33.1", "display": "Pregnant state, incidental"}]},
                 "onsetDateTime": days_ago(70).isoformat(), "recordedDate": days_ago(20).date().isoformat()}
    with responses.RequestsMock() as rsps:
        server = PagingServer(rsps)
        server.serve("Condition", old + [pregnancy], date_of=lambda r: r["recordedDate"])
        response = client.post(ORDER_SIGN, json=request)
    assert parse_qs(urlsplit(server.searches[0]).query)["_sort"] == ["-recorded-date"]
    assert indicators(response)["pregnancy"] == "critical"


# --- 2. data in hand is kept ---------------------------------------------------------------------

def _prefetched_low_calcium_with_next(request: dict) -> dict:
    request["prefetch"]["labResults"] = searchset(
        [low_calcium()] + labs_without_calcium(request), f"{FHIR_BASE}/Observation?patient={PID}&page=2")
    return request


@pytest.mark.parametrize("how, cause", [
    ("no server", "there is no FHIR server to ask"),
    ("server error", "the FHIR server answered with an error"),
    ("slow", "did not answer in time"),
])
def test_a_prefetched_page_whose_next_link_fails_keeps_its_low_calcium(fhir_app, how, cause):
    client = fhir_app(fhir_timeout_seconds=0.5)
    request = _prefetched_low_calcium_with_next(baseline_request())
    if how != "no server":
        with_fhir_server(request)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        if how == "server error":
            rsps.add(responses.GET, f"{FHIR_BASE}/Observation", status=500,
                     json={"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]})
        elif how == "slow":
            rsps.add_callback(responses.GET, f"{FHIR_BASE}/Observation",
                              callback=lambda _r: (time.sleep(1.5), (200, {}, json.dumps(searchset([]))))[1])
        response = client.post(ORDER_SIGN, json=request)
    got = indicators(response)
    assert got["hypocalcemia"] == "critical"  # the low calcium in hand is not thrown away
    assert cause in cards_of(response)["data-unavailable"]["detail"]


def test_a_failing_or_slow_second_page_keeps_the_first(fhir_app):
    client = fhir_app(fhir_timeout_seconds=0.8)
    for trouble in ("fail_page", "slow_page"):
        request = with_fhir_server(baseline_request())
        others = labs_without_calcium(request)
        del request["prefetch"]["labResults"]
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            PagingServer(rsps).serve("Observation", [low_calcium()] + others + normal_calciums(10), **{trouble: 2})
            response = client.post(ORDER_SIGN, json=request)
        got = indicators(response)
        assert got["hypocalcemia"] == "critical", trouble
        detail = cards_of(response)["data-unavailable"]["detail"]
        assert ("answered with an error" if trouble == "fail_page" else "did not answer in time") in detail


def test_an_operation_outcome_prefetch_without_a_server_is_named_as_such(make_app):
    client = make_app(as_of=AS_OF).test_client()
    request = baseline_request()
    request.pop("fhirServer", None)
    request["prefetch"]["procedures"] = {"resourceType": "OperationOutcome",
                                         "issue": [{"severity": "error", "code": "timeout", "diagnostics": "prefetch timed out"}]}
    response = client.post(ORDER_SIGN, json=request)
    got = indicators(response)
    assert "dental-clearance" not in got  # "no dental exam" cannot be concluded from missing procedures
    assert "the EHR sent an OperationOutcome" in cards_of(response)["data-unavailable"]["detail"]


# --- 3. referenced Medications -------------------------------------------------------------------

PROLIA_MEDICATION = {"resourceType": "Medication", "id": "med-1",
                     "code": {"coding": [{"system": RXNORM, "code": "993456", "display": "1 ML denosumab 60 MG/ML Prefilled Syringe [Prolia]"}],
                              "text": "Prolia 60 mg/mL"}}


def _draft_by_reference(request: dict, reference: str = "Medication/med-1") -> dict:
    draft = request["context"]["draftOrders"]["entry"][0]["resource"]
    del draft["medicationCodeableConcept"]
    draft["medicationReference"] = {"reference": reference}
    request["prefetch"]["labResults"] = searchset([low_calcium()] + labs_without_calcium(request))
    return request


@pytest.mark.parametrize("where", ["draftOrders", "prefetch", "fhir server"])
def test_a_draft_whose_medication_is_a_separate_resource_gets_its_cards(fhir_app, where):
    client = fhir_app()
    request = _draft_by_reference(baseline_request())
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        if where == "draftOrders":
            request["context"]["draftOrders"]["entry"].append(
                {"fullUrl": f"{FHIR_BASE}/Medication/med-1", "resource": PROLIA_MEDICATION})
        elif where == "prefetch":
            request["prefetch"]["medicationRequests"]["entry"].append(
                {"resource": PROLIA_MEDICATION, "search": {"mode": "include"}})
        else:
            with_fhir_server(request)
            read = rsps.get(f"{FHIR_BASE}/Medication/med-1", json=PROLIA_MEDICATION)
        response = client.post(ORDER_SIGN, json=request)
    assert indicators(response) == {"hypocalcemia": "critical"}
    if where == "fhir server":
        assert read.call_count == 1 and read.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_an_order_whose_medication_cannot_be_found_is_not_another_drug(fhir_app):
    client = fhir_app()
    request = with_fhir_server(_draft_by_reference(baseline_request()))
    with responses.RequestsMock() as rsps:
        rsps.get(f"{FHIR_BASE}/Medication/med-1", status=404,
                 json={"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]})
        response = client.post(ORDER_SIGN, json=request)
    got = indicators(response)
    assert got == {"data-unavailable": "warning"}
    assert "could not be identified" in cards_of(response)["data-unavailable"]["detail"]


def test_history_entries_are_read_through_their_medication_reference(make_app):
    """The last Prolia administration names a Medication in the same prefetch Bundle; the dose
    date counts (on therapy), so no initiation dental-clearance card."""
    client = make_app(as_of=AS_OF).test_client()
    request = baseline_request()
    administration = request["prefetch"]["medicationAdministrations"]["entry"][0]["resource"]
    del administration["medicationCodeableConcept"]
    administration["medicationReference"] = {"reference": "Medication/med-1"}
    request["prefetch"]["medicationAdministrations"]["entry"].append({"resource": PROLIA_MEDICATION, "search": {"mode": "include"}})
    assert client.post(ORDER_SIGN, json=request).get_json() == {"cards": []}


# --- 4. other patients' data ---------------------------------------------------------------------

@pytest.mark.parametrize("subject", [
    None,
    {"reference": "Group/ward-7"},
    {"reference": f"patient/{PID}"},
    {"display": "Jane Doe"},
    {"reference": "#p1"},
    {"reference": f"https://other-ehr.example.net/fhir/Patient/{PID}"},
    {"reference": "urn:uuid:5c7fe3a3-1d1b-4c64-9b3e-0c8f35a1a2b4"},
    {"reference": "Patient/pat-other-0002"},
])
def test_a_low_calcium_of_any_other_subject_is_never_used(make_app, subject):
    client = make_app(as_of=AS_OF).test_client()
    request = baseline_request()
    theirs = lab("ca-theirs", CALCIUM, days_ago(2), 7.1, subject=subject)
    request["prefetch"]["labResults"]["entry"].append({"resource": theirs})
    response = client.post(ORDER_SIGN, json=request)
    assert "hypocalcemia" not in indicators(response)
    assert int(response.headers["X-Skipped-Resources"]) >= 1


def test_the_patients_own_urn_uuid_and_absolute_url_count(make_app):
    client = make_app(as_of=AS_OF).test_client()
    request = baseline_request()
    urn = "urn:uuid:2b0a6ad9-3c2e-4d52-9f0e-6d6f5c3a7e10"
    request["prefetch"]["patient"] = {"resourceType": "Bundle", "type": "searchset",
                                      "entry": [{"fullUrl": urn, "resource": request["prefetch"]["patient"]}]}
    for reference in (urn, f"{FHIR_BASE}/Patient/{PID}"):
        request["prefetch"]["labResults"] = searchset(
            [lab("ca-mine", CALCIUM, days_ago(2), 7.1, subject={"reference": reference})] + labs_without_calcium(request))
        assert indicators(client.post(ORDER_SIGN, json=request))["hypocalcemia"] == "critical", reference


def test_a_dental_examination_of_another_subject_does_not_clear_the_dental_card(make_app):
    """Initiating (no dose in 12 months): only a dental exam of this patient suppresses the card."""
    client = make_app(as_of=AS_OF).test_client()
    request = baseline_request()
    request["prefetch"]["medicationAdministrations"] = searchset([])
    request["prefetch"]["medicationRequests"] = searchset([])
    exam = request["prefetch"]["procedures"]["entry"][0]["resource"]
    exam["subject"] = {"reference": "Group/dental-clinic-list"}
    assert indicators(client.post(ORDER_SIGN, json=request))["dental-clearance"] == "warning"


# --- 5. bounds and values without units -------------------------------------------------------------

def test_an_egfr_written_as_less_than_15_counts_as_below_30(make_app):
    client = make_app(as_of=AS_OF).test_client()
    request = baseline_request()
    labs = labs_without_calcium(request)
    for resource in labs:
        if resource["code"]["coding"][0]["code"] == EGFR:
            resource.pop("valueQuantity")
            resource["valueString"] = "<15"
    request["prefetch"]["labResults"] = searchset(labs + [lab("ca-ok", CALCIUM, days_ago(5), 9.4)])
    got = indicators(client.post(ORDER_SIGN, json=request))
    assert "hypocalcemia-risk" in got  # advanced CKD: eGFR < 15 is below 30


def test_a_calcium_without_unit_is_read_in_the_one_plausible_unit_and_says_so(make_app):
    client = make_app(as_of=AS_OF).test_client()
    request = baseline_request()
    request["prefetch"]["labResults"] = searchset(
        labs_without_calcium(request) + [lab("ca-bare", CALCIUM, days_ago(3), 7.2, unit=None)])
    response = client.post(ORDER_SIGN, json=request)
    got = indicators(response)
    assert got["hypocalcemia"] == "critical"
    assert "calcium-monitoring" not in got  # no self-contradicting "no calcium" card
    assert "unit not reported, read as mg/dL" in cards_of(response)["hypocalcemia"]["detail"]


def test_a_calcium_without_unit_plausible_in_two_units_is_unusable_and_listed(make_app):
    client = make_app(as_of=AS_OF).test_client()
    request = baseline_request()
    request["prefetch"]["labResults"] = searchset(
        labs_without_calcium(request) + [lab("ca-bare", CALCIUM, days_ago(3), 4.0, unit=None)])
    response = client.post(ORDER_SIGN, json=request)
    got = indicators(response)
    assert got == {"data-unavailable": "warning"}  # could have been critical hypocalcemia
    detail = cards_of(response)["data-unavailable"]["detail"]
    assert "plausible in mg/dL and in mmol/L" in detail
    assert "a serum calcium in the last 30 days" in detail


# --- 6. patient-view -------------------------------------------------------------------------------

def test_patient_view_with_only_its_medication_egfr_and_dxa_keys_is_answered(make_app):
    client = make_app(as_of=AS_OF).test_client()
    request = baseline_request()
    prefetch = request["prefetch"]
    labs = [e["resource"] for e in prefetch["labResults"]["entry"] if e["resource"]["code"]["coding"][0]["code"] == EGFR]
    body = {
        "hook": "patient-view", "hookInstance": request["hookInstance"],
        "context": {"userId": "Practitioner/prac-77", "patientId": PID},
        "prefetch": {key: prefetch[key] for key in ("medicationRequests", "medicationAdministrations",
                                                   "medicationDispenses", "medicationStatements")}
                    | {"labResults": searchset(labs), "procedures": searchset([])},  # no DXA on file
    }
    response = client.post("/cds-services/patient-view", json=body)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"cards": []}  # dose on schedule: nothing to say


# --- 7. selections [] ------------------------------------------------------------------------------

def test_order_select_with_an_empty_selection_selects_nothing(fhir_app):
    client = fhir_app()
    request = with_fhir_server(baseline_request())
    request["hook"] = "order-select"
    request["context"]["selections"] = []
    del request["prefetch"]
    with responses.RequestsMock() as rsps:  # nothing registered: any query would fail the test
        response = client.post("/cds-services/order-select", json=request)
        assert len(rsps.calls) == 0
    assert response.status_code == 200 and response.get_json() == {"cards": []}


# --- 8. unreadable orders --------------------------------------------------------------------------

def spec_order_sign_example_with_prolia() -> dict:
    """The CDS Hooks 2.0 specification's order-sign example, Prolia swapped in for its drug; its
    draft id holds a non-ASCII hyphen (U+2011), as the published example does."""
    request = baseline_request()
    draft = request["context"]["draftOrders"]["entry"][0]["resource"]
    draft["id"] = "request\u2011123"
    return request


def test_the_specifications_order_sign_example_with_prolia_gets_its_cards(make_app):
    client = make_app(as_of=AS_OF).test_client()
    request = spec_order_sign_example_with_prolia()
    request["prefetch"]["labResults"] = searchset([low_calcium()] + labs_without_calcium(request))
    response = client.post(ORDER_SIGN, json=request)
    assert indicators(response) == {"hypocalcemia": "critical"}  # read in full although its id is invalid
    assert response.headers["X-Skipped-Resources"] == "1"  # and the invalid id is reported
    delete = [a for s in cards_of(response)["hypocalcemia"]["suggestions"] for a in s["actions"] if a["type"] == "delete"]
    assert delete and delete[0]["resourceId"] == "MedicationRequest/request\u2011123"  # cancels the order as the EHR named it


def test_a_draft_that_fails_validation_but_names_prolia_is_still_checked(make_app):
    client = make_app(as_of=AS_OF).test_client()
    request = baseline_request()
    draft = request["context"]["draftOrders"]["entry"][0]["resource"]
    draft["dosageInstruction"][0]["timing"] = {"repeat": {"period": "six", "periodUnit": "mo"}}
    request["prefetch"]["labResults"] = searchset([low_calcium()] + labs_without_calcium(request))
    response = client.post(ORDER_SIGN, json=request)
    got = indicators(response)
    assert got["hypocalcemia"] == "critical"
    assert got["data-unavailable"] == "info"
    assert "could not be fully read" in cards_of(response)["data-unavailable"]["detail"]


def test_a_dstu2_medication_order_for_prolia_is_named_not_ignored(make_app):
    client = make_app(as_of=AS_OF).test_client()
    request = baseline_request()
    request["context"]["draftOrders"]["entry"][0]["resource"] = {
        "resourceType": "MedicationOrder", "id": "order-123", "status": "draft",
        "patient": {"reference": f"Patient/{PID}"}, "dateWritten": "2026-11-25",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "993456"}], "text": "Prolia 60 mg/mL"},
    }
    response = client.post(ORDER_SIGN, json=request)
    assert indicators(response) == {"data-unavailable": "warning"}
    assert "A denosumab order in this request could not be read" in cards_of(response)["data-unavailable"]["detail"]
    assert int(response.headers["X-Skipped-Resources"]) >= 1


# --- 9. a FHIR server the service may not read -----------------------------------------------------

def test_the_specifications_patient_view_example_is_412_not_400(fhir_app):
    client = fhir_app()
    body = {
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea", "fhirServer": "http://hooks.smarthealthit.org:9080",
        "hook": "patient-view", "fhirAuthorization": {"access_token": "some-opaque-fhir-access-token",
                                                      "token_type": "Bearer", "expires_in": 300,
                                                      "scope": "user/Patient.read user/Observation.read",
                                                      "subject": "cds-service4"},
        "context": {"userId": "Practitioner/example", "patientId": "1288992", "encounterId": "89284"},
    }
    with responses.RequestsMock() as rsps:
        response = client.post("/cds-services/patient-view", json=body)
        assert len(rsps.calls) == 0
    assert response.status_code == 412
    server, keys = response.get_json()["issue"]
    assert server["expression"] == ["fhirServer"] and "not a FHIR server this service is allowed" in server["diagnostics"]
    assert "medicationRequests" in keys["diagnostics"]


# --- pages or all at once: the same cards when the data is complete --------------------------------

def test_paged_and_unpaged_reading_give_the_same_cards_when_complete(fhir_app):
    from hypothesis import HealthCheck, given, settings, strategies as st

    base = baseline_request()
    others = labs_without_calcium(base)

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        calcium_days=st.lists(st.integers(min_value=1, max_value=400), min_size=0, max_size=12),
        low_index=st.one_of(st.none(), st.integers(min_value=0, max_value=11)),
        page_size=st.integers(min_value=1, max_value=7),
    )
    def check(calcium_days, low_index, page_size):
        calciums = [lab(f"ca-{i}", CALCIUM, days_ago(d), 7.6 if i == low_index else 9.2) for i, d in enumerate(calcium_days)]
        history = calciums + others
        answers = []
        for size in (1000, page_size):
            client = fhir_app(fhir_max_pages=1000, fhir_timeout_seconds=5.0)
            request = with_fhir_server(copy.deepcopy(base))
            del request["prefetch"]["labResults"]
            with responses.RequestsMock() as rsps:
                PagingServer(rsps, page_size=size).serve("Observation", history)
                response = client.post(ORDER_SIGN, json=request)
            answers.append(sorted((c["source"]["topic"]["code"], c["indicator"], c["summary"]) for c in response.get_json()["cards"]))
        assert answers[0] == answers[1]
        assert "data-unavailable" not in {topic for topic, _, _ in answers[0]}

    check()


def test_a_draft_recognisable_only_by_its_text_is_named_when_it_cannot_be_read(make_app):
    """Its medication is a bare string (not a CodeableConcept): unreadable, but recognisably
    Prolia, so named on the data-unavailable card with why."""
    client = make_app(as_of=AS_OF).test_client()
    request = baseline_request()
    draft = request["context"]["draftOrders"]["entry"][0]["resource"]
    draft["medicationCodeableConcept"] = "Prolia 60 mg/mL prefilled syringe"
    response = client.post(ORDER_SIGN, json=request)
    assert indicators(response) == {"data-unavailable": "warning"}
    detail = cards_of(response)["data-unavailable"]["detail"]
    assert "A denosumab order in this request could not be read: medicationCodeableConcept" in detail


def test_an_unrelated_order_that_cannot_be_read_costs_nothing(fhir_app):
    """A malformed amoxicillin draft: not recognisably a denosumab or follow-on order, so no card
    and no FHIR query (only counted as skipped)."""
    client = fhir_app()
    request = with_fhir_server(baseline_request())
    draft = request["context"]["draftOrders"]["entry"][0]["resource"]
    draft["medicationCodeableConcept"] = {"coding": [{"system": RXNORM, "code": "308191", "display": "amoxicillin 500 MG Oral Capsule"}]}
    draft["authoredOn"] = "yesterday"
    del request["prefetch"]
    with responses.RequestsMock() as rsps:
        response = client.post(ORDER_SIGN, json=request)
        assert len(rsps.calls) == 0
    assert response.get_json() == {"cards": []} and response.headers["X-Skipped-Resources"] == "1"


def test_a_history_entrys_medication_is_read_from_the_fhir_server(fhir_app):
    """The last Prolia administration names Medication/med-1, which only the server holds: read
    (GET Medication/med-1, with the token), so the dose counts and the patient is on therapy."""
    client = fhir_app()
    request = with_fhir_server(baseline_request())
    administration = request["prefetch"]["medicationAdministrations"]["entry"][0]["resource"]
    del administration["medicationCodeableConcept"]
    administration["medicationReference"] = {"reference": "Medication/med-1"}
    with responses.RequestsMock() as rsps:
        read = rsps.get(f"{FHIR_BASE}/Medication/med-1", json=PROLIA_MEDICATION)
        response = client.post(ORDER_SIGN, json=request)
    assert response.get_json() == {"cards": []}
    assert read.call_count == 1


def test_a_history_entry_whose_medication_cannot_be_found_leaves_medication_absences_open(make_app):
    """Without the Medication the administration may be the last Prolia dose: "no dose in 12
    months" (initiating: dental examination needed) cannot be concluded, and is said instead."""
    client = make_app(as_of=AS_OF).test_client()
    request = baseline_request()
    request.pop("fhirServer", None)
    request["prefetch"]["medicationRequests"] = searchset([])
    request["prefetch"]["procedures"] = searchset([])  # no dental examination on file
    administration = request["prefetch"]["medicationAdministrations"]["entry"][0]["resource"]
    del administration["medicationCodeableConcept"]
    administration["medicationReference"] = {"reference": "Medication/med-1"}
    response = client.post(ORDER_SIGN, json=request)
    got = indicators(response)
    assert "dental-clearance" not in got  # the initiation warning rests on "no dose in 12 months"
    detail = cards_of(response)["data-unavailable"]["detail"]
    assert "a denosumab dose in the last 12 months (initiation)" in detail
    assert "a referenced Medication could not be found" in detail


def test_patient_view_with_a_cut_medication_history_says_it_could_not_tell(make_app):
    client = make_app(as_of=AS_OF).test_client()
    body = {
        "hook": "patient-view", "hookInstance": "0d6b5c36-5a2a-4c59-9a35-0b1c4f8f7d21",
        "context": {"userId": "Practitioner/prac-77", "patientId": PID},
        "prefetch": {
            "medicationRequests": searchset([], f"{FHIR_BASE}/MedicationRequest?patient={PID}&page=2"),
            "medicationAdministrations": None, "medicationDispenses": None, "medicationStatements": None,
            "labResults": None, "procedures": None,
        },
    }
    response = client.post("/cds-services/patient-view", json=body)
    card = cards_of(response)["data-unavailable"]
    assert card["indicator"] == "info"
    assert "whether this patient has any denosumab on record" in card["detail"]


def test_a_dstu2_medication_order_in_the_history_is_counted_and_leaves_the_dose_history_open(make_app):
    client = make_app(as_of=AS_OF).test_client()
    request = baseline_request()
    request.pop("fhirServer", None)
    request["prefetch"]["medicationAdministrations"] = searchset([])
    request["prefetch"]["medicationRequests"] = searchset([{
        "resourceType": "MedicationOrder", "id": "mo-2026-05", "status": "completed", "dateWritten": "2026-05-20",
        "patient": {"reference": f"Patient/{PID}"},
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "993456"}], "text": "Prolia 60 mg/mL"}}])
    request["prefetch"]["procedures"] = searchset([])  # no dental examination on file
    response = client.post(ORDER_SIGN, json=request)
    assert int(response.headers["X-Skipped-Resources"]) >= 1
    got = indicators(response)
    assert "dental-clearance" not in got  # "no dose in 12 months" is not known: the old order may be one
    detail = cards_of(response)["data-unavailable"]["detail"]
    assert "not FHIR R4" in detail and "a denosumab dose in the last 12 months" in detail


def test_a_prefetch_bundle_holding_fewer_entries_than_its_total_is_incomplete(make_app):
    """An EHR that caps its prefetch (total 212, 1 entry, no next link): what it sent is used, and
    "no dental examination" is not concluded from it."""
    client = make_app(as_of=AS_OF).test_client()
    request = baseline_request()
    request["prefetch"]["procedures"] = {"resourceType": "Bundle", "type": "searchset", "total": 212, "entry": [{
        "resource": {"resourceType": "Procedure", "id": "proc-colonoscopy", "status": "completed",
                     "subject": {"reference": f"Patient/{PID}"}, "performedDateTime": "2026-10-01",
                     "code": {"coding": [{"system": "http://snomed.info/sct", "code": "73761001", "display": "Colonoscopy"}]}},
        "search": {"mode": "match"}}]}
    response = client.post(ORDER_SIGN, json=request)
    got = indicators(response)
    assert "dental-clearance" not in got
    assert "fewer entries than its Bundle's total" in cards_of(response)["data-unavailable"]["detail"]


def test_included_resources_do_not_make_up_for_matches_a_capped_prefetch_left_out(make_app):
    """`total` counts matches only: 2 matched, 1 sent with the 2 Practitioners it included
    (`_include=Procedure:performer`), no next link. Three entries for a total of 2 are still
    one match short, so "no dental examination" is not concluded."""
    client = make_app(as_of=AS_OF).test_client()
    request = baseline_request()
    performers = [{"resource": {"resourceType": "Practitioner", "id": f"pr-{n}", "name": [{"family": "Okafor"}]},
                   "search": {"mode": "include"}} for n in (1, 2)]
    request["prefetch"]["procedures"] = {"resourceType": "Bundle", "type": "searchset", "total": 2, "entry": [{
        "resource": {"resourceType": "Procedure", "id": "proc-colonoscopy", "status": "completed",
                     "subject": {"reference": f"Patient/{PID}"}, "performedDateTime": "2026-10-01",
                     "performer": [{"actor": {"reference": "Practitioner/pr-1"}}],
                     "code": {"coding": [{"system": "http://snomed.info/sct", "code": "73761001", "display": "Colonoscopy"}]}},
        "search": {"mode": "match"}}, *performers]}
    response = client.post(ORDER_SIGN, json=request)
    assert "dental-clearance" not in indicators(response)
    assert "fewer entries than its Bundle's total" in cards_of(response)["data-unavailable"]["detail"]


def _baseline_calcium(request: dict) -> dict:
    (calcium,) = [e["resource"] for e in request["prefetch"]["labResults"]["entry"] if e["resource"]["code"]["coding"][0]["code"] == "17861-6"]
    return calcium


@pytest.mark.parametrize("unreadable", [
    lambda calcium: calcium.update(interpretation=[{"coding": [{"code": 7}]}]),  # a number where a code belongs
    lambda calcium: calcium["valueQuantity"].update(value="nine"),  # not a decimal
    lambda calcium: calcium.update(effectiveDateTime="2026-13-45"),  # no such date: it may be recent
    lambda calcium: calcium.update(status="resulted"),  # not an R4 ObservationStatus code, nor one misspelt
])
def test_a_calcium_result_that_cannot_be_read_is_not_read_as_no_calcium(make_app, unreadable):
    """The patient's one calcium of the last 30 days fails validation: "no calcium in 30 days"
    is not concluded (the result may be the very one); data-unavailable says why instead."""
    client = make_app(as_of=AS_OF).test_client()
    assert indicators(client.post(ORDER_SIGN, json=baseline_request())) == {}
    request = baseline_request()
    unreadable(_baseline_calcium(request))
    response = client.post(ORDER_SIGN, json=request)
    got = indicators(response)
    assert "calcium-monitoring" not in got
    detail = cards_of(response)["data-unavailable"]["detail"]
    assert "a serum calcium in the last 30 days" in detail and "a record could not be read" in detail
    assert int(response.headers["X-Skipped-Resources"]) >= 1


def test_a_calcium_result_that_cannot_be_read_and_is_older_than_the_window_leaves_no_gap(make_app):
    client = make_app(as_of=AS_OF).test_client()
    request = baseline_request()
    calcium = _baseline_calcium(request)
    calcium.update(interpretation=[{"coding": [{"code": 7}]}], effectiveDateTime="2026-08-03T08:05:00-05:00")
    got = indicators(client.post(ORDER_SIGN, json=request))
    assert got["calcium-monitoring"] == "warning"  # none readable in 30 days, and the unreadable one is older


@pytest.mark.parametrize("issued", ["2026-11-20", "the next morning"])
def test_a_low_calcium_whose_issued_cannot_be_read_is_still_low_when_it_has_an_effective_date(make_app, issued):
    """`issued` is an instant; a bare date there is a common slip. The result is dated by its
    effective[x], so it is read without `issued`; with no effective[x], `issued` is its date and
    the result cannot be read (named on data-unavailable)."""
    client = make_app(as_of=AS_OF).test_client()
    request = baseline_request()
    calcium = _baseline_calcium(request)
    calcium.update(issued=issued)
    calcium["valueQuantity"]["value"] = 6.9
    response = client.post(ORDER_SIGN, json=request)
    assert indicators(response) == {"hypocalcemia": "critical"}
    del calcium["effectiveDateTime"]
    response = client.post(ORDER_SIGN, json=request)
    assert "hypocalcemia" not in indicators(response)
    assert "- Total calcium (serum/plasma or blood) (Observation" in cards_of(response)["data-unavailable"]["detail"]


def test_a_low_calcium_whose_reference_range_cannot_be_read_is_still_low(make_app):
    """The range is dropped, not the result: the catalog's limits stand in, and the card says so."""
    client = make_app(as_of=AS_OF).test_client()
    request = baseline_request()
    calcium = _baseline_calcium(request)
    calcium["valueQuantity"]["value"] = 6.9
    calcium["referenceRange"] = [{"low": {"value": "8.6 mg/dL"}, "high": {"value": 10.2, "unit": "mg/dL"}}, {"text": 5}]
    response = client.post(ORDER_SIGN, json=request)
    assert indicators(response) == {"hypocalcemia": "critical"}
    assert "(the lab's own reference range could not be read)" in cards_of(response)["hypocalcemia"]["detail"]
    assert "below the lower limit of 8.5 mg/dL (2.12 mmol/L)" in cards_of(response)["hypocalcemia"]["detail"]
    assert "X-Skipped-Resources" not in response.headers


@pytest.mark.parametrize("unreadable", [
    lambda calcium: calcium.update(interpretation=[{"coding": [{"code": 7}]}]),
    lambda calcium: calcium["valueQuantity"].update(value="six point nine"),
    # a range that can be done without does not save a result whose value fails too
    lambda calcium: (calcium.update(referenceRange=[{"low": {"value": "8.6 mg/dL"}}]), calcium["valueQuantity"].update(value="6,9")),
    lambda calcium: calcium.update(status="resulted"),
])
def test_a_newer_calcium_that_cannot_be_read_is_named_not_passed_over_for_an_older_normal_one(make_app, unreadable):
    """Yesterday's calcium (6.9 mg/dL) fails validation; the normal one of 15 days ago is read.
    Neither card that rests on them may stay silent about the newer record: data-unavailable
    names it, as a warning (a calcium can make the hypocalcemia card critical)."""
    client = make_app(as_of=AS_OF).test_client()
    request = baseline_request()
    newer = copy.deepcopy(_baseline_calcium(request))
    newer.update(id="ca-yesterday", effectiveDateTime=days_ago(1).isoformat())
    newer["valueQuantity"]["value"] = 6.9
    unreadable(newer)
    request["prefetch"]["labResults"]["entry"].append({"resource": newer, "search": {"mode": "match"}})
    request["prefetch"]["labResults"]["total"] = len(request["prefetch"]["labResults"]["entry"])
    response = client.post(ORDER_SIGN, json=request)
    got = indicators(response)
    assert got == {"data-unavailable": "warning"}
    card = cards_of(response)["data-unavailable"]
    assert "could not be read" in card["summary"]
    assert f"- Total calcium (serum/plasma or blood) (Observation, {days_ago(1).date().isoformat()})." in card["detail"]
    assert response.headers["X-Skipped-Resources"] == "1"


def test_a_pregnancy_diagnosis_that_cannot_be_read_is_named_as_a_warning(make_app):
    client = make_app(as_of=AS_OF).test_client()
    request = _with_pregnancy(baseline_request(), clinicalStatus={"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]})
    request["prefetch"]["conditions"]["entry"][-1]["resource"]["onsetDateTime"] = "early this year"
    response = client.post(ORDER_SIGN, json=request)
    assert indicators(response) == {"data-unavailable": "warning"}
    assert "- Pregnancy (Condition, date not readable)." in cards_of(response)["data-unavailable"]["detail"]


def test_an_unreadable_record_only_non_critical_checks_read_gives_an_info_card(make_app):
    client = make_app(as_of=AS_OF).test_client()
    request = baseline_request()
    (exam,) = [e["resource"] for e in request["prefetch"]["procedures"]["entry"]]
    exam["status"] = "done"  # no code of the R4 event-status value set
    response = client.post(ORDER_SIGN, json=request)
    assert indicators(response) == {"data-unavailable": "info"}
    detail = cards_of(response)["data-unavailable"]["detail"]
    assert "- Dental examination (Procedure, 2026-08-15)." in detail
    assert "a dental examination" in detail  # the dental-clearance check it leaves open


@pytest.mark.parametrize("status", ["Final", "FINAL", " final "])
def test_a_low_calcium_whose_status_spells_final_another_way_gives_the_critical_card(make_app, status):
    """'Final' is no R4 code (codes are lower case) but no reader would misread it: the low calcium
    it marks is a low calcium, and a normal one still counts as the month's calcium."""
    client = make_app(as_of=AS_OF).test_client()
    request = baseline_request()
    _baseline_calcium(request)["status"] = status
    assert client.post(ORDER_SIGN, json=request).get_json() == {"cards": []}
    _baseline_calcium(request)["valueQuantity"]["value"] = 7.2
    response = client.post(ORDER_SIGN, json=request)
    assert indicators(response) == {"hypocalcemia": "critical"}
    assert "X-Skipped-Resources" not in response.headers


@pytest.mark.parametrize("status", ["Active", "active ", "ACTIVE"])
def test_a_supplement_order_whose_status_spells_active_another_way_is_on_the_list(make_app, status):
    client = make_app(as_of=AS_OF).test_client()
    request = baseline_request()
    (order,) = [e["resource"] for e in request["prefetch"]["medicationRequests"]["entry"] if e["resource"]["id"] == "mr-cad-1"]
    order["status"] = status
    assert client.post(ORDER_SIGN, json=request).get_json() == {"cards": []}


@pytest.mark.parametrize("status", ["taking", "current", "Actively taking"])
def test_a_supplement_order_whose_status_is_not_an_r4_code_is_not_read_as_no_supplement(make_app, status):
    """The active calcium + vitamin D order's status is outside the R4 value set: the order
    cannot be read, so "no calcium or vitamin D supplement" is not concluded from it."""
    client = make_app(as_of=AS_OF).test_client()
    request = baseline_request()
    (order,) = [e["resource"] for e in request["prefetch"]["medicationRequests"]["entry"] if e["resource"]["id"] == "mr-cad-1"]
    order["status"] = status
    response = client.post(ORDER_SIGN, json=request)
    assert "calcium-vitamin-d-supplementation" not in indicators(response)
    assert "a record could not be read" in cards_of(response)["data-unavailable"]["detail"]
    assert int(response.headers["X-Skipped-Resources"]) == 1


CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VER_STATUS = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
SNOMED_ACTIVE = {"system": "http://snomed.info/sct", "code": "55561003", "display": "Active"}


def _with_pregnancy(request: dict, **statuses) -> dict:
    pregnancy = {"resourceType": "Condition", "id": "dx-pregnancy", "subject": {"reference": f"Patient/{PID}"},
                 "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}],
                 "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "Z33.1", "display": "Pregnant state, incidental"}]},
                 "onsetDateTime": days_ago(70).isoformat(), "recordedDate": days_ago(20).date().isoformat(), **statuses}
    request["prefetch"]["conditions"]["entry"].append({"resource": pregnancy, "search": {"mode": "match"}})
    request["prefetch"]["conditions"]["total"] += 1
    return request


@pytest.mark.parametrize("clinical_status, shown", [
    ({"coding": [SNOMED_ACTIVE, {"system": CONDITION_CLINICAL, "code": "active"}]}, "active"),  # the R4 code is second
    ({"coding": [{"system": CONDITION_CLINICAL, "code": "Active", "display": "Active"}]}, "active"),  # spelt another way
    ({"coding": [SNOMED_ACTIVE], "text": "Active"}, "status not readable"),  # no R4 code at all
    ({"coding": [{"system": "urn:oid:1.2.840.114350.1.13.0.1.7.4.698084.10375", "code": "1"}]}, "status not readable"),
])
def test_an_active_pregnancy_is_found_whatever_else_its_clinical_status_carries(make_app, clinical_status, shown):
    """clinicalStatus is read from its R4 code system, not from whichever coding comes first;
    one coded outside its value set is not read as inactive: the pregnancy is still a pregnancy."""
    client = make_app(as_of=AS_OF).test_client()
    response = client.post(ORDER_SIGN, json=_with_pregnancy(baseline_request(), clinicalStatus=clinical_status))
    assert indicators(response)["pregnancy"] == "critical"
    assert "Z33.1), " + shown in cards_of(response)["pregnancy"]["detail"]
    assert "X-Skipped-Resources" not in response.headers or response.headers["X-Skipped-Resources"] == "0"


def test_a_refuted_pregnancy_is_refuted_even_when_another_coding_comes_first(make_app):
    client = make_app(as_of=AS_OF).test_client()
    statuses = {"clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
                "verificationStatus": {"coding": [{"system": "http://snomed.info/sct", "code": "410605003", "display": "Confirmed present"},
                                                  {"system": CONDITION_VER_STATUS, "code": "refuted"}]}}
    confirmed = copy.deepcopy(statuses)
    confirmed["verificationStatus"]["coding"][1]["code"] = "confirmed"
    assert indicators(client.post(ORDER_SIGN, json=_with_pregnancy(baseline_request(), **confirmed)))["pregnancy"] == "critical"
    response = client.post(ORDER_SIGN, json=_with_pregnancy(baseline_request(), **statuses))
    assert "pregnancy" not in indicators(response)


def test_history_references_with_a_display_are_read_by_that_name_without_a_request(fhir_app):
    """Epic names every medication by reference with a display: a long history costs no
    Medication reads; the display identifies the drug (here an unrelated one and Prolia)."""
    client = fhir_app()
    request = with_fhir_server(baseline_request())
    for entry in request["prefetch"]["medicationRequests"]["entry"] + request["prefetch"]["medicationAdministrations"]["entry"]:
        resource = entry["resource"]
        name = resource.pop("medicationCodeableConcept").get("text") or "carvedilol 6.25 mg tablet"
        resource["medicationReference"] = {"reference": f"Medication/e{resource['id']}", "display": name}
    with responses.RequestsMock() as rsps:  # nothing registered: a Medication read would fail the test
        response = client.post(ORDER_SIGN, json=request)
        assert len(rsps.calls) == 0
    assert response.get_json() == {"cards": []}  # the Prolia administration is read by its name: on therapy


def test_the_card_for_an_order_that_cannot_be_identified_is_recorded_in_the_ledger(make_app):
    app = make_app(as_of=AS_OF)
    issued = []
    app.extensions["denosumab_cds"].listeners.append(lambda request, response, record, as_of: issued.append(response))
    request = _draft_by_reference(baseline_request(), "Medication/med-unknown")
    response = app.test_client().post(ORDER_SIGN, json=request)
    assert indicators(response) == {"data-unavailable": "warning"}
    assert issued == [response.get_json()]  # the committee report counts it like any card
