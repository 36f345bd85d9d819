"""vitamin-d-deficiency: latest 25-OH vitamin D (12 months) < 20 ng/mL (50 nmol/L), or an active
deficiency diagnosis with no normal level since; a repletion order, timing by regimen, info in the
hypercalcemia state."""

from __future__ import annotations

import pytest

from cds_service.rules import vitamin_d_deficiency as rule
from tests.rules.record_builders import (
    RXNORM, SNOMED, actions, calcium, condition, created_codes, days_ago, evaluate, medication_order, observation,
    prolia_administration, prolia_draft,
)

REPLETION = "705728"  # cholecalciferol 1.25 MG (50,000 IU) Oral Capsule
CHOLECALCIFEROL_1000 = {"system": RXNORM, "code": "199362"}

TOTAL_25OH_D = "62292-8"
D3_MOLAR = "14635-7"


def level(value, days: float = 30, unit: str = "ng/mL", **kw) -> dict:
    return observation(D3_MOLAR if unit == "nmol/L" else TOTAL_25OH_D, value, unit, days_ago(days), **kw)


def deficiency(**kw) -> dict:
    return condition("E55.9", text="Vitamin D deficiency", **kw)


def fires(*resources) -> bool:
    return evaluate(rule, list(resources)) is not None


@pytest.mark.parametrize("value, unit, expected", [
    (19.9, "ng/mL", True), (20, "ng/mL", False), (34, "ng/mL", False),
    (49.9, "nmol/L", True), (50, "nmol/L", False), (42, "nmol/L", True), (55, "nmol/L", False),
])
def test_deficiency_limit_in_both_units(value, unit, expected):
    assert fires(level(value, unit=unit)) is expected


def medication_codes(finding) -> set[str]:
    return {r["medicationCodeableConcept"]["coding"][0]["code"] for kind, r in actions(finding) if kind == "create"}


def test_nmol_l_result_is_shown_as_reported_with_the_converted_value():
    finding = evaluate(rule, [level(42, days=60, unit="nmol/L")])
    assert finding.indicator == "warning"
    assert "42 nmol/L (16.8 ng/mL) on 2026-09-26" in finding.detail and "16.83" not in finding.detail
    assert "below 20 ng/mL (50 nmol/L)" in finding.detail
    assert "42 nmol/L" in finding.summary


def test_a_low_level_suggests_the_repletion_regimen_not_the_maintenance_dose():
    finding = evaluate(rule, [level(12)])
    assert medication_codes(finding) == {REPLETION}
    (dosage,) = [r for kind, r in actions(finding)][0]["dosageInstruction"]
    assert dosage["timing"]["repeat"] == {"frequency": 1, "period": 1, "periodUnit": "wk", "count": 8}
    assert "50,000 IU" in dosage["text"] and "8 weeks" in dosage["text"]
    assert len(finding.suggestions[0].label) < 80


def test_timing_wording_at_initiation_of_60mg_and_on_therapy():
    assert "consider deferring the first dose" in evaluate(rule, [level(12)]).detail
    on_therapy = evaluate(rule, [level(12), prolia_administration(180)]).detail
    assert "Do not delay the dose" in on_therapy and "deferring" not in on_therapy
    xgeva = prolia_draft({"system": RXNORM, "code": "1046402"})
    assert "Do not delay the dose" in evaluate(rule, [level(12)], drafts=[xgeva]).detail


def test_not_issued_when_vitamin_d_was_started_after_the_low_result():
    assert not fires(level(12, days=60), medication_order(CHOLECALCIFEROL_1000, days=30))
    assert fires(level(12, days=60), medication_order(CHOLECALCIFEROL_1000, days=90))
    assert fires(level(12, days=60), medication_order(CHOLECALCIFEROL_1000, days=30, status="entered-in-error"))


def test_hypercalcemia_state_turns_it_into_info_without_an_order():
    finding = evaluate(rule, [level(12), calcium(11.2, days=3)])
    assert finding.indicator == "info" and finding.suggestions == ()
    assert "do not replete while calcium is high" in finding.summary


@pytest.mark.parametrize("comparator, expected", [("<", True), ("<=", True), (">", False)])
def test_reported_bounds(comparator, expected):
    assert fires(level(10 if comparator != ">" else 15, comparator=comparator)) is expected


@pytest.mark.parametrize("days, expected", [(364, True), (366, False)])
def test_twelve_month_look_back(days, expected):
    assert fires(level(12, days=days)) is expected


def test_latest_result_decides():
    assert not fires(level(12, days=200), level(31, days=20))
    assert fires(level(31, days=200), level(12, days=20))


def test_results_that_are_not_final_do_not_count():
    assert not fires(level(9, days=3, status="preliminary"), level(32, days=100))
    assert not fires(level(9, days=3, status="entered-in-error"))


# --- diagnosis ---------------------------------------------------------------------------------

def test_recent_diagnosis_without_a_normal_level_since_suggests_repletion():
    finding = evaluate(rule, [deficiency(onset="2026-09-01"), level(34, days=176)])
    assert "no normal 25-OH vitamin D since 2026-09-01" in finding.detail
    assert "34 ng/mL on 2026-06-02" in finding.detail
    assert medication_codes(finding) == {REPLETION}
    (absence,) = finding.rests_on_absence
    assert absence.category == "labs" and absence.since.date().isoformat() == "2026-09-01"


def test_older_diagnosis_with_no_level_in_12_months_asks_for_a_level_not_repletion():
    finding = evaluate(rule, [deficiency(onset="2024-03-01"), level(14, days=1100)])
    assert not fires(deficiency(onset="2024-03-01"), level(34, days=400))  # corrected since, in an older result
    assert created_codes(finding) == {TOTAL_25OH_D}
    assert finding.rests_on_absence[0].check == "a 25-OH vitamin D in the last 12 months"


def test_active_diagnosis_with_a_normal_level_since_is_silent():
    assert not fires(deficiency(onset="2026-01-12"), level(11, days=317), level(31, days=110))


def test_a_low_level_since_the_diagnosis_is_shown_as_the_low_level():
    finding = evaluate(rule, [deficiency(onset="2026-01-12"), level(14, days=20)])
    assert "Latest 25-OH vitamin D: 14 ng/mL" in finding.detail


@pytest.mark.parametrize("kw", [
    {"clinical": "resolved", "abatement": "2026-02-20"},
    {"clinical": "inactive"},
    {"verification": "entered-in-error"},
    {"verification": "refuted"},
])
def test_diagnosis_not_active_is_silent(kw):
    assert not fires(deficiency(onset="2025-08-14", **kw))


def test_recorded_date_stands_for_a_missing_onset():
    recorded_only = condition("34713006", SNOMED, onset=None, text="Vitamin D deficiency")
    recorded_only["recordedDate"] = "2026-09-01T09:10:00-05:00"
    assert fires(recorded_only, level(34, days=176))
    assert not fires(recorded_only, level(34, days=30))


def test_undated_diagnosis_is_cleared_by_a_normal_level_within_12_months():
    undated = deficiency(onset=None)
    assert fires(undated)
    assert not fires(undated, level(25, days=300))
    assert fires(undated, level(25, days=400))


def test_hypercalcemia_of_malignancy_gets_info_without_repletion():
    xgeva = prolia_draft({"system": RXNORM, "code": "1046402"})
    xgeva["reasonCode"] = [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E83.52"}],
                            "text": "Hypercalcemia of malignancy"}]
    finding = evaluate(rule, [level(12), calcium(9.6, days=2)], drafts=[xgeva])
    assert finding.indicator == "info" and finding.suggestions == ()
    assert "only to treat hypocalcemia" in finding.detail
