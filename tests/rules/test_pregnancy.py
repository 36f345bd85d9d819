"""pregnancy: critical when pregnant (diagnosis or positive test); info at initiation for a woman
of reproductive age with no recent pregnancy test."""

import pytest

from tests.rules.hook_calls import ICD10CM, LOINC, SNOMED, add, condition, make_initiating, set_patient, topic_card
from tests.requests_for_tests import baseline_request

TOPIC = "pregnancy"
URINE_HCG = {"system": LOINC, "code": "2106-3", "display": "Choriogonadotropin (pregnancy test) [Presence] in Urine"}
SERUM_HCG = {"system": LOINC, "code": "19080-1", "display": "Choriogonadotropin [Units/volume] in Serum or Plasma"}
PREGNANT = [{"system": ICD10CM, "code": "Z33.1", "display": "Pregnant state, incidental"}]


def woman(birth_date="1994-06-15", *, initiating=True):
    """The baseline patient as a 32-year-old woman, starting denosumab unless told otherwise."""
    request = baseline_request()
    set_patient(request, gender="female", birth_date=birth_date)
    if initiating:
        make_initiating(request)
    return request


def hcg(request, obs_id, code, when="2026-11-20T08:00:00-06:00", status="final", **value):
    resource = {
        "resourceType": "Observation", "id": obs_id, "status": status,
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [code]}, "subject": {"reference": "Patient/pat-wm-0001"}, "effectiveDateTime": when, **value,
    }
    add(request, "labResults", resource)


def quantity(value, unit="mIU/mL", code="m[IU]/mL", comparator=None):
    q = {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": code}
    if comparator:
        q["comparator"] = comparator
    return q


def interpretation(code):
    return [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": code}]}]


@pytest.mark.parametrize("value", [
    {"valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "10828004", "display": "Positive"}]}},
    {"valueCodeableConcept": {"text": "POSITIVE"}},
    {"valueString": "Positive"},
    {"interpretation": interpretation("POS")},  # no value, only the interpretation
])
def test_positive_qualitative_test_in_30_days_is_critical(client, value):
    request = woman()
    hcg(request, "obs-hcg", URINE_HCG, **value)
    card = topic_card(client, request, TOPIC)
    assert card["indicator"] == "critical" and "2026-11-20" in card["detail"]
    assert card["suggestions"][0]["actions"][0]["resourceId"] == "MedicationRequest/draft-prolia-1"


def test_pregnancy_is_critical_also_on_therapy_and_at_any_age(client):
    request = woman("1958-03-14", initiating=False)
    hcg(request, "obs-hcg", URINE_HCG, valueString="positive")
    assert topic_card(client, request, TOPIC)["indicator"] == "critical"


@pytest.mark.parametrize("value, reference_high, critical", [
    (quantity(48), None, True),
    (quantity(6), None, True),  # above the default cut-off of 5 mIU/mL
    (quantity(5), None, False),
    (quantity(4), None, False),
    (quantity(8), 10, False),  # below the lab's own cut-off
    (quantity(12, unit="IU/L", code="[IU]/L"), 10, True),
    (quantity(5, comparator="<"), None, False),
])
def test_quantitative_hcg_against_the_labs_cut_off(client, value, reference_high, critical):
    request = woman()
    extra = {"referenceRange": [{"high": quantity(reference_high)}]} if reference_high is not None else {}
    hcg(request, "obs-shcg", SERUM_HCG, valueQuantity=value, **extra)
    card = topic_card(client, request, TOPIC)
    if critical:
        assert card["indicator"] == "critical" and "cut-off" in card["detail"]
    else:
        assert card is None  # a negative test within 30 days: status checked


def test_positive_test_older_than_30_days_or_not_final_is_not_critical(client):
    request = woman()
    hcg(request, "obs-old", URINE_HCG, when="2026-10-24T08:00:00-05:00", valueString="positive")
    hcg(request, "obs-prelim", URINE_HCG, status="preliminary", valueString="positive")
    card = topic_card(client, request, TOPIC)
    assert card["indicator"] == "info"  # and no countable test in 30 days
    assert "**positive** (positive) on 2026-10-24" in card["detail"]


def test_hcg_in_a_man_is_a_tumour_marker_not_a_pregnancy_test(client):
    request = woman()
    set_patient(request, gender="male")
    hcg(request, "obs-shcg", SERUM_HCG, valueQuantity=quantity(310))
    assert topic_card(client, request, TOPIC) is None


@pytest.mark.parametrize("clinical, verification, critical", [
    ("active", "confirmed", True), ("active", "provisional", True),
    ("resolved", "confirmed", False), ("inactive", "confirmed", False), ("active", "entered-in-error", False),
])
def test_pregnancy_diagnosis_counts_when_active(client, clinical, verification, critical):
    request = woman("1958-03-14", initiating=False)
    add(request, "conditions", condition("cond-preg", PREGNANT, "Pregnant", clinical=clinical, verification=verification))
    card = topic_card(client, request, TOPIC)
    assert (card is not None and card["indicator"] == "critical") == critical
    if critical:
        assert "Z33.1" in card["detail"]


@pytest.mark.parametrize("birth_date, gender, info", [
    ("2014-11-25", "female", True),   # 12 today
    ("1975-11-26", "female", True),   # 50, 51 tomorrow
    ("1975-11-25", "female", False),  # 51 today
    ("2014-11-26", "female", False),  # 11, 12 tomorrow
    ("1994-06-15", "male", False),
    ("1994-06-15", "unknown", False),
    ("", "female", False),            # no birth date
])
def test_info_at_initiation_for_a_female_aged_12_to_50(client, birth_date, gender, info):
    request = woman(birth_date)
    set_patient(request, gender=gender)
    card = topic_card(client, request, TOPIC)
    assert (card is not None) == info
    if info:
        assert card["indicator"] == "info"
        assert "5 months after the last dose" in card["detail"]
        assert card["suggestions"][0]["actions"][0]["resource"]["resourceType"] == "ServiceRequest"


def test_no_info_when_on_therapy(client):
    assert topic_card(client, woman(initiating=False), TOPIC) is None


def test_no_info_when_a_negative_test_is_recent(client):
    request = woman()
    hcg(request, "obs-neg", URINE_HCG, valueCodeableConcept={"coding": [{"system": SNOMED, "code": "260385009"}]})
    assert topic_card(client, request, TOPIC) is None
