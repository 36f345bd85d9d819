"""atypical-femoral-fracture: an AFF diagnosis, or thigh/hip/groin pain recorded while on denosumab."""

import pytest

from tests.rules.hook_calls import ICD10CM, SNOMED, add, condition, make_initiating, topic_card
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
def test_active_atypical_femoral_fracture_warns_with_imaging(client, codings):
    request = baseline_request()
    add(request, "conditions", condition("cond-aff", codings, "Atypical femoral fracture", onset="2026-11-01"))
    card = topic_card(client, request, TOPIC)
    assert card["indicator"] == "warning" and codings[0]["code"] in card["detail"]
    assert "first 2026-05-28, last 2026-05-28" in card["detail"]
    imaging = card["suggestions"][0]["actions"][0]["resource"]
    assert imaging["resourceType"] == "ServiceRequest" and "femurs" in imaging["code"]["text"]
    assert imaging["subject"] == {"reference": "Patient/pat-wm-0001"}


def test_fracture_counts_even_before_any_dose(client):
    request = baseline_request()
    make_initiating(request)
    add(request, "conditions", condition("cond-aff", AFF, "Atypical femoral fracture", onset="2025-01-01"))
    assert topic_card(client, request, TOPIC) is not None


def test_resolved_fracture_is_silent(client):
    request = baseline_request()
    add(request, "conditions", condition("cond-aff", AFF, "AFF", clinical="resolved", abatement="2025-06-01"))
    assert topic_card(client, request, TOPIC) is None


@pytest.mark.parametrize("codings, onset, recorded, fires", [
    (THIGH_PAIN, "2026-10-02", None, True),
    (HIP_PAIN, "2026-05-28", None, True),             # the day of the dose
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
