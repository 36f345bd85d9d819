"""pediatric: age under 18 at the time of the call, from Patient.birthDate."""

import pytest

from tests.rules.hook_calls import ICD10CM, add, condition, set_patient, topic_card
from tests.requests_for_tests import baseline_request

TOPIC = "pediatric"


@pytest.mark.parametrize("birth_date, age", [("2008-11-26", 17), ("2014-01-01", 12), ("2023-05-05", 3)])
def test_under_18_warns_with_age_and_birth_date(client, birth_date, age):
    request = baseline_request()
    set_patient(request, gender="male", birth_date=birth_date)
    card = topic_card(client, request, TOPIC)
    assert card["indicator"] == "warning"
    assert f"Age **{age}** (born {birth_date})" in card["detail"]
    assert card["suggestions"][0]["actions"][0]["resourceId"] == "MedicationRequest/draft-prolia-1"


@pytest.mark.parametrize("birth_date", ["2008-11-25", "1958-03-14", "", "2027-01-01"])
def test_18_today_adults_and_unknown_age_are_silent(client, birth_date):
    request = baseline_request()
    set_patient(request, birth_date=birth_date)
    assert topic_card(client, request, TOPIC) is None


def test_giant_cell_tumour_in_an_adolescent_names_the_labelled_exception(client):
    request = baseline_request()
    set_patient(request, gender="male", birth_date="2010-02-02")
    add(request, "conditions", condition("cond-gctb", [{"system": ICD10CM, "code": "D48.0", "display": "Neoplasm of uncertain behavior of bone"}], "Giant cell tumour of bone"))
    card = topic_card(client, request, TOPIC)
    assert "skeletally mature" in card["detail"] and "D48.0" in card["detail"]
