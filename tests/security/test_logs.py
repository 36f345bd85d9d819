"""One JSON log line per call, with ids, timings and topic codes only: a full run with a JWT, a
FHIR access token and a named patient leaves none of them (nor any resource body) in the log."""

from __future__ import annotations

import copy
import io
import json
import logging

import pytest
import requests
import responses

from cds_service.logs import configure_logging
from tests.requests_for_tests import baseline_request
from tests.security.ehr import FHIR_BASE, PUBLIC_BASE_URL, bearer, claims_for

ACCESS_TOKEN = "ya29.fhir-access-token-Zq81"
ORDER_SIGN = "/cds-services/order-sign"


@pytest.fixture
def json_log():
    """The service's own logging set-up (JSON lines, DEBUG and up), written to a buffer."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging("DEBUG")
    buffer = io.StringIO()
    root.handlers[0].setStream(buffer)

    def lines() -> list[dict]:
        return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]

    yield lines
    root.handlers[:], level = saved
    root.setLevel(level)


def named_patient_request() -> dict:
    request = baseline_request()
    del request["prefetch"]["labResults"]  # to be fetched with the access token
    request["fhirAuthorization"] = {"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 300,
                                    "scope": "patient/Observation.read", "subject": "denosumab-cds"}
    # A resource the record cannot read, with personal data in the field that fails.
    unreadable = copy.deepcopy(request["prefetch"]["medicationRequests"]["entry"][0]["resource"])
    unreadable.update(id="mr-unreadable", authoredOn="Margit Halvorsen 1958-03-14",
                      note=[{"text": "Margit Halvorsen, born 1958-03-14"}])
    request["prefetch"]["medicationRequests"]["entry"].append({"resource": unreadable})
    return request


def test_a_full_run_logs_one_line_per_call_and_nothing_secret_or_personal(jwt_client, ehr_key, json_log):
    request = named_patient_request()
    patient = request["prefetch"]["patient"]
    secrets = {
        "the JWT": None,
        "the JWT signature": None,
        "the access token": ACCESS_TOKEN,
        "the family name": patient["name"][0]["family"],
        "the given name": patient["name"][0]["given"][0],
        "the birth date": patient["birthDate"],
        "the street": patient["address"][0]["line"][0],
        "the MRN": patient["identifier"][0]["value"],
        "the patient id": request["context"]["patientId"],
        "a resource body": '"resourceType"',
    }
    token = ehr_key.sign(claims_for(PUBLIC_BASE_URL + ORDER_SIGN))
    secrets["the JWT"], secrets["the JWT signature"] = token, token.split(".")[2]

    with responses.RequestsMock() as fhir:
        # The FHIR server is down; the error that requests raises quotes the URL with the patient id.
        fhir.get(f"{FHIR_BASE}/Observation", body=requests.ConnectionError(
            f"HTTPSConnectionPool: Max retries exceeded with url: /fhir/r4/Observation?patient={request['context']['patientId']}"))
        hook_call = jwt_client.post(ORDER_SIGN, json=request, headers=bearer(token))
    replay = jwt_client.post(ORDER_SIGN, json=request, headers=bearer(token))
    card = hook_call.get_json()["cards"][0]
    feedback_path = ORDER_SIGN + "/feedback"
    feedback = jwt_client.post(
        feedback_path,
        json={"feedback": [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-25T15:02:00Z",
                            "overrideReason": {"userComment": "Margit Halvorsen says she had labs last week"}}]},
        headers=bearer(ehr_key.sign(claims_for(PUBLIC_BASE_URL + feedback_path))),
    )
    assert (hook_call.status_code, replay.status_code, feedback.status_code) == (200, 401, 200), feedback.get_json()

    lines = json_log()
    text = "\n".join(json.dumps(line) for line in lines)
    for what, value in secrets.items():
        assert value not in text, f"{what} is in the log"

    access = [line for line in lines if line["logger"] == "cds_service.access"]
    assert [(a["path"], a["status"]) for a in access] == [(ORDER_SIGN, 200), (ORDER_SIGN, 401), (feedback_path, 200)]
    call = access[0]
    assert call["hookInstance"] == request["hookInstance"]
    assert call["service"] == "order-sign"
    assert call["fhir_fetches"] == 1
    assert call["topics"] == [c["source"]["topic"]["code"] for c in hook_call.get_json()["cards"]]
    assert call["topics"]  # the unavailable labs are reported as a card
    assert isinstance(call["duration_ms"], float) and call["pid"] > 0
    assert any(s.startswith("MedicationRequest skipped") for s in call["skipped"])  # what kind and why, not which or what it held
    assert not any("mr-unreadable" in s for s in call["skipped"])
    assert access[1]["service"] == "order-sign"  # a refused call is attributed too
    rejected = [line for line in lines if line["logger"] == "cds_service.protocol.jwt_auth"]
    assert [r["reason"] for r in rejected] == ["jti already used (replay)"]


def test_every_log_line_is_one_json_object(jwt_client, ehr_key, json_log):
    jwt_client.get("/cds-services", headers=bearer(ehr_key.sign(claims_for(PUBLIC_BASE_URL + "/cds-services"))))
    jwt_client.get("/cds-services")
    jwt_client.post(ORDER_SIGN, data=b"{not json", headers={"Content-Type": "application/json"})
    lines = json_log()
    assert len([line for line in lines if line["logger"] == "cds_service.access"]) == 3
    for line in lines:
        assert {"time", "level", "logger", "pid", "message"} <= set(line)
