"""active-infection: a clinically active infection diagnosis."""

import pytest

from tests.rules.hook_calls import ICD10CM, SNOMED, add, condition, topic_card
from tests.requests_for_tests import baseline_request

TOPIC = "active-infection"
UTI = [{"system": ICD10CM, "code": "N39.0", "display": "Urinary tract infection, site not specified"}]
CELLULITIS_LEG = [{"system": ICD10CM, "code": "L03.116", "display": "Cellulitis of left lower limb"}]
ERYSIPELAS = [{"system": ICD10CM, "code": "A46", "display": "Erysipelas"}]
LOWER_UTI = [{"system": SNOMED, "code": "4009004", "display": "Lower urinary tract infectious disease"}]


def test_no_infection_is_silent(client):
    assert topic_card(client, baseline_request(), TOPIC) is None


@pytest.mark.parametrize("codings", [UTI, CELLULITIS_LEG, ERYSIPELAS, LOWER_UTI])
def test_active_infection_warns(client, codings):
    request = baseline_request()
    add(request, "conditions", condition("cond-inf", codings, "Infection", onset="2026-11-20"))
    card = topic_card(client, request, TOPIC)
    assert card["indicator"] == "warning"
    assert codings[0]["code"] in card["detail"] and "onset 2026-11-20" in card["detail"]
    assert card["suggestions"][0]["actions"][0]["resourceId"] == "MedicationRequest/draft-prolia-1"


@pytest.mark.parametrize("clinical", ["recurrence", "relapse"])
def test_recurrence_and_relapse_are_active(client, clinical):
    request = baseline_request()
    add(request, "conditions", condition("cond-inf", UTI, "Recurrent UTI", clinical=clinical))
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
    add(request, "conditions", condition("cond-inf", UTI, "UTI", **kwargs))
    assert topic_card(client, request, TOPIC) is None


def test_recorded_date_shown_when_there_is_no_onset(client):
    request = baseline_request()
    add(request, "conditions", condition("cond-inf", UTI, "UTI", onset=None, recorded="2026-11-23T10:00:00-06:00"))
    assert "recorded 2026-11-23" in topic_card(client, request, TOPIC)["detail"]
