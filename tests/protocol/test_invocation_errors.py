"""Malformed requests get a clear 4xx with a FHIR OperationOutcome naming the problem."""

import json
import uuid

import pytest

from cds_service.config import Settings
from tests.requests_for_tests import baseline_request


def _outcome(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"] and body["issue"][0]["diagnostics"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body["issue"][0]


def test_malformed_json_is_400(client):
    issue = _outcome(client.post("/cds-services/order-sign", data=b'{"hook": ', content_type="application/json"), 400)
    assert "not valid JSON" in issue["diagnostics"]


def test_empty_body_is_400(client):
    _outcome(client.post("/cds-services/order-sign", data=b"", content_type="application/json"), 400)


@pytest.mark.parametrize("body", [[], "text", 3, None])
def test_body_that_is_not_an_object_is_400(client, body):
    _outcome(client.post("/cds-services/order-sign", data=json.dumps(body), content_type="application/json"), 400)


def test_unknown_service_is_404(client):
    issue = _outcome(client.post("/cds-services/denosumab-magic", json=baseline_request()), 404)
    assert "denosumab-magic" in issue["diagnostics"]


def test_get_on_a_hook_endpoint_is_405(client):
    response = client.get("/cds-services/order-sign")
    _outcome(response, 405)
    assert "POST" in response.headers["Allow"]


def test_body_over_the_limit_is_413(make_app):
    client = make_app(Settings(max_body_bytes=2048)).test_client()
    request = baseline_request()
    request["extension"] = {"padding": "x" * 4096}
    issue = _outcome(client.post("/cds-services/order-sign", json=request), 413)
    assert "2048" in issue["diagnostics"]


def test_hook_that_does_not_match_the_service_is_400(client):
    request = baseline_request()
    request["hook"] = "patient-view"
    issue = _outcome(client.post("/cds-services/order-sign", json=request), 400)
    assert issue["expression"] == ["hook"]


@pytest.mark.parametrize(
    "mutate, expression",
    [
        (lambda r: r.pop("hookInstance"), "hookInstance"),
        (lambda r: r.update(hookInstance="not-a-uuid"), "hookInstance"),
        (lambda r: r.pop("hook"), "hook"),
        (lambda r: r.pop("context"), "context"),
        (lambda r: r.update(context="patient 1"), "context"),
        (lambda r: r["context"].pop("patientId"), "context.patientId"),
        (lambda r: r["context"].update(patientId=17), "context.patientId"),
        (lambda r: r["context"].pop("userId"), "context.userId"),
        (lambda r: r["context"].pop("draftOrders"), "context.draftOrders"),
        (lambda r: r["context"].update(draftOrders="MedicationRequest/1"), "context.draftOrders"),
        (lambda r: r.update(prefetch=["not", "an", "object"]), "prefetch"),
        (lambda r: r.update(fhirServer="ftp://ehr.example.org/fhir"), "fhirServer"),
    ],
)
def test_missing_or_wrong_request_fields_are_400_naming_the_field(client, mutate, expression):
    request = baseline_request()
    mutate(request)
    issue = _outcome(client.post("/cds-services/order-sign", json=request), 400)
    assert issue["expression"] == [expression]


def test_fhir_authorization_without_fhir_server_is_400(client):
    request = baseline_request()
    request.pop("fhirServer")
    request["fhirAuthorization"] = {"access_token": "abc", "token_type": "Bearer", "expires_in": 300,
                                    "scope": "patient/*.read", "subject": "cds-service"}
    issue = _outcome(client.post("/cds-services/order-sign", json=request), 400)
    assert issue["expression"] == ["fhirServer"]


def test_selections_must_be_references(client):
    request = baseline_request()
    request["hook"] = "order-select"
    request["context"]["selections"] = "MedicationRequest/draft-prolia-1"
    issue = _outcome(client.post("/cds-services/order-select", json=request), 400)
    assert issue["expression"] == ["context.selections"]


def test_missing_prefetch_without_a_fhir_server_is_412(client):
    request = baseline_request()
    request.pop("fhirServer")
    del request["prefetch"]["labResults"]
    issue = _outcome(client.post("/cds-services/order-sign", json=request), 412)
    assert issue["expression"] == ["prefetch.labResults"]
    assert "labResults" in issue["diagnostics"]


def test_no_prefetch_needed_when_no_denosumab_order_is_in_focus(client):
    """A draft for another drug: nothing to check, so nothing to fetch and no 412."""
    request = baseline_request()
    request.pop("prefetch")
    request.pop("fhirServer")
    draft = request["context"]["draftOrders"]["entry"][0]["resource"]
    draft["medicationCodeableConcept"] = {
        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "197361", "display": "amlodipine 5 MG Oral Tablet"}]
    }
    response = client.post("/cds-services/order-sign", json=request)
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}


def test_errors_never_echo_the_access_token(client):
    request = baseline_request()
    request["fhirAuthorization"] = {"access_token": "secret-token-123", "token_type": "MAC"}
    response = client.post("/cds-services/order-sign", json=request)
    assert response.status_code == 400
    assert "secret-token-123" not in response.get_data(as_text=True)


def test_uuid_hook_instance_is_accepted(client):
    request = baseline_request()
    request["hookInstance"] = str(uuid.uuid4()).upper()
    assert client.post("/cds-services/order-sign", json=request).status_code == 200


def test_missing_prefetch_with_fhir_server_but_no_authorization_is_412(client):
    """CDS Hooks 2.0: the service fetches only when both fhirServer and fhirAuthorization are given."""
    request = baseline_request()
    assert "fhirServer" in request and "fhirAuthorization" not in request
    del request["prefetch"]["conditions"]
    issue = _outcome(client.post("/cds-services/order-sign", json=request), 412)
    assert issue["expression"] == ["prefetch.conditions"]
