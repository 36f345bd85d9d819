"""pediatric: age under 18 at the time of the call, from Patient.birthDate."""

import pytest

from tests.rules.hook_calls import ICD10CM, XGEVA, add, condition, medication_request, set_patient, topic_card
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


GCTB = [{"system": ICD10CM, "code": "D48.0", "display": "Neoplasm of uncertain behavior of bone and articular cartilage"}]


def xgeva_gctb_request(birth_date, *, regimen_120mg=True):
    request = baseline_request()
    set_patient(request, gender="female", birth_date=birth_date)
    add(request, "conditions", condition("cond-gctb", GCTB, "Giant cell tumour of bone, distal femur"))
    if regimen_120mg:
        request["context"]["draftOrders"]["entry"][0]["resource"] = medication_request(
            "draft-prolia-1", XGEVA, dose_mg=120, period=4, unit="wk", name="Xgeva 120 mg/1.7 mL")
    return request


@pytest.mark.parametrize("birth_date, indicator", [
    ("2014-11-25", "info"),     # 12 today: confirm skeletal maturity
    ("2008-11-26", "info"),     # 17
    ("2014-11-26", "warning"),  # 11: below the adolescent GCTB indication
])
def test_gctb_on_120mg_at_12_to_17_is_info_confirm_skeletal_maturity(client, birth_date, indicator):
    card = topic_card(client, xgeva_gctb_request(birth_date), TOPIC)
    assert card["indicator"] == indicator
    if indicator == "info":
        assert "Confirm skeletal maturity" in card["detail"] and "D48.0" in card["detail"]
        assert "suggestions" not in card


def test_gctb_on_60mg_in_an_adolescent_still_warns(client):
    card = topic_card(client, xgeva_gctb_request("2010-02-02", regimen_120mg=False), TOPIC)
    assert card["indicator"] == "warning"
