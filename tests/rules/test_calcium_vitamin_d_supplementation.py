"""calcium-vitamin-d-supplementation: no active calcium or vitamin D supplement; never calcium for a
patient whose latest calcium is high or who has active hypercalcemia."""

from __future__ import annotations

import pytest

from cds_service.rules import calcium_vitamin_d_supplementation as rule
from tests.rules.record_builders import (
    ENCOUNTER_ID, ICD10CM, PATIENT_ID, RXNORM, SNOMED, actions, albumin, calcium, condition, context, days_ago, evaluate,
    medication_order, prolia_draft,
)

CALCIUM_D_COMBINATION = {"system": RXNORM, "code": "1310954"}  # Caltrate Plus D (calcium carbonate 1500 MG / D3 800 UNT)
CALCIUM_CARBONATE = {"system": RXNORM, "code": "237420"}
CHOLECALCIFEROL_1000 = {"system": RXNORM, "code": "199362"}
CALCIUM_ORDER, VITAMIN_D_ORDER = "237420", "309263"


def statement(coding: dict | None, status: str = "active", text: str | None = None, statement_id: str | None = None) -> dict:
    concept = {**({"coding": [coding]} if coding else {}), **({"text": text} if text else {})}
    return {"resourceType": "MedicationStatement", "id": statement_id or f"ms-{status}-{coding['code']}", "status": status,
            "medicationCodeableConcept": concept, "subject": {"reference": f"Patient/{PATIENT_ID}"},
            "effectivePeriod": {"start": "2025-03-01"}, "dateAsserted": days_ago(30)}


def suggested_codes(finding) -> set[str]:
    return {resource["medicationCodeableConcept"]["coding"][0]["code"] for kind, resource in actions(finding) if kind == "create"}


def run(*resources, drafts=None):
    return evaluate(rule, list(resources), **({"drafts": drafts} if drafts is not None else {}))


def test_no_supplements_suggests_both_orders_any_of_which_may_be_taken():
    finding = run(calcium(9.4))
    assert finding.indicator == "warning"
    assert suggested_codes(finding) == {CALCIUM_ORDER, VITAMIN_D_ORDER}
    assert finding.selection_behavior == "any" and len(finding.suggestions) == 2
    for kind, resource in actions(finding):
        assert resource["resourceType"] == "MedicationRequest" and resource["status"] == "draft"
        assert resource["subject"] == {"reference": f"Patient/{PATIENT_ID}"}
        assert resource["encounter"] == {"reference": f"Encounter/{ENCOUNTER_ID}"}
        assert resource["medicationCodeableConcept"]["coding"][0]["system"] == RXNORM
    assert "no active calcium supplement" in finding.detail and "no active vitamin D supplement" in finding.detail


def test_suggested_orders_carry_the_instructions_and_timing_the_seeds_give():
    from cds_service.knowledge import load_knowledge

    kb = load_knowledge()
    finding = run(calcium(9.4))
    by_code = {resource["medicationCodeableConcept"]["coding"][0]["code"]: resource for _, resource in actions(finding)}
    for code, order_set in ((CALCIUM_ORDER, "calcium-supplement-order"), (VITAMIN_D_ORDER, "vitamin-d-supplement-order")):
        (dosage,) = by_code[code]["dosageInstruction"]
        assert dosage["text"] == kb.value_set(order_set).sig
        assert dosage["timing"]["repeat"] == dict(kb.value_set(order_set).timing_repeat)
    assert by_code[CALCIUM_ORDER]["dosageInstruction"][0]["timing"]["repeat"]["frequency"] == 2  # twice daily


@pytest.mark.parametrize("resources", [
    [medication_order(CALCIUM_D_COMBINATION)],                                # one combination order counts for both
    [statement(CALCIUM_D_COMBINATION)],                                       # patient-reported combination
    [medication_order(CALCIUM_CARBONATE), statement(CHOLECALCIFEROL_1000)],  # one of each
    [statement(None, text="Caltrate 600 + D3 (OTC)", statement_id="ms-otc-1"),
     statement(None, text="vitamin D3 2000 IU", statement_id="ms-otc-2")],                     # uncoded, by name
])
def test_active_supplements_silence_the_card(resources):
    assert run(calcium(9.4), *resources) is None


@pytest.mark.parametrize("status", ["stopped", "completed", "cancelled", "entered-in-error", "draft"])
def test_an_order_that_is_not_active_does_not_count(status):
    finding = run(calcium(9.4), medication_order(CALCIUM_D_COMBINATION, status=status))
    assert suggested_codes(finding) == {CALCIUM_ORDER, VITAMIN_D_ORDER}


@pytest.mark.parametrize("status, counts", [("active", True), ("intended", True), ("not-taken", False), ("stopped", False)])
def test_statement_status(status, counts):
    finding = run(calcium(9.4), medication_order(CALCIUM_CARBONATE), statement(CHOLECALCIFEROL_1000, status=status))
    assert (finding is None) == counts


def test_only_the_missing_half_is_suggested_and_the_found_half_shown():
    finding = run(calcium(9.4), statement(CHOLECALCIFEROL_1000))
    assert suggested_codes(finding) == {CALCIUM_ORDER}
    assert "(MedicationStatement/ms-active-199362, active, since 2025-03-01)" in finding.detail
    assert "No active calcium supplement" in finding.summary


def test_a_patient_taking_calcium_has_no_lab_read_to_judge_withholding_it():
    # Reasons to withhold calcium matter only when calcium would be suggested; the latest calcium
    # and its albumin are then not validated at all (a malformed one is not even reported).
    malformed_calcium = calcium("ten point eight")
    ctx = context([malformed_calcium, albumin(3.1), medication_order(CALCIUM_CARBONATE)])
    finding = rule.evaluate(ctx)
    assert suggested_codes(finding) == {VITAMIN_D_ORDER}
    assert "Calcium is not suggested" not in finding.detail
    assert ctx.record.skipped == ()


def test_supplement_drafted_in_the_same_call_counts():
    combination_draft = medication_order(CALCIUM_D_COMBINATION, status="draft", days=0, order_id="draft-cad")
    assert run(calcium(9.4), drafts=[prolia_draft(), combination_draft]) is None


@pytest.mark.parametrize("high_calcium", [
    lambda: calcium(10.6),                               # above the fixed 10.5 mg/dL (no reference range sent)
    lambda: calcium(10.3, high=10.2, low=8.6),           # above the lab's own reference range high
    lambda: calcium(2.70, unit="mmol/L"),                 # above 2.62 mmol/L
])
def test_high_latest_calcium_withholds_calcium_and_says_why(high_calcium):
    finding = run(high_calcium())
    assert suggested_codes(finding) == {VITAMIN_D_ORDER}
    assert "Calcium is not suggested" in finding.detail and "above the upper limit" in finding.detail


def test_high_calcium_is_judged_after_albumin_correction():
    # 10.4 mg/dL with albumin 3.0 g/dL is 11.2 corrected: high
    finding = run(calcium(10.4), albumin(3.0))
    assert suggested_codes(finding) == {VITAMIN_D_ORDER}


def test_normal_calcium_or_old_high_calcium_does_not_withhold():
    assert suggested_codes(run(calcium(10.4))) == {CALCIUM_ORDER, VITAMIN_D_ORDER}
    assert suggested_codes(run(calcium(11.0, days=45), calcium(9.8, days=3))) == {CALCIUM_ORDER, VITAMIN_D_ORDER}


@pytest.mark.parametrize("code, system", [("E83.52", ICD10CM), ("66931009", SNOMED)])
def test_active_hypercalcemia_withholds_calcium(code, system):
    finding = run(calcium(10.2), condition(code, system, text="Hypercalcemia"))
    assert suggested_codes(finding) == {VITAMIN_D_ORDER}
    assert "active hypercalcemia" in finding.detail


def test_resolved_hypercalcemia_does_not_withhold():
    finding = run(calcium(9.6), condition("E83.52", clinical="resolved", abatement="2025-01-01"))
    assert suggested_codes(finding) == {CALCIUM_ORDER, VITAMIN_D_ORDER}


def test_calcium_withheld_and_vitamin_d_taken_means_no_card():
    assert run(calcium(10.2), condition("E83.52"), statement(CHOLECALCIFEROL_1000)) is None
