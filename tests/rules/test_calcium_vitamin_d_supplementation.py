"""calcium-vitamin-d-supplementation: no active calcium or vitamin D supplement; no card at all in the
hypercalcemia state or for hypercalcemia of malignancy; an offer to record over-the-counter supplements."""

from __future__ import annotations

import pytest

from cds_service.rules import calcium_vitamin_d_supplementation as rule
from tests.rules.record_builders import (
    ENCOUNTER_ID, ICD10CM, PATIENT_ID, RXNORM, SNOMED, actions, albumin, calcium, condition, context, days_ago, evaluate,
    medication_order, observation, prolia_draft,
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


def suggested_codes(finding, kind: str = "MedicationRequest") -> set[str]:
    return {resource["medicationCodeableConcept"]["coding"][0]["code"] for action, resource in actions(finding)
            if action == "create" and resource["resourceType"] == kind}


def run(*resources, drafts=None):
    return evaluate(rule, list(resources), **({"drafts": drafts} if drafts is not None else {}))


def test_no_supplements_suggests_both_orders_any_of_which_may_be_taken():
    finding = run(calcium(9.4))
    assert finding.indicator == "warning"
    assert suggested_codes(finding) == {CALCIUM_ORDER, VITAMIN_D_ORDER}
    assert finding.selection_behavior == "any" and len(finding.suggestions) == 3
    for kind, resource in actions(finding):
        if resource["resourceType"] == "MedicationStatement":
            continue
        assert resource["resourceType"] == "MedicationRequest" and resource["status"] == "draft"
        assert resource["subject"] == {"reference": f"Patient/{PATIENT_ID}"}
        assert resource["encounter"] == {"reference": f"Encounter/{ENCOUNTER_ID}"}
        assert resource["medicationCodeableConcept"]["coding"][0]["system"] == RXNORM
    assert "no active calcium supplement" in finding.detail and "no active vitamin D supplement" in finding.detail


def test_suggested_orders_carry_the_instructions_and_timing_the_seeds_give():
    from cds_service.knowledge import load_knowledge

    kb = load_knowledge()
    finding = run(calcium(9.4))
    by_code = {resource["medicationCodeableConcept"]["coding"][0]["code"]: resource for _, resource in actions(finding)
               if resource["resourceType"] == "MedicationRequest"}
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


def test_a_patient_taking_both_has_no_lab_read_at_all():
    # The hypercalcemia state matters only when something would be suggested; the calcium is then
    # not validated at all (a malformed one is not even reported).
    ctx = context([calcium("ten point eight"), albumin(3.1), medication_order(CALCIUM_D_COMBINATION)])
    assert rule.evaluate(ctx) is None
    assert ctx.record.skipped == ()


def test_over_the_counter_supplements_can_be_recorded_as_patient_reported_statements():
    finding = run(calcium(9.4), statement(CHOLECALCIFEROL_1000))
    (record,) = [s for s in finding.suggestions if "over the counter" in s.label]
    (action,) = record.actions
    assert action.type == "create" and action.resource["resourceType"] == "MedicationStatement"
    assert action.resource["status"] == "active"
    assert action.resource["informationSource"] == {"reference": f"Patient/{PATIENT_ID}"}
    assert action.resource["subject"] == {"reference": f"Patient/{PATIENT_ID}"}
    assert suggested_codes(finding, "MedicationStatement") == {CALCIUM_ORDER}


def test_the_card_rests_on_the_absence_of_each_missing_supplement():
    finding = run(calcium(9.4), statement(CHOLECALCIFEROL_1000))
    assert [(a.category, a.since) for a in finding.rests_on_absence] == [("medications", None)]
    assert "calcium" in finding.rests_on_absence[0].check


def test_labels_are_short():
    finding = run(calcium(9.4))
    assert all(len(s.label) < 80 for s in finding.suggestions)


def test_supplement_drafted_in_the_same_call_counts():
    combination_draft = medication_order(CALCIUM_D_COMBINATION, status="draft", days=0, order_id="draft-cad")
    assert run(calcium(9.4), drafts=[prolia_draft(), combination_draft]) is None


@pytest.mark.parametrize("high_calcium", [
    lambda: calcium(10.6),                               # above the fixed 10.5 mg/dL (no reference range sent)
    lambda: calcium(10.3, high=10.2, low=8.6),           # above the lab's own reference range high
    lambda: calcium(2.70, unit="mmol/L"),                 # above 2.62 mmol/L
    lambda: observation("1994-3", 1.40, "mmol/L", days_ago(3)),  # ionized above 1.32 mmol/L
])
def test_no_card_at_all_in_the_hypercalcemia_state(high_calcium):
    # version 1 still offered vitamin D to a hypercalcaemic patient
    assert run(high_calcium()) is None


@pytest.mark.parametrize("value, expected", [(10.5, True), (10.6, False), (2.62, True), (2.63, False)])
def test_upper_limit_boundary_in_both_units(value, expected):
    unit = "mg/dL" if value > 5 else "mmol/L"
    assert (run(calcium(value, unit=unit)) is not None) is expected


def test_high_calcium_is_judged_after_albumin_correction():
    # 10.4 mg/dL with albumin 3.0 g/dL is 11.2 corrected: high
    assert run(calcium(10.4), albumin(3.0)) is None
    assert run(calcium(10.4), albumin(4.4)) is not None  # never corrected downwards


def test_a_normal_ionized_within_7_days_of_a_high_total_decides():
    assert run(calcium(10.8, days=5), observation("1994-3", 1.25, "mmol/L", days_ago(3))) is not None


def test_normal_calcium_or_old_high_calcium_does_not_withhold():
    assert suggested_codes(run(calcium(10.4))) == {CALCIUM_ORDER, VITAMIN_D_ORDER}
    assert suggested_codes(run(calcium(11.0, days=45), calcium(9.8, days=3))) == {CALCIUM_ORDER, VITAMIN_D_ORDER}


@pytest.mark.parametrize("code, system", [("E83.52", ICD10CM), ("66931009", SNOMED)])
def test_active_hypercalcemia_with_no_normal_calcium_since_its_onset_means_no_card(code, system):
    assert run(calcium(9.1, days=400), condition(code, system, text="Hypercalcemia", onset="2026-10-01")) is None
    # a normal calcium since the onset ends the state
    assert run(calcium(9.1, days=20), condition(code, system, text="Hypercalcemia", onset="2026-10-01")) is not None


def test_resolved_hypercalcemia_does_not_withhold():
    finding = run(calcium(9.6), condition("E83.52", clinical="resolved", abatement="2025-01-01"))
    assert suggested_codes(finding) == {CALCIUM_ORDER, VITAMIN_D_ORDER}


def test_no_card_for_hypercalcemia_of_malignancy():
    xgeva = prolia_draft({"system": RXNORM, "code": "1046402"})
    xgeva["reasonCode"] = [{"coding": [{"system": ICD10CM, "code": "E83.52"}], "text": "Hypercalcemia of malignancy"}]
    cancer = condition("C50.911", text="Breast cancer")
    hcm = condition("E83.52", onset="2026-11-20", text="Hypercalcemia of malignancy")
    assert run(calcium(8.9, days=1), cancer, hcm, drafts=[xgeva]) is None


CALCITRIOL = {"system": RXNORM, "code": "308867"}  # calcitriol 0.25 MCG oral capsule


def test_calcitriol_counts_as_vitamin_d_only_in_dialysis():
    on_calcitriol = (calcium(9.4), statement(CALCIUM_CARBONATE), statement(CALCITRIOL))
    outside_dialysis = run(*on_calcitriol)
    assert outside_dialysis is not None and suggested_codes(outside_dialysis) == {VITAMIN_D_ORDER}
    assert run(*on_calcitriol, condition("Z99.2")) is None  # dialysis: calcitriol is the vitamin D
