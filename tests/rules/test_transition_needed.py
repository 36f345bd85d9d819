"""transition-needed (catalog v2): 60 mg denosumab explicitly stopped without a bisphosphonate
since the last dose (warning, by the renal rule), or last dose over 24 months and at most 5 years
old with nothing since (info: reassess fracture risk, DXA)."""

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

def stopped(days: float = 400) -> dict:
    return prolia_order("stopped", days)


@pytest.mark.parametrize("days, indicator", [
    (150, None), (182, None), (189, None), (700, None), (730, None),  # completed single-dose order: not a stop
    (731, "info"), (1826, "info"), (1827, None), (2557, None),         # over 24 months, at most 5 years
])
def test_no_explicit_stop_is_quiet_for_24_months_then_info_up_to_5_years(days, indicator):
    finding = run([prolia_order("completed", days + 3), given(PROLIA, days), egfr(70)])
    assert (finding.indicator if finding else None) == indicator
    if finding:
        assert "reassess fracture risk" in finding.summary
        assert set(ordered(finding)) == {"77080"}  # a DXA, not an urgent bisphosphonate


def test_the_info_goes_quiet_once_a_dxa_or_osteoporosis_therapy_is_recorded_after_the_last_dose():
    dxa = {"resourceType": "Procedure", "id": "proc-dxa", "status": "completed",
           "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "77080"}]},
           "subject": {"reference": f"Patient/{PATIENT_ID}"}, "performedDateTime": days_ago(100)}
    assert run([given(PROLIA, 1000), egfr(70), dxa]) is None
    teriparatide = medication_order(FORTEO, status="completed", days=500)
    assert run([given(PROLIA, 1000), egfr(70), teriparatide]) is None
    assert run([given(PROLIA, 1000), egfr(70)]) is not None


def test_stopped_order_fires_before_6_months_and_plans_the_date():
    finding = run([prolia_order("stopped", 200), given(PROLIA, 60), egfr(70)])
    assert finding is not None and finding.indicator == "warning"
    assert "stopped without a bisphosphonate" in finding.summary
    zoledronic_acid = ordered(finding)["705824"]
    assert zoledronic_acid["dosageInstruction"][0]["timing"] == {"repeat": {"count": 1, "boundsPeriod": {"start": "2027-03-27"}}}
    assert "on or about **2027-03-27**" in finding.detail  # last dose 2026-09-26 + 182 days


def test_a_stopped_statement_after_the_last_dose_is_an_explicit_stop():
    statement = {"resourceType": "MedicationStatement", "id": "ms-stop", "status": "stopped",
                 "medicationCodeableConcept": {"coding": [PROLIA]}, "subject": {"reference": f"Patient/{PATIENT_ID}"},
                 "effectiveDateTime": days_ago(30)}
    assert run([given(PROLIA, 200), statement, egfr(70)]) is not None
    statement["effectiveDateTime"] = days_ago(300)  # said before the last dose: therapy went on
    assert run([given(PROLIA, 200), statement, egfr(70)]) is None


def test_an_active_order_or_statement_means_therapy_goes_on():
    assert run([prolia_order("active"), given(PROLIA, 200), egfr(70)]) is None
    statement = {"resourceType": "MedicationStatement", "id": "ms-1", "status": "active",
                 "medicationCodeableConcept": {"coding": [PROLIA]}, "subject": {"reference": f"Patient/{PATIENT_ID}"},
                 "effectiveDateTime": days_ago(200)}
    assert run([statement, egfr(70)]) is None


def test_only_the_60mg_regimen():
    assert run([medication_order(XGEVA, status="stopped", days=300), given(XGEVA, 250), egfr(70)]) is None


def test_biosimilar_and_text_only_doses_are_60mg():
    assert run([stopped(), given(BILDYOS, 200), egfr(70)]) is not None
    assert run([stopped(), given(None, 200, text="Prolia 60mg injection given at outside clinic"), egfr(70)]) is not None


@pytest.mark.parametrize("resource, silences", [
    (given(ZOLEDRONIC_ACID_5MG, 20), True),                                      # infused since the last dose
    (medication_order(ALENDRONATE, status="active", days=30), True),             # ordered since
    (medication_order(None, text="alendronate 70 mg weekly", status="active", days=30), True),  # uncoded, by name
    (medication_order({"system": RXNORM, "code": "904431", "display": "alendronic acid 70 MG Oral Tablet"},
                      status="active", days=30), True),                          # sandbox: RxNorm code in no value set
    (given(ZOLEDRONIC_ACID_5MG, 600), False),                                    # before the last dose
    (medication_order(ALENDRONATE, status="active", days=900), False),           # an old order left active
    (medication_order(ALENDRONATE, status="cancelled", days=30), False),         # never started
    (medication_order(ALENDRONATE, status="entered-in-error", days=30), False),
])
def test_bisphosphonate_given_or_ordered_since_the_last_dose(resource, silences):
    finding = run([stopped(), given(PROLIA, 250), egfr(70), resource])
    assert (finding is None) == silences


@pytest.mark.parametrize("status, silences", [("active", True), ("intended", False)])
def test_an_undated_bisphosphonate_statement_counts_only_when_taken(status, silences):
    """A statement without a date counts while active; one the patient only intends to take does not."""
    statement = {"resourceType": "MedicationStatement", "id": f"ms-aln-{status}", "status": status,
                 "medicationCodeableConcept": {"text": "alendronate 70 mg weekly"},
                 "subject": {"reference": f"Patient/{PATIENT_ID}"}}
    assert (run([stopped(), given(PROLIA, 250), egfr(70), statement]) is None) == silences


# --- what it suggests, by the renal rule --------------------------------------------------------

def test_egfr_at_least_35_suggests_zoledronic_acid_now_when_due_has_passed():
    finding = run([stopped(), given(PROLIA, 225), egfr(35)])
    resource = ordered(finding)["705824"]
    assert resource["resourceType"] == "MedicationRequest" and resource["status"] == "draft"
    assert resource["subject"] == {"reference": f"Patient/{PATIENT_ID}"}
    assert resource["encounter"] == {"reference": f"Encounter/{ENCOUNTER_ID}"}
    assert "5 mg IV infusion" in resource["dosageInstruction"][0]["text"]
    assert resource["dosageInstruction"][0]["timing"] == {"repeat": {"count": 1}}
    assert "was due 2026-10-13: **as soon as possible**" in finding.detail
    assert len(finding.suggestions) == 1


@pytest.mark.parametrize("value", [30, 34])
def test_egfr_30_to_34_suggests_risedronate_weekly(value):
    finding = run([stopped(), given(PROLIA, 225), egfr(value, days=20)])
    assert set(ordered(finding)) == {"905024"}  # risedronate 35 mg weekly
    assert f"eGFR {value} mL/min/1.73m2" in finding.detail and "below 35" in finding.detail


@pytest.mark.parametrize("value", [25, 29])
def test_egfr_below_30_suggests_no_bisphosphonate_but_a_specialist_referral(value):
    finding = run([stopped(), given(PROLIA, 225), egfr(value)])
    assert set(ordered(finding)) == {"306286007"}  # referral to nephrologist
    assert "no bisphosphonate is recommended" in finding.detail and "boxed-warning group" in finding.detail
    assert "905024" not in str(finding.suggestions)


@pytest.mark.parametrize("resources", [
    [],                                                               # no eGFR at all
    [egfr(80, days=400)],                                             # older than 12 months
    [observation("98979-8", 60, "mL/min/{1.73_m2}", days_ago(10), comparator="<")],  # "<60" does not settle it
])
def test_no_usable_egfr_asks_for_creatinine_and_zoledronic_acid_once_confirmed(resources):
    finding = run([stopped(), given(PROLIA, 225), *resources])
    assert set(ordered(finding)) == {"2160-0", "705824"}
    (suggestion,) = finding.suggestions
    assert "once eGFR 35 or above is confirmed" in ordered(finding)["705824"]["dosageInstruction"][0]["text"]


def test_egfr_reported_as_above_60_allows_zoledronic_acid():
    finding = run([stopped(), given(PROLIA, 225), observation("98979-8", 60, "mL/min/{1.73_m2}", days_ago(10), comparator=">")])
    assert set(ordered(finding)) == {"705824"}


# --- follow-on orders ---------------------------------------------------------------------------

def test_a_bisphosphonate_order_is_the_transition_itself():
    zol = draft(ZOLEDRONIC_ACID_5MG, "draft-zol", "zoledronic acid 5 mg IV")
    assert run([stopped(), given(PROLIA, 225), egfr(70)], hook="order-sign", drafts=[zol]) is None


def test_teriparatide_instead_of_a_bisphosphonate_still_needs_the_transition():
    forteo = draft(FORTEO, "draft-forteo", "Forteo 20 mcg daily")
    finding = run([stopped(), given(PROLIA, 225), egfr(70)], hook="order-sign", drafts=[forteo])
    assert finding is not None and "Forteo 20 mcg daily" in finding.detail
    assert "does not replace the transition" in finding.detail


def test_a_bisphosphonate_drafted_alongside_counts_as_ordered():
    forteo = draft(FORTEO, "draft-forteo", "Forteo 20 mcg daily")
    zol = draft(ZOLEDRONIC_ACID_5MG, "draft-zol", "zoledronic acid 5 mg IV")
    finding = run([stopped(), given(PROLIA, 225), egfr(70)], hook="order-select", drafts=[forteo, zol],
                  selections=("MedicationRequest/draft-forteo",))
    assert finding is None
