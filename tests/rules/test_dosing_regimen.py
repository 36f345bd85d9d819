"""dosing-regimen: the order's dose and interval against its regimen; GCTB loading doses."""

from datetime import datetime, timezone

import pytest

from cds_service.knowledge import load_knowledge
from cds_service.record.model import MedicationEntry, Patient, PatientRecord, Timing
from cds_service.rules.concepts.regimen import dose_mg_in_text, regimen_of
from cds_service.rules.context import RuleContext
from tests.rules.hook_calls import (
    DENOSUMAB_INGREDIENT, ICD10CM, XGEVA, add, add_draft, condition, make_initiating, medication_request,
    the_draft, topic_card,
)
from tests.requests_for_tests import as_order_select, baseline_request

TOPIC = "dosing-regimen"
GCTB = [{"system": ICD10CM, "code": "D48.0", "display": "Neoplasm of uncertain behavior of bone and articular cartilage"}]
HCM = [{"system": ICD10CM, "code": "E83.52", "display": "Hypercalcemia"}]


def with_timing(request, period, unit, frequency=1, count=None):
    repeat = {"frequency": frequency, "period": period, "periodUnit": unit}
    if count is not None:
        repeat["count"] = count
    the_draft(request)["dosageInstruction"][0]["timing"] = {"repeat": repeat}
    return request


@pytest.mark.parametrize("period, unit, fires", [
    # catalog v2: intervals compared in days, 60 mg fires under 150 days
    (149, "d", True), (21, "wk", True), (3, "mo", True), (1, "mo", True), (1, "d", True),
    (150, "d", False), (5, "mo", False), (24, "wk", False), (26, "wk", False), (180, "d", False), (6, "mo", False),
    (1, "a", False),
])
def test_60mg_more_often_than_every_6_months(client, period, unit, fires):
    card = topic_card(client, with_timing(baseline_request(), period, unit), TOPIC)
    assert (card is not None) == fires
    if fires:
        assert card["indicator"] == "warning"
        assert card["suggestions"][0]["actions"][0] == {
            "type": "delete", "description": card["suggestions"][0]["actions"][0]["description"],
            "resourceId": "MedicationRequest/draft-prolia-1",
        }


def test_frequency_is_folded_into_the_interval(client):
    # Twice every 6 months is one dose every 3 months.
    card = topic_card(client, with_timing(baseline_request(), 6, "mo", frequency=2), TOPIC)
    assert card is not None and "written **every 3 months**" in card["detail"]


@pytest.mark.parametrize("period, unit, words", [
    (1, "d", "daily"), (1, "wk", "weekly"), (1, "mo", "monthly"), (13, "wk", "every 3 months"), (4, "wk", "every 4 weeks"),
])
def test_intervals_are_said_in_words(client, period, unit, words):
    card = topic_card(client, with_timing(baseline_request(), period, unit), TOPIC)
    assert f"written **{words}**" in card["detail"]
    assert "every 1 days" not in card["detail"] and " days**" not in card["detail"]


def test_a_once_only_order_has_no_interval(client):
    assert topic_card(client, with_timing(baseline_request(), 1, "d", count=1), TOPIC) is None


@pytest.mark.parametrize("period, unit", [(-3, "mo"), (0, "mo"), (1e308, "a"), (3, "fortnight"), ("often", "mo")])
def test_nonsense_timing_is_no_interval_and_no_error(client, period, unit):
    assert topic_card(client, with_timing(baseline_request(), period, unit), TOPIC) is None


def test_timing_code_q6m_without_repeat_is_read(client):
    request = baseline_request()
    the_draft(request)["dosageInstruction"][0]["timing"] = {"code": {"coding": [{"code": "Q6M"}], "text": "every 6 months"}}
    assert topic_card(client, request, TOPIC) is None
    the_draft(request)["dosageInstruction"][0]["timing"] = {"code": {"coding": [{"code": "Q4M"}]}}
    card = topic_card(client, request, TOPIC)
    assert card is not None and "(Q4M)" in card["detail"]


def xgeva_request(period=None, unit=None, dose_mg=120, text=None):
    request = baseline_request()
    request["context"]["draftOrders"]["entry"][0]["resource"] = medication_request(
        "draft-xgeva-1", XGEVA, dose_mg=dose_mg, period=period, unit=unit, text=text)
    return request


@pytest.mark.parametrize("period, unit, fires", [
    # catalog v2: 120 mg fires over 35 days
    (4, "wk", False), (28, "d", False), (1, "mo", False), (31, "d", False), (35, "d", False), (5, "wk", False),
    (36, "d", True), (6, "wk", True), (8, "wk", True), (3, "mo", True),
])
def test_120mg_at_intervals_longer_than_4_weeks(client, period, unit, fires):
    card = topic_card(client, xgeva_request(period, unit), TOPIC)
    assert (card is not None) == fires
    if fires:
        assert "never extend" in card["detail"]


@pytest.mark.parametrize("coding, dose_mg, fires", [
    (XGEVA, 60, True),  # 60 mg of the 120 mg product
    (XGEVA, 70, True),  # the strength (70 mg/mL) typed as the dose
    (XGEVA, 120, False),
    (DENOSUMAB_INGREDIENT, 90, False),  # no product regimen to compare with
])
def test_a_dose_that_is_not_the_products(client, coding, dose_mg, fires):
    request = baseline_request()
    request["context"]["draftOrders"]["entry"][0]["resource"] = medication_request(
        "draft-1", coding, dose_mg=dose_mg, period=4, unit="wk")
    card = topic_card(client, request, TOPIC)
    assert (card is not None) == fires
    if fires:
        assert f"dose **{dose_mg} mg** written" in card["detail"]


def test_regimen_from_the_product_name_when_coded_only_by_ingredient(client):
    request = baseline_request()
    request["context"]["draftOrders"]["entry"][0]["resource"] = medication_request(
        "draft-1", DENOSUMAB_INGREDIENT, name="Xgeva 120 mg/1.7 mL vial", period=12, unit="wk")
    card = topic_card(client, request, TOPIC)
    assert card is not None and "120 mg is given every 4 weeks" in card["detail"]


def test_order_select_with_an_order_still_being_written_is_silent(client):
    request = as_order_select(baseline_request())
    del the_draft(request)["dosageInstruction"]
    assert topic_card(client, request, TOPIC) is None
    the_draft(request)["dosageInstruction"] = [{"text": "60 mg"}]  # dose typed, no timing yet
    assert topic_card(client, request, TOPIC) is None


def gctb_start(dosage_text="120 mg SC every 4 weeks", period=4, unit="wk"):
    request = xgeva_request(period, unit, text=dosage_text)
    make_initiating(request)
    add(request, "conditions", condition("cond-gctb", GCTB, "Giant cell tumour of bone, left tibia"))
    return request


def test_hypercalcemia_of_malignancy_at_initiation_without_loading_doses_is_info_too(client):
    """Catalog v2: GCTB *or hypercalcemia of malignancy* at initiation without the day 8 / 15 doses."""
    request = xgeva_request(4, "wk", text="120 mg SC every 4 weeks")
    make_initiating(request)
    add(request, "conditions", condition("cond-hcm", HCM, "Hypercalcemia of malignancy"))
    card = topic_card(client, request, TOPIC)
    assert card["indicator"] == "info" and "day 8 and day 15" in card["detail"] and "E83.52" in card["detail"]


def test_gctb_at_initiation_without_loading_doses_is_info_with_the_loading_order(client):
    card = topic_card(client, gctb_start(), TOPIC)
    assert card["indicator"] == "info"
    assert "day 8 and day 15" in card["detail"] and "D48.0" in card["detail"]
    action = card["suggestions"][0]["actions"][0]
    assert action["type"] == "create" and action["resource"]["resourceType"] == "MedicationRequest"
    assert action["resource"]["medicationCodeableConcept"]["coding"][0]["code"] == "1046402"
    assert "day 8 and day 15" in action["resource"]["dosageInstruction"][0]["text"]


@pytest.mark.parametrize("dosage_text, period, unit", [
    ("120 mg SC on days 1, 8 and 15, then every 4 weeks", 4, "wk"),
    ("120 mg SC loading doses weekly x3", None, None),
    ("120 mg SC", 1, "wk"),
])
def test_gctb_loading_doses_written_in_the_order(client, dosage_text, period, unit):
    assert topic_card(client, gctb_start(dosage_text, period, unit), TOPIC) is None


def test_gctb_loading_doses_in_an_active_order_already_signed(client):
    request = gctb_start()
    add(request, "medicationRequests", medication_request(
        "mr-loading", XGEVA, status="active", dose_mg=120, text="120 mg on day 8 and day 15", authored="2026-11-20T10:00:00Z"))
    assert topic_card(client, request, TOPIC) is None


def test_gctb_on_therapy_needs_no_loading_doses(client):
    request = xgeva_request(4, "wk")  # the baseline had a dose on 2026-05-28: not initiating
    add(request, "conditions", condition("cond-gctb", GCTB, "Giant cell tumour of bone"))
    assert topic_card(client, request, TOPIC) is None


def test_gctb_in_remission_on_the_problem_list_but_the_orders_reason(client):
    request = gctb_start()
    request["prefetch"]["conditions"]["entry"][-1]["resource"]["clinicalStatus"]["coding"][0]["code"] = "inactive"
    assert topic_card(client, request, TOPIC) is None
    the_draft(request)["reasonReference"] = [{"reference": "Condition/cond-gctb"}]
    assert topic_card(client, request, TOPIC)["indicator"] == "info"


def test_interval_problem_and_missing_loading_doses_make_one_warning(client):
    card = topic_card(client, gctb_start(period=8, unit="wk"), TOPIC)
    assert card["indicator"] == "warning" and "loading doses" in card["detail"]


def test_two_drafts_each_checked(client):
    request = baseline_request()
    add_draft(request, medication_request("draft-xgeva-2", XGEVA, dose_mg=120, period=12, unit="wk"))
    card = topic_card(client, request, TOPIC)
    assert "written **every 12 weeks**" in card["detail"]
    assert [a["resourceId"] for s in card["suggestions"] for a in s["actions"]] == ["MedicationRequest/draft-xgeva-2"]


# --- the shared regimen sub-routine -----------------------------------------------------------------

def entry(concepts=(), dose_mg=None, dosage_text=None, name="denosumab", name_concepts=()):
    return MedicationEntry(
        source="MedicationRequest", id="x", concepts=frozenset(concepts), name=name, status="draft",
        dose_mg=dose_mg, dosage_text=dosage_text, timing=Timing(period_days=28), name_concepts=frozenset(name_concepts),
    )


@pytest.mark.parametrize("kwargs, regimen", [
    ({"concepts": {"denosumab-60mg"}, "dose_mg": 120}, "60mg"),  # the product wins over the dose
    ({"concepts": {"denosumab-unspecified-strength"}, "dose_mg": 120}, "120mg"),
    ({"concepts": {"denosumab-unspecified-strength"}, "name_concepts": {"denosumab-120mg"}}, "120mg"),
    ({"dosage_text": "Inject 60 mg SC every 6 months"}, "60mg"),
    ({"name": "denosumab 120mg/1.7mL vial"}, "120mg"),
    ({"name": "denosumab 70 mg/mL x 1.7 mL"}, None),  # a strength is not a dose
    ({"dose_mg": 90}, None),
    ({}, None),
])
def test_regimen_of(kwargs, regimen):
    ctx = RuleContext(PatientRecord(Patient(None, None, None)), datetime(2026, 11, 25, tzinfo=timezone.utc),
                      load_knowledge(), "denosumab-order")
    assert regimen_of(ctx, entry(**kwargs)) == regimen


@pytest.mark.parametrize("text, dose", [
    ("120 mg SC every 4 weeks", 120), ("Prolia 60mg", 60), ("Xgeva 120 mg/1.7 mL", 120), ("give 120 MG", 120), ("0.5 mg", 0.5),
    ("70 mg/mL", None), ("60 mg / mL", None), ("1.7 mL", None), (None, None), ("", None),
])
def test_dose_mg_in_text(text, dose):
    assert dose_mg_in_text(text) == dose


def test_signing_the_suggested_loading_order_settles_the_card_without_a_duplicate(client):
    request = gctb_start()
    suggested = topic_card(client, request, TOPIC)["suggestions"][0]["actions"][0]["resource"]
    add_draft(request, dict(suggested, id="draft-loading"))
    assert topic_card(client, request, TOPIC) is None
    assert topic_card(client, request, "duplicate-denosumab") is None
