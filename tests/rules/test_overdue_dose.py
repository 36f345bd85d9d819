"""overdue-dose (catalog v2): on an order, info only when the draft is an overdue dose; on
patient-view while therapy is active, 60 mg due (info) / overdue (warning) with two ways out,
120 mg overdue (warning); nothing after 24 months; the dose history precedence."""

from __future__ import annotations

import pytest

from cds_service.knowledge import load_knowledge
from cds_service.record.build import RecordInputs, build_record
from cds_service.rules import overdue_dose
from cds_service.rules.context import RuleContext
from cds_service.rules.engine import focus_triggers
from tests.rules.record_builders import (
    AS_OF, ENCOUNTER_ID, NDC, PATIENT_ID, PROLIA, RXNORM, UCUM, days_ago, egfr, prolia_draft,
)

XGEVA = {"system": RXNORM, "code": "1046402", "display": "1.7 ML denosumab 70 MG/ML Injection [Xgeva]"}
DENOSUMAB_INGREDIENT = {"system": RXNORM, "code": "993449", "display": "denosumab"}
STOBOCLO_NDC = {"system": NDC, "code": "72606-0037-01"}
ZOLEDRONIC_ACID_5MG = {"system": RXNORM, "code": "705824"}
_ids = iter(range(1, 10**6))


def medication(kind: str, coding: dict | None, days: float, *, status: str = "completed", dose_mg: float | None = None,
               text: str | None = None) -> dict:
    """A MedicationAdministration / Dispense / Statement / Request dated `days` before the call."""
    concept = {**({"coding": [coding]} if coding else {}), **({"text": text} if text else {})}
    resource = {"resourceType": kind, "id": f"{kind[10:].lower()}-{next(_ids)}", "status": status,
                "medicationCodeableConcept": concept, "subject": {"reference": f"Patient/{PATIENT_ID}"}}
    when = days_ago(days)
    if kind == "MedicationAdministration":
        resource["effectiveDateTime"] = when
        if dose_mg is not None:
            resource["dosage"] = {"dose": {"value": dose_mg, "unit": "mg", "system": UCUM, "code": "mg"}}
    elif kind == "MedicationDispense":
        resource["whenHandedOver"] = when
    elif kind == "MedicationStatement":
        resource["effectiveDateTime"] = when
    else:
        resource.update(intent="order", authoredOn=when)
    return resource


def given(coding: dict, days: float, **kw) -> dict:
    return medication("MedicationAdministration", coding, days, **kw)


def xgeva_draft() -> dict:
    draft = prolia_draft(XGEVA)
    draft["dosageInstruction"] = [{"text": "120 mg subcutaneously every 4 weeks",
                                   "timing": {"repeat": {"frequency": 1, "period": 4, "periodUnit": "wk"}}}]
    return draft


def run(resources, *, hook: str = "order-sign", drafts=None):
    """The rule on a record built by the real builder, for the trigger the hook sets off."""
    kb = load_knowledge()
    drafts = [] if hook == "patient-view" else (drafts if drafts is not None else [prolia_draft()])
    record = build_record(RecordInputs(patient_id=PATIENT_ID, encounter_id=ENCOUNTER_ID,
                                       resource_groups=[("test", list(resources))], draft_orders=drafts), kb)
    triggers = focus_triggers(hook, record)
    trigger = "patient-view" if hook == "patient-view" else "denosumab-order"
    assert trigger in triggers
    return overdue_dose.evaluate(RuleContext(record, AS_OF, kb, trigger, triggers[trigger]))


# --- the regimen's allowance ----------------------------------------------------------------------

@pytest.mark.parametrize("days, fires", [(183, False), (212, False), (213, False), (214, True), (400, True), (731, False)])
def test_60mg_order_is_info_only_when_overdue_after_213_days(days, fires):
    finding = run([given(PROLIA, days, dose_mg=60)])
    assert (finding is not None) == fires
    if fires:
        assert finding.indicator == "info"
        assert f"{days - 213} days late" in finding.summary
        (suggestion,) = finding.suggestions  # the thoracolumbar spine X-ray, CPT-coded
        assert suggestion.actions[0].resource["code"]["coding"][0]["code"] == "72080"
        assert "as soon as possible" not in finding.detail


@pytest.mark.parametrize("days, fires", [(28, False), (35, False), (36, True)])
def test_120mg_overdue_after_4_weeks_plus_7_days(days, fires):
    finding = run([given(XGEVA, days, dose_mg=120)], drafts=[xgeva_draft()])
    assert (finding is not None) == fires
    if fires:
        assert finding.indicator == "info" and "120 mg every 4 weeks" in finding.detail


def test_detail_shows_the_dose_the_record_and_the_date_it_was_due():
    finding = run([given(PROLIA, 232, dose_mg=60)])
    assert "given 2026-04-07 (MedicationAdministration/" in finding.detail
    assert "232 days (about 8 months)" in finding.detail
    assert "overdue after 2026-11-06" in finding.detail  # 2026-04-07 + 213 days
    assert "19 days late" in finding.detail and "back pain" in finding.detail


def test_initiation_without_any_dose_is_not_overdue():
    assert run([]) is None


def test_regimen_comes_from_the_draft_when_the_dose_does_not_tell():
    ingredient_only = given(DENOSUMAB_INGREDIENT, 50)  # no product strength, no dose
    assert run([ingredient_only], drafts=[xgeva_draft()]) is not None  # 120 mg regimen: 50 > 35 days
    assert run([ingredient_only]) is None  # Prolia draft: 60 mg regimen, 50 days is on time


@pytest.mark.parametrize("last, days, draft", [
    (PROLIA, 90, "xgeva"),   # 60 mg -> 120 mg (new bone metastases): not a late 120 mg dose
    (XGEVA, 60, "prolia"),   # 120 mg -> 60 mg: a switch, not lateness
])
def test_a_switch_of_regimen_is_not_lateness(last, days, draft):
    drafts = [xgeva_draft()] if draft == "xgeva" else [prolia_draft()]
    assert run([given(last, days)], drafts=drafts) is None


def test_biosimilar_by_ndc_only_and_uncoded_text_only_history():
    assert run([given(STOBOCLO_NDC, 226)]) is not None
    finding = run([given(None, 215, text="Prolia 60 mg SC injection (outside clinic)")])
    assert finding is not None and "outside clinic" in finding.detail


# --- dose history precedence (catalog: administrations, dispenses, statements, else completed orders)

@pytest.mark.parametrize("kind", ["MedicationAdministration", "MedicationDispense", "MedicationStatement", "MedicationRequest"])
def test_last_dose_found_in_any_one_kind_of_record(kind):
    finding = run([medication(kind, PROLIA, 240)])
    assert finding is not None and kind in finding.detail


def test_administration_wins_over_a_newer_completed_order():
    finding = run([given(PROLIA, 268), medication("MedicationRequest", PROLIA, 163)])
    assert finding is not None and "268 days" in finding.detail


def test_a_newer_dispense_is_the_last_dose():
    assert run([given(PROLIA, 268), medication("MedicationDispense", PROLIA, 150)]) is None


@pytest.mark.parametrize("status", ["not-done", "entered-in-error", "in-progress"])
def test_administrations_that_did_not_complete_are_not_doses(status):
    assert run([given(PROLIA, 100, status=status), given(PROLIA, 300)]) is not None


# --- patient-view: only while therapy is active ---------------------------------------------------

def active_prolia_order(days: float = 400) -> dict:
    return medication("MedicationRequest", PROLIA, days, status="active")


def test_patient_view_with_an_active_order():
    finding = run([active_prolia_order(), given(PROLIA, 250)], hook="patient-view")
    assert finding is not None and finding.indicator == "warning"


@pytest.mark.parametrize("days, indicator", [
    (182, None), (183, "info"), (213, "info"), (214, "warning"), (730, "warning"), (731, None),
])
def test_patient_view_60mg_due_then_overdue_while_therapy_is_active(days, indicator):
    # A completed single-dose order: no active order is needed for therapy to be active.
    finding = run([given(PROLIA, days), medication("MedicationRequest", PROLIA, days + 5)], hook="patient-view")
    assert (finding.indicator if finding else None) == indicator
    if finding:
        next_dose, bisphosphonate, outside = finding.suggestions
        assert outside.actions[0].resource["resourceType"] == "MedicationStatement"
        assert finding.selection_behavior == "at-most-one"
        assert next_dose.actions[0].resource["medicationCodeableConcept"]["coding"][0]["code"] == "993456"
        assert bisphosphonate.actions  # the renal rule's way out (no eGFR here: renal test first)
        if indicator == "info":
            assert "Due now: give the next dose, or if stopping, start the bisphosphonate now" in finding.detail


@pytest.mark.parametrize("value, code", [(70, "705824"), (32, "905024"), (25, "306286007")])
def test_patient_view_bisphosphonate_suggestion_follows_the_renal_rule(value, code):
    finding = run([given(PROLIA, 250), egfr(value)], hook="patient-view")
    _, bisphosphonate, _ = finding.suggestions
    resource = bisphosphonate.actions[-1].resource
    concept = resource.get("medicationCodeableConcept") or resource["code"]
    assert concept["coding"][0]["code"] == code


def test_patient_view_therapy_stopped_on_purpose():
    stopped = medication("MedicationRequest", PROLIA, 240, status="stopped")
    assert run([stopped, given(PROLIA, 235)], hook="patient-view") is None


def test_patient_view_bisphosphonate_since_the_last_dose_means_therapy_ended():
    zoledronic_acid = medication("MedicationAdministration", ZOLEDRONIC_ACID_5MG, 40)
    assert run([given(PROLIA, 250), zoledronic_acid], hook="patient-view") is None


@pytest.mark.parametrize("days, fires", [(35, False), (36, True), (700, True), (731, False)])
def test_patient_view_120mg_overdue_after_35_days(days, fires):
    finding = run([given(XGEVA, days)], hook="patient-view")
    assert (finding is not None) == fires
    if fires:
        assert finding.indicator == "warning" and len(finding.suggestions) == 2  # next dose; record a dose given elsewhere


def test_patient_view_active_medication_statement_counts_as_therapy():
    statement = medication("MedicationStatement", PROLIA, 500, status="active")
    assert run([statement], hook="patient-view") is not None  # the statement is also the last dose (500 days)
