"""pregnancy (catalog v2): critical for a current pregnancy diagnosis (294 days) or a positive test
(30 days, hCG from 25 mIU/mL); warning for an equivocal hCG (5-24, info from age 45); info for a
pregnancy diagnosis left on the problem list and at initiation for a woman of 12-50 without a test,
unless postmenopausal or after hysterectomy / bilateral oophorectomy."""

import pytest

from cds_service.knowledge import CPT
from tests.rules.hook_calls import ICD10CM, LOINC, SNOMED, add, condition, make_initiating, remove, set_patient, topic_card
from tests.requests_for_tests import baseline_request

TOPIC = "pregnancy"
URINE_HCG = {"system": LOINC, "code": "2106-3", "display": "Choriogonadotropin (pregnancy test) [Presence] in Urine"}
SERUM_HCG = {"system": LOINC, "code": "19080-1", "display": "Choriogonadotropin [Units/volume] in Serum or Plasma"}
PREGNANT = [{"system": ICD10CM, "code": "Z33.1", "display": "Pregnant state, incidental"}]
OSTEOPOROSIS = [{"system": ICD10CM, "code": "M81.8", "display": "Other osteoporosis without current pathological fracture"}]
AGE_RELATED_OSTEOPOROSIS = [{"system": ICD10CM, "code": "M81.0", "display": "Age-related osteoporosis without current pathological fracture"}]
MENOPAUSAL = [{"system": ICD10CM, "code": "Z78.0", "display": "Asymptomatic menopausal state"}]
NEGATIVE = {"valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "260385009", "display": "Negative"}]}}
POSITIVE = {"valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "10828004", "display": "Positive"}]}}


def woman(birth_date="1994-06-15", *, initiating=True, diagnosis=OSTEOPOROSIS):
    """The baseline patient as a 32-year-old woman whose osteoporosis code says nothing about
    menopause (the baseline's postmenopausal osteoporosis code replaced), starting denosumab
    unless told otherwise."""
    request = baseline_request()
    set_patient(request, gender="female", birth_date=birth_date)
    remove(request, "conditions", "cond-pmo-1")
    add(request, "conditions", condition("cond-op", diagnosis, "Osteoporosis", onset="2025-09-01"))
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


def procedure(request, proc_id, coding, performed):
    add(request, "procedures", {
        "resourceType": "Procedure", "id": proc_id, "status": "completed", "code": {"coding": [coding]},
        "subject": {"reference": "Patient/pat-wm-0001"}, "performedDateTime": performed,
    })


def ordered_test_codes(card):
    return {c["code"] for s in card["suggestions"] for a in s["actions"] if a["type"] == "create"
            for c in a["resource"]["code"]["coding"]}


# --- critical ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    POSITIVE,
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


def test_pregnancy_is_critical_also_on_therapy_and_at_any_age_without_a_menopause_code(client):
    request = woman("1958-03-14", initiating=False)
    hcg(request, "obs-hcg", URINE_HCG, valueString="positive")
    assert topic_card(client, request, TOPIC)["indicator"] == "critical"


@pytest.mark.parametrize("value, indicator", [
    (quantity(48), "critical"),
    (quantity(25), "critical"),  # hCG >= 25 mIU/mL is positive
    (quantity(25, unit="IU/L", code="[IU]/L"), "critical"),
    (quantity(1000, comparator=">"), "critical"),
    (quantity(24.9), "warning"),  # 5-24 equivocal
    (quantity(24), "warning"),
    (quantity(5), "warning"),
    (quantity(4.9), None),  # negative: and a test in 30 days, so no initiation info either
    (quantity(5, comparator="<"), None),
])
def test_quantitative_hcg_cut_offs(client, value, indicator):
    request = woman()
    hcg(request, "obs-shcg", SERUM_HCG, valueQuantity=value)
    card = topic_card(client, request, TOPIC)
    assert (card["indicator"] if card else None) == indicator
    if indicator == "warning":
        assert "Repeat the pregnancy test" in card["detail"] and ordered_test_codes(card) == {"2106-3"}


@pytest.mark.parametrize("birth_date, indicator", [
    ("1981-11-25", "info"),     # 45 today: may be pituitary hCG
    ("1981-11-26", "warning"),  # 44
])
def test_equivocal_hcg_from_age_45_is_info(client, birth_date, indicator):
    request = woman(birth_date)
    hcg(request, "obs-shcg", SERUM_HCG, valueQuantity=quantity(12))
    card = topic_card(client, request, TOPIC)
    assert card["indicator"] == indicator
    assert ("pituitary hCG" in card["detail"]) == (indicator == "info")


@pytest.mark.parametrize("onset, indicator", [
    ("2026-02-04", "critical"),  # 294 days (42 weeks) before 2026-11-25
    ("2026-02-03", "info"),      # 295 days: still active on the problem list
])
def test_pregnancy_diagnosis_counts_for_294_days(client, onset, indicator):
    request = woman(initiating=False)
    add(request, "conditions", condition("cond-preg", PREGNANT, "Pregnant", onset=onset))
    card = topic_card(client, request, TOPIC)
    assert card["indicator"] == indicator
    if indicator == "info":
        assert "still active on the problem list since 2026-02-03" in card["detail"]
        assert "Verify and update" in card["detail"]


def test_recorded_date_dates_a_diagnosis_without_onset(client):
    request = woman(initiating=False)
    add(request, "conditions", condition("cond-preg", PREGNANT, "Pregnant", onset=None, recorded="2023-04-11T09:00:00-05:00"))
    card = topic_card(client, request, TOPIC)
    assert card["indicator"] == "info" and "since 2023-04-11" in card["detail"]


@pytest.mark.parametrize("clinical, verification, critical", [
    ("active", "confirmed", True), ("active", "provisional", True),
    ("resolved", "confirmed", False), ("inactive", "confirmed", False), ("active", "entered-in-error", False),
])
def test_pregnancy_diagnosis_counts_when_active(client, clinical, verification, critical):
    request = woman("1990-03-14", initiating=False)
    add(request, "conditions", condition("cond-preg", PREGNANT, "Pregnant", clinical=clinical, verification=verification,
                                         onset="2026-09-01"))
    card = topic_card(client, request, TOPIC)
    assert (card is not None and card["indicator"] == "critical") == critical
    if critical:
        assert "Z33.1" in card["detail"]


# --- a later outcome or negative test ends it --------------------------------------------------

@pytest.mark.parametrize("ending", ["delivery-diagnosis", "delivery-procedure", "negative-test"])
def test_a_later_outcome_or_negative_test_ends_a_pregnancy_diagnosis(client, ending):
    request = woman(initiating=False)
    add(request, "conditions", condition("cond-preg", PREGNANT, "Pregnant", onset="2026-03-01"))
    if ending == "delivery-diagnosis":
        add(request, "conditions", condition("cond-birth", [{"system": ICD10CM, "code": "Z37.0", "display": "Single live birth"}],
                                             "Single live birth", onset="2026-10-30"))
    elif ending == "delivery-procedure":
        procedure(request, "proc-del", {"system": CPT, "code": "59400"}, "2026-10-30T08:00:00-05:00")
    else:
        hcg(request, "obs-neg", URINE_HCG, when="2026-11-02T08:00:00-06:00", **NEGATIVE)
    card = topic_card(client, request, TOPIC)
    assert card["indicator"] == "info" and "Verify and update the problem list" in card["detail"]


def test_an_outcome_before_the_diagnosis_does_not_end_it(client):
    request = woman(initiating=False)
    add(request, "conditions", condition("cond-birth", [{"system": ICD10CM, "code": "Z37.0"}], "Live birth", onset="2024-05-01"))
    add(request, "conditions", condition("cond-preg", PREGNANT, "Pregnant", onset="2026-09-01"))
    assert topic_card(client, request, TOPIC)["indicator"] == "critical"


def test_a_later_negative_test_ends_a_positive_one(client):
    request = woman()
    hcg(request, "obs-pos", URINE_HCG, when="2026-11-10T08:00:00-06:00", **POSITIVE)
    hcg(request, "obs-neg", SERUM_HCG, when="2026-11-20T08:00:00-06:00", valueQuantity=quantity(2))
    assert topic_card(client, request, TOPIC) is None  # and tested in the last 30 days


def test_a_miscarriage_after_a_positive_test_ends_it(client):
    request = woman()
    hcg(request, "obs-pos", URINE_HCG, when="2026-11-01T08:00:00-05:00", **POSITIVE)
    add(request, "conditions", condition("cond-sab", [{"system": SNOMED, "code": "17369002", "display": "Miscarriage"}],
                                         "Miscarriage", onset="2026-11-15"))
    assert topic_card(client, request, TOPIC) is None


def test_positive_test_older_than_30_days_or_not_final_is_not_critical(client):
    request = woman()
    hcg(request, "obs-old", URINE_HCG, when="2026-10-24T08:00:00-05:00", valueString="positive")
    hcg(request, "obs-prelim", URINE_HCG, status="preliminary", valueString="positive")
    card = topic_card(client, request, TOPIC)
    assert card["indicator"] == "info"  # and no countable test in 30 days
    assert "**positive** (positive) on 2026-10-24" in card["detail"]


# --- who the tests apply to --------------------------------------------------------------------

def test_hcg_in_a_man_is_a_tumour_marker_not_a_pregnancy_test(client):
    request = woman()
    set_patient(request, gender="male")
    hcg(request, "obs-shcg", SERUM_HCG, valueQuantity=quantity(310))
    assert topic_card(client, request, TOPIC) is None


def test_a_positive_test_counts_when_sex_is_not_recorded(client):
    request = woman()
    set_patient(request, gender="")
    hcg(request, "obs-shcg", SERUM_HCG, valueQuantity=quantity(310))
    assert topic_card(client, request, TOPIC)["indicator"] == "critical"


@pytest.mark.parametrize("tumour", [
    [{"system": ICD10CM, "code": "O01.0", "display": "Classical hydatidiform mole"}],
    [{"system": SNOMED, "code": "254869000", "display": "Malignant germ cell tumor of ovary"}],
])
def test_quantitative_hcg_is_a_tumour_marker_with_an_hcg_secreting_tumour(client, tumour):
    request = woman(initiating=False)
    add(request, "conditions", condition("cond-tumour", tumour, "hCG-secreting tumour", onset="2026-06-01"))
    hcg(request, "obs-shcg", SERUM_HCG, valueQuantity=quantity(310))
    assert topic_card(client, request, TOPIC) is None
    hcg(request, "obs-urine", URINE_HCG, **POSITIVE)  # a qualitative pregnancy test still counts
    assert topic_card(client, request, TOPIC)["indicator"] == "critical"


@pytest.mark.parametrize("exclusion", ["menopause-code", "postmenopausal-osteoporosis", "hysterectomy-procedure",
                                       "hysterectomy-status", "bilateral-oophorectomy"])
def test_no_info_or_equivocal_card_for_a_postmenopausal_or_surgical_exclusion(client, exclusion):
    request = woman("1978-05-02")  # 48
    if exclusion == "menopause-code":
        add(request, "conditions", condition("cond-meno", MENOPAUSAL, "Menopause", onset="2025-01-10"))
    elif exclusion == "postmenopausal-osteoporosis":
        add(request, "conditions", condition("cond-pmo", [{"system": SNOMED, "code": "102447009"}], "Postmenopausal osteoporosis"))
    elif exclusion == "hysterectomy-procedure":
        procedure(request, "proc-hyst", {"system": SNOMED, "code": "236886002", "display": "Hysterectomy"}, "2019-03-05T09:00:00-06:00")
    elif exclusion == "hysterectomy-status":
        add(request, "conditions", condition("cond-z90", [{"system": ICD10CM, "code": "Z90.710"}], "Acquired absence of uterus"))
    else:
        procedure(request, "proc-bso", {"system": SNOMED, "code": "29827000"}, "2020-07-01T09:00:00-05:00")
    assert topic_card(client, request, TOPIC) is None  # no test in 30 days, but not of reproductive potential
    hcg(request, "obs-shcg", SERUM_HCG, valueQuantity=quantity(9))
    assert topic_card(client, request, TOPIC) is None  # an equivocal hCG is not read as a pregnancy test


def test_age_related_osteoporosis_m81_0_is_not_a_menopause_code(client):
    request = woman("1978-05-02", diagnosis=AGE_RELATED_OSTEOPOROSIS)
    assert topic_card(client, request, TOPIC)["indicator"] == "info"


def test_a_postmenopausal_code_before_45_does_not_silence_a_positive_test(client):
    request = woman("1995-02-10")  # 31: a wrong code must not hide a pregnancy
    add(request, "conditions", condition("cond-pmo", [{"system": SNOMED, "code": "102447009"}], "Postmenopausal osteoporosis"))
    hcg(request, "obs-hcg", URINE_HCG, **POSITIVE)
    assert topic_card(client, request, TOPIC)["indicator"] == "critical"


# --- info at initiation ------------------------------------------------------------------------

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
        order = card["suggestions"][0]["actions"][0]["resource"]
        assert order["resourceType"] == "ServiceRequest"
        assert order["code"]["coding"][0] == {"system": LOINC, "code": "2106-3",
                                              "display": "Choriogonadotropin (pregnancy test) [Presence] in Urine"}


def test_no_info_when_on_therapy(client):
    assert topic_card(client, woman(initiating=False), TOPIC) is None


def test_no_info_when_a_negative_test_is_recent(client):
    request = woman()
    hcg(request, "obs-neg", URINE_HCG, **NEGATIVE)
    assert topic_card(client, request, TOPIC) is None
