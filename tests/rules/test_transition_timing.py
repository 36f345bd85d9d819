"""transition-timing: a bisphosphonate order after 60 mg denosumab outside 5-7 months (info), or
zoledronic acid with eGFR < 35 (warning)."""

from __future__ import annotations

import pytest

from cds_service.knowledge import load_knowledge
from cds_service.record.build import RecordInputs, build_record
from cds_service.rules import transition_timing
from cds_service.rules.context import RuleContext
from cds_service.rules.engine import focus_triggers
from tests.rules.record_builders import (
    AS_OF, ENCOUNTER_ID, PATIENT_ID, PROLIA, RXNORM, actions, days_ago, egfr, medication_order, observation,
)

XGEVA = {"system": RXNORM, "code": "1046402"}
ZOLEDRONIC_ACID_5MG = {"system": RXNORM, "code": "705824"}
ZOMETA_4MG = {"system": RXNORM, "code": "1114085"}
ALENDRONATE = {"system": RXNORM, "code": "46041"}
RISEDRONATE = {"system": RXNORM, "code": "905024"}
FORTEO = {"system": RXNORM, "code": "1435117"}
_ids = iter(range(1, 10**6))


def given(coding: dict, days: float) -> dict:
    return {"resourceType": "MedicationAdministration", "id": f"madm-{next(_ids)}", "status": "completed",
            "medicationCodeableConcept": {"coding": [coding]}, "subject": {"reference": f"Patient/{PATIENT_ID}"},
            "effectiveDateTime": days_ago(days)}


def draft(coding: dict, order_id: str | None = "draft-bp", text: str = "bisphosphonate as ordered") -> dict:
    order = medication_order(coding, text=text, status="draft", days=0, order_id=order_id or "x")
    if order_id is None:
        del order["id"]
    order["encounter"] = {"reference": f"Encounter/{ENCOUNTER_ID}"}
    order["dosageInstruction"] = [{"text": "70 mg by mouth once weekly"}]
    return order


def run(resources, drafts):
    kb = load_knowledge()
    record = build_record(RecordInputs(patient_id=PATIENT_ID, encounter_id=ENCOUNTER_ID, resource_groups=[("test", list(resources))],
                                       draft_orders=list(drafts)), kb)
    orders = focus_triggers("order-sign", record).get("follow-on-order")
    if orders is None:
        return None
    return transition_timing.evaluate(RuleContext(record, AS_OF, kb, "follow-on-order", orders))


@pytest.mark.parametrize("days, expected", [
    (100, "too early"), (151, "too early"), (152, None), (182, None), (213, None), (214, "late"), (400, "late"),
])
def test_window_5_to_7_months_after_the_last_60mg_dose(days, expected):
    finding = run([given(PROLIA, days), egfr(70)], [draft(ALENDRONATE)])
    if expected is None:
        assert finding is None
    else:
        assert finding.indicator == "info" and expected in finding.summary


def test_too_early_shows_the_window_and_offers_to_reorder_from_the_due_date():
    finding = run([given(PROLIA, 119), egfr(70)], [draft(ALENDRONATE, text="alendronate 70 mg tablet")])
    assert "between **2026-12-28** and **2027-02-27**" in finding.detail
    assert "on or about **2027-01-27**" in finding.detail
    (cancel_kind, cancelled), (create_kind, resource) = actions(finding)
    assert (cancel_kind, cancelled) == ("delete", "MedicationRequest/draft-bp")
    assert create_kind == "create" and resource["medicationCodeableConcept"]["coding"][0]["code"] == "46041"
    assert resource["dosageInstruction"][0]["timing"] == {"repeat": {"boundsPeriod": {"start": "2027-01-27"}}}
    assert resource["subject"] == {"reference": f"Patient/{PATIENT_ID}"}


def test_a_draft_without_id_gets_the_card_but_no_reorder_suggestion():
    finding = run([given(PROLIA, 100), egfr(70)], [draft(ALENDRONATE, order_id=None)])
    assert finding is not None and finding.suggestions == ()


def test_too_late_says_look_for_vertebral_fractures():
    finding = run([given(PROLIA, 272), egfr(70)], [draft(ZOLEDRONIC_ACID_5MG)])
    assert "vertebral fractures" in finding.detail and finding.suggestions == ()


@pytest.mark.parametrize("zoledronic_acid", [ZOLEDRONIC_ACID_5MG, ZOMETA_4MG])
@pytest.mark.parametrize("value, replacement", [(32, "905024"), (28, "306286007")])
def test_zoledronic_acid_with_egfr_below_35_is_a_warning_replaced_by_the_renal_rule(zoledronic_acid, value, replacement):
    finding = run([given(PROLIA, 185), egfr(value, days=12)], [draft(zoledronic_acid, order_id="draft-zol")])
    assert finding.indicator == "warning"
    assert "on 2026-11-13: below 35" in finding.detail
    kinds = actions(finding)
    assert kinds[0] == ("delete", "MedicationRequest/draft-zol")
    created = kinds[1][1]
    assert (created.get("medicationCodeableConcept") or created["code"])["coding"][0]["code"] == replacement


def test_renal_warning_outranks_timing_but_the_detail_says_both():
    finding = run([given(PROLIA, 300), egfr(30)], [draft(ZOLEDRONIC_ACID_5MG)])
    assert finding.indicator == "warning" and "**late**" in finding.detail and "below 35" in finding.detail


@pytest.mark.parametrize("egfr_value", [35, 60])
def test_zoledronic_acid_with_egfr_at_least_35_in_window_is_silent(egfr_value):
    assert run([given(PROLIA, 185), egfr(egfr_value)], [draft(ZOLEDRONIC_ACID_5MG)]) is None


@pytest.mark.parametrize("value, warns", [(34, True), (35, False)])
def test_alendronate_below_35_is_a_renal_warning(value, warns):
    finding = run([given(PROLIA, 185), egfr(value)], [draft(ALENDRONATE)])
    assert (finding is not None and finding.indicator == "warning") == warns


@pytest.mark.parametrize("value, warns", [(29, True), (30, False)])
def test_risedronate_below_30_is_a_renal_warning(value, warns):
    finding = run([given(PROLIA, 185), egfr(value)], [draft(RISEDRONATE)])
    assert (finding is not None and finding.indicator == "warning") == warns


def test_no_kidney_result_in_12_months_30_days_for_zoledronic_acid():
    finding = run([given(PROLIA, 185), egfr(70, days=60)], [draft(ZOLEDRONIC_ACID_5MG)])
    assert finding.indicator == "warning" and "no kidney function result since" in finding.detail
    assert actions(finding)[0][1]["code"]["coding"][0]["code"] == "2160-0"
    assert run([given(PROLIA, 185), egfr(70, days=60)], [draft(ALENDRONATE)]) is None
    assert run([given(PROLIA, 185), egfr(70, days=400)], [draft(ALENDRONATE)]).indicator == "warning"


def test_zoledronic_acid_with_hypocalcemia_is_a_warning():
    low_calcium = observation("17861-6", 7.9, "mg/dL", days_ago(5))
    finding = run([given(PROLIA, 185), egfr(70), low_calcium], [draft(ZOLEDRONIC_ACID_5MG)])
    assert finding.indicator == "warning" and "hypocalcemia" in finding.detail


def test_timing_is_for_the_first_bisphosphonate_only_and_never_after_24_months():
    assert run([given(PROLIA, 800), egfr(70)], [draft(ZOLEDRONIC_ACID_5MG)]) is None


def test_after_a_completed_transition_timing_no_longer_applies_but_renal_does():
    history = [given(PROLIA, 545), given(ZOLEDRONIC_ACID_5MG, 360)]
    assert run(history + [egfr(70)], [draft(ZOLEDRONIC_ACID_5MG)]) is None
    assert run(history + [egfr(25)], [draft(ZOLEDRONIC_ACID_5MG)]).indicator == "warning"


def test_after_the_120mg_regimen_only_the_renal_check_applies():
    assert run([given(XGEVA, 300), egfr(70)], [draft(ZOLEDRONIC_ACID_5MG)]) is None
    assert run([given(XGEVA, 300), egfr(25)], [draft(ZOLEDRONIC_ACID_5MG)]).indicator == "warning"


def test_no_denosumab_history_no_card():
    assert run([egfr(20)], [draft(ZOLEDRONIC_ACID_5MG)]) is None


def test_not_a_bisphosphonate_no_card():
    assert run([given(PROLIA, 100), egfr(70)], [draft(FORTEO)]) is None


def test_a_bisphosphonate_coded_with_a_code_in_no_value_set_is_recognised_by_name_and_says_so():
    """The sandbox's alendronic acid 70 mg weekly (RxNorm 904431) is in no value set of the extract."""
    sandbox = {"system": RXNORM, "code": "904431", "display": "alendronic acid 70 MG Oral Tablet"}
    finding = run([given(PROLIA, 119), egfr(70)], [draft(sandbox)])
    assert finding is not None and "too early" in finding.summary
    assert "code 904431 is in no value set of this service: recognised by its name" in finding.detail


def _frail_woman(creatinine_mg_dl: float | None, weight_kg: float | None) -> list[dict]:
    """An 86-year-old woman with an eGFR of 40 and, when given, a creatinine and a weight."""
    resources = [{"resourceType": "Patient", "id": PATIENT_ID, "gender": "female", "birthDate": "1940-06-01"},
                 given(PROLIA, 182), egfr(40)]
    if creatinine_mg_dl is not None:
        resources.append(observation("2160-0", creatinine_mg_dl, "mg/dL", days_ago(20)))
    if weight_kg is not None:
        weight = observation("29463-7", weight_kg, "kg", days_ago(20))
        weight["category"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}]
        resources.append(weight)
    return resources


def test_the_label_limit_reads_cockcroft_gault_creatinine_clearance_when_its_inputs_are_on_file():
    # (140 - 86) x 45 kg / (72 x 1.2 mg/dL) x 0.85 = 23.9 mL/min: below alendronate's 35, although the eGFR is 40.
    finding = run(_frail_woman(1.2, 45), [draft(ALENDRONATE)])
    assert finding is not None and finding.indicator == "warning"
    assert "creatinine clearance (Cockcroft-Gault" in finding.detail and "23.9 mL/min" in finding.detail


def test_without_a_weight_the_label_limit_reads_the_egfr():
    assert run(_frail_woman(1.2, None), [draft(ALENDRONATE)]) is None  # eGFR 40: alendronate allowed
