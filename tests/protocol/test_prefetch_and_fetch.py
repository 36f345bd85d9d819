"""Prefetch resolution and the FHIR-server fallback (server mocked with `responses`)."""

import time
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from cds_service.config import Settings
from tests.requests_for_tests import FHIR_BASE, PREFETCH_KEYS, baseline_request, searchset

TOKEN = "access-token-for-the-test"


def _with_fhir_authorization(request):
    request["fhirServer"] = FHIR_BASE
    request["fhirAuthorization"] = {
        "access_token": TOKEN, "token_type": "Bearer", "expires_in": 300,
        "scope": "patient/Patient.read patient/Observation.read", "subject": "denosumab-cds",
    }
    return request


def _register_fhir_server(rsps, prefetch: dict) -> None:
    """Answer each query the service makes with what the baseline's prefetch held."""
    by_type = {
        "Patient": prefetch["patient"],
        "MedicationRequest": prefetch["medicationRequests"],
        "MedicationAdministration": prefetch["medicationAdministrations"],
        "MedicationDispense": searchset([]),
        "MedicationStatement": searchset([]),
        "Observation": prefetch["labResults"],
        "Condition": prefetch["conditions"],
        "Procedure": prefetch["procedures"],
    }
    for resource_type, body in by_type.items():
        url = f"{FHIR_BASE}/{resource_type}" + ("/pat-wm-0001" if resource_type == "Patient" else "")
        rsps.add(responses.GET, url, json=body, status=200)


@pytest.fixture
def fhir_client(make_app):
    settings = Settings(allowed_fhir_servers=(FHIR_BASE,), fhir_timeout_seconds=1.0)
    return make_app(settings).test_client()


def test_missing_prefetch_is_fetched_with_the_bearer_token(fhir_client):
    request = _with_fhir_authorization(baseline_request())
    prefetch = request.pop("prefetch")
    with responses.RequestsMock() as rsps:
        _register_fhir_server(rsps, prefetch)
        response = fhir_client.post("/cds-services/order-sign", json=request)
        assert response.status_code == 200, response.get_json()
        assert response.get_json() == {"cards": []}  # the same well-managed patient, fetched instead of prefetched
        assert len(rsps.calls) == len(PREFETCH_KEYS)
        for call in rsps.calls:
            assert call.request.headers["Authorization"] == f"Bearer {TOKEN}"
            query = parse_qs(urlsplit(call.request.url).query)
            if "patient" in query:
                assert query["patient"] == ["pat-wm-0001"]


def test_null_prefetch_means_known_empty_and_is_not_fetched(fhir_client):
    request = _with_fhir_authorization(baseline_request())
    with responses.RequestsMock() as rsps:  # no URL registered: any fetch would fail the test
        response = fhir_client.post("/cds-services/order-sign", json=request)
        assert response.status_code == 200
        assert len(rsps.calls) == 0


def test_operation_outcome_in_prefetch_is_fetched_again(fhir_client):
    request = _with_fhir_authorization(baseline_request())
    labs = request["prefetch"]["labResults"]
    request["prefetch"]["labResults"] = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "timeout", "diagnostics": "prefetch timed out"}],
    }
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, f"{FHIR_BASE}/Observation", json=labs)
        response = fhir_client.post("/cds-services/order-sign", json=request)
        assert response.status_code == 200
        assert response.get_json() == {"cards": []}
        assert len(rsps.calls) == 1
        assert "category=laboratory" in rsps.calls[0].request.url


def test_bundles_with_next_links_are_paged(fhir_client):
    request = _with_fhir_authorization(baseline_request())
    labs = request["prefetch"]["labResults"]["entry"]
    first, second, third = labs[:2], labs[2:4], labs[4:]
    request["prefetch"]["labResults"] = searchset([e["resource"] for e in first], f"{FHIR_BASE}/Observation?page=2")
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, f"{FHIR_BASE}/Observation?page=2",
                 json=searchset([e["resource"] for e in second], f"{FHIR_BASE}/Observation?page=3"))
        rsps.add(responses.GET, f"{FHIR_BASE}/Observation?page=3", json=searchset([e["resource"] for e in third]))
        response = fhir_client.post("/cds-services/order-sign", json=request)
        assert response.status_code == 200
        assert len(rsps.calls) == 2
        assert response.get_json() == {"cards": []}  # calcium, albumin, eGFR and vitamin D all found across pages


def test_paging_stops_at_the_page_limit(make_app):
    client = make_app(Settings(allowed_fhir_servers=(FHIR_BASE,), fhir_max_pages=3)).test_client()
    request = _with_fhir_authorization(baseline_request())
    request["prefetch"]["procedures"] = searchset([], f"{FHIR_BASE}/Procedure?page=1")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        for page in range(1, 10):
            rsps.add(responses.GET, f"{FHIR_BASE}/Procedure?page={page}",
                     json=searchset([], f"{FHIR_BASE}/Procedure?page={page + 1}"))
        response = client.post("/cds-services/order-sign", json=request)
        assert response.status_code == 200
        assert len(rsps.calls) == 3


def test_next_link_to_another_server_is_not_followed(fhir_client):
    request = _with_fhir_authorization(baseline_request())
    request["prefetch"]["procedures"]["link"] = [{"relation": "next", "url": "https://attacker.example.net/Procedure?p=2"}]
    with responses.RequestsMock() as rsps:
        response = fhir_client.post("/cds-services/order-sign", json=request)
        assert response.status_code == 200
        assert len(rsps.calls) == 0


def test_a_slow_fhir_server_is_cut_off_at_the_deadline(make_app):
    client = make_app(Settings(allowed_fhir_servers=(FHIR_BASE,), fhir_timeout_seconds=0.5)).test_client()
    request = _with_fhir_authorization(baseline_request())
    del request["prefetch"]["labResults"]

    def slow(_request):
        time.sleep(2.0)
        return 200, {}, '{"resourceType": "Bundle", "type": "searchset"}'

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_callback(responses.GET, f"{FHIR_BASE}/Observation", callback=slow)
        started = time.monotonic()
        response = client.post("/cds-services/order-sign", json=request)
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed < 1.5
    topics = [c["source"]["topic"]["code"] for c in response.get_json()["cards"]]
    assert topics == ["data-unavailable"]  # labs unknown: said, never read as normal


def test_a_failing_fhir_server_degrades_the_answer(fhir_client):
    request = _with_fhir_authorization(baseline_request())
    del request["prefetch"]["labResults"]
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, f"{FHIR_BASE}/Observation", status=500, json={"resourceType": "OperationOutcome"})
        response = fhir_client.post("/cds-services/order-sign", json=request)
    assert response.status_code == 200
    cards = response.get_json()["cards"]
    assert [c["source"]["topic"]["code"] for c in cards] == ["data-unavailable"]
    assert "Lab results: the FHIR server answered with an error" in cards[0]["detail"]
    assert "a serum calcium in the last 30 days" in cards[0]["detail"]  # the check it cost, not a "no calcium" card


def test_redirects_are_not_followed(fhir_client):
    request = _with_fhir_authorization(baseline_request())
    del request["prefetch"]["conditions"]
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, f"{FHIR_BASE}/Condition", status=302,
                 headers={"Location": "http://169.254.169.254/latest/meta-data"})
        response = fhir_client.post("/cds-services/order-sign", json=request)
        assert response.status_code == 200
        assert len(rsps.calls) == 1  # the redirect target was never requested
    assert "data-unavailable" in [c["source"]["topic"]["code"] for c in response.get_json()["cards"]]


def test_fhir_server_outside_the_allow_list_is_412_and_nothing_is_fetched(fhir_client):
    request = _with_fhir_authorization(baseline_request())
    request["fhirServer"] = "https://evil.example.net/fhir"
    del request["prefetch"]["labResults"]
    with responses.RequestsMock() as rsps:
        response = fhir_client.post("/cds-services/order-sign", json=request)
        assert len(rsps.calls) == 0
    assert response.status_code == 412  # CDS Hooks 2.0: cannot access the FHIR server for required data
    server, keys = response.get_json()["issue"]
    assert server["expression"] == ["fhirServer"] and server["code"] == "security"
    assert "not a FHIR server this service is allowed to read" in server["diagnostics"]
    assert keys["expression"] == ["prefetch.labResults"]  # the prefetch key that would let the call through
    assert "labResults" in keys["diagnostics"]


def test_a_fhir_server_that_is_not_a_url_stays_400(fhir_client):
    request = _with_fhir_authorization(baseline_request())
    request["fhirServer"] = "ehr.example.org/fhir"
    del request["prefetch"]["labResults"]
    assert fhir_client.post("/cds-services/order-sign", json=request).status_code == 400


def test_plain_http_base_is_refused_unless_listed(make_app):
    client = make_app(Settings(allowed_fhir_servers=(FHIR_BASE,))).test_client()
    request = _with_fhir_authorization(baseline_request())
    request["fhirServer"] = FHIR_BASE.replace("https://", "http://")
    del request["prefetch"]["labResults"]
    with responses.RequestsMock() as rsps:
        assert client.post("/cds-services/order-sign", json=request).status_code == 412
        assert len(rsps.calls) == 0
