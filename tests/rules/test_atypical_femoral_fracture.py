"""atypical-femoral-fracture (catalog v2): an AFF diagnosis (history), or thigh/hip/groin pain with
onset in the last 180 days, on or after the first denosumab dose, with no femur imaging since."""

import pytest

from tests.rules.hook_calls import ICD10CM, LOINC, SNOMED, add, condition, make_initiating, topic_card
from tests.requests_for_tests import baseline_request

TOPIC = "atypical-femoral-fracture"
AFF = [{"system": SNOMED, "code": "890095006", "display": "Atypical fracture of femur (disorder)"}]
AFF_ICD = [{"system": ICD10CM, "code": "M84.752A", "display": "Incomplete atypical femoral fracture, left leg"}]
THIGH_PAIN = [{"system": ICD10CM, "code": "M79.651", "display": "Pain in right thigh"}]
HIP_PAIN = [{"system": ICD10CM, "code": "M25.552", "display": "Pain in left hip"}]
# The baseline patient's only denosumab dose on record: Prolia on 2026-05-28.


def test_no_finding_is_silent(client):
    assert topic_card(client, baseline_request(), TOPIC) is None


@pytest.mark.parametrize("codings", [AFF, AFF_ICD])
def test_atypical_femoral_fracture_warns_with_a_coded_imaging_order(client, codings):
    request = baseline_request()
    add(request, "conditions", condition("cond-aff", codings, "Atypical femoral fracture", onset="2026-11-01"))
    card = topic_card(client, request, TOPIC)
    assert card["indicator"] == "warning" and codings[0]["code"] in card["detail"]
    assert "first 2026-05-28, last 2026-05-28" in card["detail"]
    imaging = card["suggestions"][0]["actions"][0]["resource"]
    assert imaging["resourceType"] == "ServiceRequest"
    assert imaging["code"]["coding"] == [{"system": LOINC, "code": "36653-4", "display": "XR Femur - bilateral 2 Views"}]
    assert imaging["category"][0]["coding"][0]["code"] == "363679005"  # imaging
    assert imaging["subject"] == {"reference": "Patient/pat-wm-0001"}


def test_fracture_counts_even_before_any_dose(client):
    request = baseline_request()
    make_initiating(request)
    add(request, "conditions", condition("cond-aff", AFF, "Atypical femoral fracture", onset="2025-01-01"))
    assert topic_card(client, request, TOPIC) is not None


def test_a_healed_fracture_counts_as_history(client):
    request = baseline_request()
    add(request, "conditions", condition("cond-aff", AFF, "AFF", clinical="resolved", abatement="2025-06-01"))
    assert topic_card(client, request, TOPIC)["indicator"] == "warning"


def test_a_refuted_fracture_is_silent(client):
    request = baseline_request()
    add(request, "conditions", condition("cond-aff", AFF, "AFF", verification="refuted"))
    assert topic_card(client, request, TOPIC) is None


@pytest.mark.parametrize("codings, onset, recorded, fires", [
    (THIGH_PAIN, "2026-10-02", None, True),
    (HIP_PAIN, "2026-05-29", None, True),             # 180 days ago, the day after the dose
    (HIP_PAIN, "2026-05-28", None, False),            # 181 days ago: no longer new pain
    (HIP_PAIN, "2026-01-10", None, False),            # before the first dose on record
    (THIGH_PAIN, None, "2026-09-01T10:00:00Z", True),  # no onset: the recorded date
    (THIGH_PAIN, None, None, True),                   # undated, patient on denosumab
])
def test_pain_recorded_while_on_denosumab(client, codings, onset, recorded, fires):
    request = baseline_request()
    add(request, "conditions", condition("cond-pain", codings, "Pain", onset=onset, recorded=recorded))
    card = topic_card(client, request, TOPIC)
    assert (card is not None) == fires
    if fires:
        assert codings[0]["code"] in card["detail"]


def test_pain_in_a_patient_never_given_denosumab_is_silent(client):
    request = baseline_request()
    make_initiating(request)
    add(request, "conditions", condition("cond-pain", THIGH_PAIN, "Thigh pain", onset="2026-11-01"))
    assert topic_card(client, request, TOPIC) is None


def test_resolved_pain_is_silent(client):
    request = baseline_request()
    add(request, "conditions", condition("cond-pain", THIGH_PAIN, "Thigh pain", clinical="resolved", onset="2026-10-02"))
    assert topic_card(client, request, TOPIC) is None


def test_pain_on_the_day_of_the_first_dose_counts(client):
    request = baseline_request()
    add(request, "medicationAdministrations", {
        "resourceType": "MedicationAdministration", "id": "madm-late", "status": "completed",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "993456"}]},
        "subject": {"reference": "Patient/pat-wm-0001"}, "effectiveDateTime": "2026-11-02T10:00:00-06:00",
    })
    request["prefetch"]["medicationAdministrations"]["entry"] = [
        e for e in request["prefetch"]["medicationAdministrations"]["entry"] if e["resource"]["id"] == "madm-late"]
    request["prefetch"]["medicationRequests"]["entry"] = [
        e for e in request["prefetch"]["medicationRequests"]["entry"] if "prolia" not in e["resource"]["id"]]
    add(request, "conditions", condition("cond-pain", THIGH_PAIN, "Thigh pain", onset="2026-11-02"))
    assert topic_card(client, request, TOPIC) is not None


def femur_xray(request, performed, code="26118-0"):
    add(request, "procedures", {
        "resourceType": "Procedure", "id": f"proc-xr-{performed[:10]}", "status": "completed",
        "code": {"coding": [{"system": LOINC, "code": code, "display": "XR Femur - bilateral Views"}]},
        "subject": {"reference": "Patient/pat-wm-0001"}, "performedDateTime": performed,
    })


@pytest.mark.parametrize("performed, fires", [
    ("2026-10-20T09:00:00-05:00", False),  # imaged after the pain began: the question is answered
    ("2026-10-02T16:00:00-05:00", False),  # the same day
    ("2026-09-30T09:00:00-05:00", True),   # imaged before the pain: still unanswered
])
def test_femur_imaging_after_the_pain_began_answers_it(client, performed, fires):
    request = baseline_request()
    add(request, "conditions", condition("cond-pain", THIGH_PAIN, "Thigh pain", onset="2026-10-02"))
    femur_xray(request, performed)
    assert (topic_card(client, request, TOPIC) is not None) == fires


def test_femur_imaging_does_not_silence_a_fracture(client):
    request = baseline_request()
    add(request, "conditions", condition("cond-aff", AFF, "AFF", onset="2026-10-01"))
    femur_xray(request, "2026-10-20T09:00:00-05:00")
    assert topic_card(client, request, TOPIC)["indicator"] == "warning"
