"""The CDS Hooks sandbox as a client: its quirks must all get a valid 200 answer."""

import uuid

from tests.conftest import assert_valid_cds_response
from tests.requests_for_tests import baseline_request

SANDBOX_FHIR = "https://launch.smarthealthit.org/v/r4/fhir"


def _sandbox_order_select(draft: dict) -> dict:
    """What the sandbox sends: Bundle without type, draft id request-123, no fhirAuthorization."""
    request = baseline_request()
    return {
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": SANDBOX_FHIR,
        "hook": "order-select",
        "context": {
            "userId": "Practitioner/COREPRACTITIONER1",
            "patientId": "pat-wm-0001",
            "selections": ["MedicationRequest/request-123"],
            "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": draft}]},
        },
        "prefetch": request["prefetch"],
    }


def test_first_fire_with_no_medication_yet_is_a_valid_empty_answer(client):
    draft = {"resourceType": "MedicationRequest", "id": "request-123", "status": "draft",
             "subject": {"reference": "Patient/pat-wm-0001"}}
    response = client.post("/cds-services/order-select", json=_sandbox_order_select(draft))
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}


def test_sandbox_shaped_denosumab_draft_is_checked(client):
    """category and reasonCode as single objects, no intent, Bundle without type."""
    draft = {
        "resourceType": "MedicationRequest",
        "id": "request-123",
        "status": "draft",
        "subject": {"reference": "Patient/pat-wm-0001"},
        "category": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category", "code": "outpatient"}]},
        "reasonCode": {"coding": [{"system": "http://snomed.info/sct", "code": "102447009", "display": "Postmenopausal osteoporosis"}]},
        "medicationCodeableConcept": {
            "text": "Prolia 60 MG/ML Prefilled Syringe",
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "993456",
                        "display": "1 ML denosumab 60 MG/ML Prefilled Syringe [Prolia]"}],
        },
        "dosageInstruction": [{"text": "60 mg every 6 months", "timing": {"repeat": {"frequency": 1, "period": 6, "periodUnit": "mo"}},
                               "doseAndRate": [{"doseQuantity": {"value": 60, "system": "http://unitsofmeasure.org", "code": "mg"}}]}],
    }
    response = client.post("/cds-services/order-select", json=_sandbox_order_select(draft))
    assert response.status_code == 200
    body = response.get_json()
    assert_valid_cds_response(body)
    assert body == {"cards": []}  # the well-managed patient: the draft was read, nothing to warn about
    assert "X-Skipped-Resources" not in response.headers


def test_cors_preflight_is_answered_without_a_jwt(client):
    response = client.options(
        "/cds-services/order-select",
        headers={"Origin": "https://sandbox.cds-hooks.org", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"},
    )
    assert response.status_code == 200
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "https://sandbox.cds-hooks.org")


def test_cors_preflight_on_discovery(client):
    response = client.options(
        "/cds-services",
        headers={"Origin": "https://sandbox.cds-hooks.org", "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "authorization"},
    )
    assert response.status_code == 200
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()


def test_medication_prescribe_with_a_bare_list(client):
    request = baseline_request()
    drafts = request["context"].pop("draftOrders")
    request["hook"] = "medication-prescribe"
    request["context"]["medications"] = [e["resource"] for e in drafts["entry"]]
    response = client.post("/cds-services/medication-prescribe", json=request)
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}


def test_one_malformed_prefetch_resource_is_skipped_and_reported(client):
    request = baseline_request()
    bad = {"resourceType": "Observation", "id": "lab-broken", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "17861-6"}]},
           "effectiveDateTime": "2026-11-24T08:00:00Z",  # the newest calcium: the checks read it
           "valueQuantity": {"value": "eight point one", "unit": "mg/dL"}}
    request["prefetch"]["labResults"]["entry"].append({"resource": bad})
    response = client.post("/cds-services/order-sign", json=request)
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}  # the valid remainder still decides
    assert response.headers["X-Skipped-Resources"] == "1"


def test_resources_of_another_patient_are_ignored(client):
    """A mixed-up prefetch must never put another patient's low calcium on this chart."""
    request = baseline_request()
    foreign = {"resourceType": "Observation", "id": "lab-other", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "17861-6"}]},
               "subject": {"reference": "Patient/someone-else"},
               "effectiveDateTime": "2026-11-24T08:00:00Z",
               "valueQuantity": {"value": 6.1, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}}
    request["prefetch"]["labResults"]["entry"].append({"resource": foreign})
    response = client.post("/cds-services/order-sign", json=request)
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}
    assert response.headers["X-Skipped-Resources"] == "1"


def test_the_log_says_why_a_resource_was_skipped_without_its_id(client, caplog):
    request = baseline_request()
    request["prefetch"]["patient"]["birthDate"] = "last spring"
    with caplog.at_level("INFO", logger="cds_service.access"):
        response = client.post("/cds-services/order-sign", json=request)
    assert response.status_code == 200
    (line,) = [r for r in caplog.records if r.name == "cds_service.access"]
    (skipped,) = line.fields["skipped"]
    assert skipped.startswith("Patient skipped: birthDate")
    assert "pat-wm-0001" not in str(line.fields)
