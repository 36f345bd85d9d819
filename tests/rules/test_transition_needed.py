"""transition-needed: 60 mg denosumab stopped or lapsed without a bisphosphonate since the last
dose; zoledronic acid, an oral bisphosphonate or a renal check first, by eGFR."""

from __future__ import annotations

import pytest

from cds_service.knowledge import load_knowledge
from cds_service.record.build import RecordInputs, build_record
from cds_service.rules import transition_needed
from cds_service.rules.context import RuleContext
from cds_service.rules.engine import focus_triggers
from tests.rules.record_builders import (
    AS_OF, ENCOUNTER_ID, PATIENT_ID, PROLIA, RXNORM, actions, egfr, medication_order, observation, days_ago,
)

XGEVA = {"system": RXNORM, "code": "1046402"}
BILDYOS = {"system": RXNORM, "code": "2723357"}
ZOLEDRONIC_ACID_5MG = {"system": RXNORM, "code": "705824"}
ALENDRONATE = {"system": RXNORM, "code": "46041"}
FORTEO = {"system": RXNORM, "code": "1435117"}
_ids = iter(range(1, 10**6))


def given(coding: dict | None, days: float, *, text: str | None = None) -> dict:
    concept = {**({"coding": [coding]} if coding else {}), **({"text": text} if text else {})}
    return {"resourceType": "MedicationAdministration", "id": f"madm-{next(_ids)}", "status": "completed",
            "medicationCodeableConcept": concept, "subject": {"reference": f"Patient/{PATIENT_ID}"},
            "effectiveDateTime": days_ago(days)}


def prolia_order(status: str, days: float = 400) -> dict:
    return medication_order(PROLIA, status=status, days=days)


def draft(coding: dict, order_id: str, text: str) -> dict:
    order = medication_order(coding, text=text, status="draft", days=0, order_id=order_id)
    order["encounter"] = {"reference": f"Encounter/{ENCOUNTER_ID}"}
    return order


def run(resources, *, hook: str = "patient-view", drafts=(), selections=None):
    kb = load_knowledge()
    record = build_record(RecordInputs(patient_id=PATIENT_ID, encounter_id=ENCOUNTER_ID, resource_groups=[("test", list(resources))],
                                       draft_orders=list(drafts), selections=selections), kb)
    triggers = focus_triggers(hook, record)
    trigger = "patient-view" if hook == "patient-view" else "follow-on-order"
    if trigger not in triggers:
        return None
    return transition_needed.evaluate(RuleContext(record, AS_OF, kb, trigger, triggers[trigger]))


def ordered(finding) -> dict[str, dict]:
    """Created resources by their first code."""
    out = {}
    for kind, resource in actions(finding):
        concept = resource.get("medicationCodeableConcept") or resource.get("code")
        out[concept["coding"][0]["code"]] = resource
    return out


# --- when it fires -------------------------------------------------------------------------------

@pytest.mark.parametrize("days, fires", [(150, False), (181, False), (182, True), (700, True)])
def test_lapsed_6_months_without_active_order(days, fires):
    assert (run([prolia_order("completed", days + 3), given(PROLIA, days), egfr(70)]) is not None) == fires


def test_stopped_order_fires_before_6_months_and_plans_the_date():
    finding = run([prolia_order("stopped", 200), given(PROLIA, 60), egfr(70)])
    assert finding is not None and "stopped without a bisphosphonate" in finding.summary
    zoledronic_acid = ordered(finding)["705824"]
    assert zoledronic_acid["dosageInstruction"][0]["timing"] == {"repeat": {"count": 1, "boundsPeriod": {"start": "2027-03-27"}}}
    assert "on or about **2027-03-27**" in finding.detail  # last dose 2026-09-26 + 182 days


def test_an_active_order_or_statement_means_therapy_goes_on():
    assert run([prolia_order("active"), given(PROLIA, 200), egfr(70)]) is None
    statement = {"resourceType": "MedicationStatement", "id": "ms-1", "status": "active",
                 "medicationCodeableConcept": {"coding": [PROLIA]}, "subject": {"reference": f"Patient/{PATIENT_ID}"},
                 "effectiveDateTime": days_ago(200)}
    assert run([statement, egfr(70)]) is None


def test_only_the_60mg_regimen():
    assert run([medication_order(XGEVA, status="stopped", days=300), given(XGEVA, 250), egfr(70)]) is None


def test_biosimilar_and_text_only_doses_are_60mg():
    assert run([given(BILDYOS, 200), egfr(70)]) is not None
    assert run([given(None, 200, text="Prolia 60mg injection given at outside clinic"), egfr(70)]) is not None


@pytest.mark.parametrize("resource, silences", [
    (given(ZOLEDRONIC_ACID_5MG, 20), True),                                      # infused since the last dose
    (medication_order(ALENDRONATE, status="active", days=30), True),             # ordered since
    (medication_order(None, text="alendronate 70 mg weekly", status="active", days=30), True),  # uncoded, by name
    (given(ZOLEDRONIC_ACID_5MG, 600), False),                                    # before the last dose
    (medication_order(ALENDRONATE, status="cancelled", days=30), False),         # never started
    (medication_order(ALENDRONATE, status="entered-in-error", days=30), False),
])
def test_bisphosphonate_given_or_ordered_since_the_last_dose(resource, silences):
    finding = run([given(PROLIA, 250), egfr(70), resource])
    assert (finding is None) == silences


@pytest.mark.parametrize("status, silences", [("active", True), ("intended", False)])
def test_an_undated_bisphosphonate_statement_counts_only_when_taken(status, silences):
    """A statement without a date counts while active; one the patient only intends to take does not."""
    statement = {"resourceType": "MedicationStatement", "id": f"ms-aln-{status}", "status": status,
                 "medicationCodeableConcept": {"text": "alendronate 70 mg weekly"},
                 "subject": {"reference": f"Patient/{PATIENT_ID}"}}
    assert (run([given(PROLIA, 250), egfr(70), statement]) is None) == silences


# --- what it suggests, by renal function --------------------------------------------------------

def test_egfr_at_least_35_suggests_zoledronic_acid_now_when_due_has_passed():
    finding = run([given(PROLIA, 225), egfr(35)])
    resource = ordered(finding)["705824"]
    assert resource["resourceType"] == "MedicationRequest" and resource["status"] == "draft"
    assert resource["subject"] == {"reference": f"Patient/{PATIENT_ID}"}
    assert resource["encounter"] == {"reference": f"Encounter/{ENCOUNTER_ID}"}
    assert "5 mg IV infusion" in resource["dosageInstruction"][0]["text"]
    assert resource["dosageInstruction"][0]["timing"] == {"repeat": {"count": 1}}
    assert "as soon as possible (it was due **2026-10-13**)" in finding.detail
    assert finding.suggestions[0].is_recommended and len(finding.suggestions) == 1


def test_egfr_below_35_suggests_an_oral_bisphosphonate_and_says_why():
    finding = run([given(PROLIA, 225), egfr(34, days=20)])
    assert set(ordered(finding)) == {"905024"}  # risedronate 35 mg weekly
    assert "Latest eGFR 34 mL/min/1.73m2" in finding.detail and "on 2026-11-05: below 35" in finding.detail
    assert "contraindicated" in finding.detail and "oral bisphosphonate" in finding.summary
    assert "zoledronic acid 5 mg IV once" not in finding.detail


@pytest.mark.parametrize("resources", [
    [],                                                               # no eGFR at all
    [egfr(80, days=400)],                                             # older than 12 months
    [observation("98979-8", 60, "mL/min/{1.73_m2}", days_ago(10), comparator="<")],  # "<60" does not settle it
])
def test_no_usable_egfr_asks_for_creatinine_and_still_suggests_zoledronic_acid(resources):
    finding = run([given(PROLIA, 225), *resources])
    assert set(ordered(finding)) == {"2160-0", "705824"}
    assert finding.selection_behavior == "any"
    renal_check, zoledronic_acid = finding.suggestions
    assert renal_check.is_recommended and not zoledronic_acid.is_recommended
    assert "renal function" in finding.detail
    assert "give only if eGFR is at least 35" in ordered(finding)["705824"]["dosageInstruction"][0]["text"]


def test_egfr_reported_as_above_60_allows_zoledronic_acid():
    finding = run([given(PROLIA, 225), observation("98979-8", 60, "mL/min/{1.73_m2}", days_ago(10), comparator=">")])
    assert set(ordered(finding)) == {"705824"}


# --- follow-on orders ---------------------------------------------------------------------------

def test_a_bisphosphonate_order_is_the_transition_itself():
    zol = draft(ZOLEDRONIC_ACID_5MG, "draft-zol", "zoledronic acid 5 mg IV")
    assert run([given(PROLIA, 225), egfr(70)], hook="order-sign", drafts=[zol]) is None


def test_teriparatide_instead_of_a_bisphosphonate_still_needs_the_transition():
    forteo = draft(FORTEO, "draft-forteo", "Forteo 20 mcg daily")
    finding = run([given(PROLIA, 225), egfr(70)], hook="order-sign", drafts=[forteo])
    assert finding is not None and "Forteo 20 mcg daily" in finding.detail and "not a bisphosphonate" in finding.detail


def test_a_bisphosphonate_drafted_alongside_counts_as_ordered():
    forteo = draft(FORTEO, "draft-forteo", "Forteo 20 mcg daily")
    zol = draft(ZOLEDRONIC_ACID_5MG, "draft-zol", "zoledronic acid 5 mg IV")
    finding = run([given(PROLIA, 225), egfr(70)], hook="order-select", drafts=[forteo, zol],
                  selections=("MedicationRequest/draft-forteo",))
    assert finding is None
