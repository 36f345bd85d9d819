"""active-infection (catalog v2): a serious infection with onset in the last 60 days (180 days for
osteomyelitis, endocarditis, prosthetic joint infection), 60 mg regimen only; warning at
initiation, info on therapy."""

import pytest

from tests.rules.hook_calls import (
    ICD10CM, SNOMED, XGEVA, add, condition, make_initiating, medication_request, the_draft, topic_card,
)
from tests.requests_for_tests import baseline_request

TOPIC = "active-infection"
UTI = [{"system": ICD10CM, "code": "N39.0", "display": "Urinary tract infection, site not specified"}]
CELLULITIS_LEG = [{"system": ICD10CM, "code": "L03.116", "display": "Cellulitis of left lower limb"}]
ERYSIPELAS = [{"system": ICD10CM, "code": "A46", "display": "Erysipelas"}]
LOWER_UTI = [{"system": SNOMED, "code": "4009004", "display": "Lower urinary tract infectious disease"}]
PNEUMONIA = [{"system": ICD10CM, "code": "J18.9", "display": "Pneumonia, unspecified organism"}]
SEPSIS = [{"system": ICD10CM, "code": "A41.9", "display": "Sepsis, unspecified organism"}]
OSTEOMYELITIS = [{"system": ICD10CM, "code": "M86.171", "display": "Other acute osteomyelitis, right ankle and foot"}]
ENDOCARDITIS = [{"system": ICD10CM, "code": "I33.0", "display": "Acute and subacute infective endocarditis"}]
PROSTHETIC_JOINT = [{"system": ICD10CM, "code": "T84.51XA", "display": "Infection due to internal right hip prosthesis"}]
OTITIS_MEDIA = [{"system": ICD10CM, "code": "H66.90", "display": "Otitis media, unspecified, unspecified ear"}]
COMMON_COLD = [{"system": ICD10CM, "code": "J00", "display": "Acute nasopharyngitis [common cold]"}]


def test_no_infection_is_silent(client):
    assert topic_card(client, baseline_request(), TOPIC) is None


@pytest.mark.parametrize("codings", [UTI, CELLULITIS_LEG, ERYSIPELAS, LOWER_UTI, PNEUMONIA, SEPSIS])
def test_serious_infection_at_initiation_warns_and_offers_deferral(client, codings):
    request = baseline_request()
    make_initiating(request)
    add(request, "conditions", condition("cond-inf", codings, "Infection", onset="2026-11-20"))
    card = topic_card(client, request, TOPIC)
    assert card["indicator"] == "warning" and "consider deferring the first dose" in card["detail"]
    assert codings[0]["code"] in card["detail"] and "onset 2026-11-20" in card["detail"]
    assert card["suggestions"][0]["actions"][0]["resourceId"] == "MedicationRequest/draft-prolia-1"


def test_serious_infection_on_therapy_is_info_without_deferral(client):
    request = baseline_request()  # last Prolia dose 2026-05-28
    add(request, "conditions", condition("cond-inf", UTI, "UTI", onset="2026-11-20"))
    card = topic_card(client, request, TOPIC)
    assert card["indicator"] == "info" and "weigh the benefit and risk of continuing" in card["detail"]
    assert "suggestions" not in card


@pytest.mark.parametrize("codings", [OTITIS_MEDIA, COMMON_COLD])
def test_minor_infections_are_not_serious(client, codings):
    request = baseline_request()
    make_initiating(request)
    add(request, "conditions", condition("cond-inf", codings, "Minor infection", onset="2026-11-20"))
    assert topic_card(client, request, TOPIC) is None


@pytest.mark.parametrize("onset, fires", [("2026-09-26", True), ("2026-09-25", False)])  # 60 vs 61 days
def test_a_serious_infection_counts_for_60_days(client, onset, fires):
    request = baseline_request()
    make_initiating(request)
    add(request, "conditions", condition("cond-inf", UTI, "UTI", onset=onset))
    assert (topic_card(client, request, TOPIC) is not None) == fires


@pytest.mark.parametrize("codings", [OSTEOMYELITIS, ENDOCARDITIS, PROSTHETIC_JOINT])
@pytest.mark.parametrize("onset, fires", [("2026-05-29", True), ("2026-05-28", False)])  # 180 vs 181 days
def test_infections_treated_over_months_count_for_180_days(client, codings, onset, fires):
    request = baseline_request()
    make_initiating(request)
    add(request, "conditions", condition("cond-inf", codings, "Long-course infection", onset=onset))
    assert (topic_card(client, request, TOPIC) is not None) == fires


def test_a_uti_left_active_for_years_does_not_fire(client):
    request = baseline_request()
    add(request, "conditions", condition("cond-inf", UTI, "UTI", onset="2024-03-12"))
    assert topic_card(client, request, TOPIC) is None


def test_120mg_regimen_gets_no_card(client):
    request = baseline_request()
    make_initiating(request)
    request["context"]["draftOrders"]["entry"][0]["resource"] = medication_request(
        "draft-prolia-1", XGEVA, dose_mg=120, period=4, unit="wk", name="Xgeva 120 mg/1.7 mL")
    add(request, "conditions", condition("cond-inf", UTI, "UTI", onset="2026-11-20"))
    assert topic_card(client, request, TOPIC) is None


@pytest.mark.parametrize("clinical", ["recurrence", "relapse"])
def test_recurrence_and_relapse_are_active(client, clinical):
    request = baseline_request()
    add(request, "conditions", condition("cond-inf", UTI, "Recurrent UTI", clinical=clinical, onset="2026-11-01"))
    assert topic_card(client, request, TOPIC) is not None


@pytest.mark.parametrize("kwargs", [
    {"clinical": "resolved", "abatement": "2026-11-10"},
    {"clinical": "inactive"},
    {"clinical": "remission"},
    {"verification": "entered-in-error"},
    {"verification": "refuted"},
    {"clinical": None, "abatement": "2026-11-10"},  # no clinical status, abated in the past
])
def test_infections_that_are_not_clinically_active_are_silent(client, kwargs):
    request = baseline_request()
    add(request, "conditions", condition("cond-inf", UTI, "UTI", onset="2026-11-01", **kwargs))
    assert topic_card(client, request, TOPIC) is None


def test_recorded_date_shown_and_used_when_there_is_no_onset(client):
    request = baseline_request()
    add(request, "conditions", condition("cond-inf", UTI, "UTI", onset=None, recorded="2026-11-23T10:00:00-06:00"))
    assert "recorded 2026-11-23" in topic_card(client, request, TOPIC)["detail"]
    request = baseline_request()
    add(request, "conditions", condition("cond-inf", UTI, "UTI", onset=None, recorded="2024-01-05T10:00:00-06:00"))
    assert topic_card(client, request, TOPIC) is None
