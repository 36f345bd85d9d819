"""The transition from denosumab 60 mg to a bisphosphonate (ECTS 2021): bisphosphonates and
other osteoporosis therapy since a date, kidney function for the bisphosphonate limits, the renal
rule for the suggested bisphosphonate, the due date, and the orders the cards suggest.

Renal rule (topic transition-needed): kidney function >= egfr_zoledronic_acid_min (35) ->
zoledronic acid 5 mg IV once; 30-34 (>= egfr_oral_bisphosphonate_min) -> risedronate 35 mg once
weekly; < 30 -> no bisphosphonate: a nephrology / CKD-MBD specialist referral; no result in
12 months -> a renal function test, and zoledronic acid once >= 35 is confirmed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cds_service.cards import Absence, Action, Suggestion, orders
from cds_service.record.model import MedicationEntry
from cds_service.rules.common import completed_procedures, fmt_date, fmt_number
from cds_service.rules.concepts.kidney import KidneyFunction, egfr_function
from cds_service.rules.concepts.labs import countable_results
from cds_service.rules.concepts.order_suggestions import lab_order_actions, medication_order_action, order_codings
from cds_service.rules.concepts.medications import (
    BISPHOSPHONATE, OSTEOPOROSIS_THERAPY, WITHDRAWN_MEDICATION_STATUSES, active_medications,
)
from cds_service.rules.context import RuleContext

ZOLEDRONIC_ACID, ORAL_BISPHOSPHONATE, SPECIALIST_REFERRAL, RENAL_TEST_FIRST = (
    "zoledronic-acid", "oral-bisphosphonate", "specialist-referral", "renal-test-first",
)


def therapy_since(ctx: RuleContext, concepts: frozenset[str], since: datetime) -> tuple[MedicationEntry, ...]:
    """Records of `concepts` given or ordered after `since`: administrations, dispenses,
    statements and orders dated after it (not withdrawn), undated active orders and statements
    (therapy now), and the other draft orders of this call. An active order written BEFORE
    `since` does not count: EHRs leave old orders active (an alendronate order from before
    denosumab must not pass for the transition). The focused draft orders are not counted."""
    dated = [
        m for m in ctx.record.medications_of(concepts, since=since)
        if m.status not in WITHDRAWN_MEDICATION_STATUSES and m.date is not None and since < m.date <= ctx.as_of
    ]
    # Undated: only active ones, and not a statement the patient only intends to follow.
    undated_active = [
        m for m in active_medications(ctx.record, concepts)
        if m.date is None and m.status not in WITHDRAWN_MEDICATION_STATUSES
    ]
    drafts = [d for d in ctx.record.draft_orders if d.concepts & concepts and d not in ctx.orders]
    return tuple(dated + undated_active + drafts)


def bisphosphonates_since(ctx: RuleContext, since: datetime) -> tuple[MedicationEntry, ...]:
    return therapy_since(ctx, BISPHOSPHONATE, since)


def osteoporosis_therapy_since(ctx: RuleContext, since: datetime) -> tuple[MedicationEntry, ...]:
    return therapy_since(ctx, OSTEOPOROSIS_THERAPY, since)


def dxa_since(ctx: RuleContext, since: datetime):
    """The newest completed DXA (bone density) study after `since`, else None."""
    return next((p for p in completed_procedures(ctx, "dxa-scan", since) if p.performed > since), None)


# --- kidney function for the bisphosphonate limits ---------------------------------------------
# The renal rule of the transition suggestion reads the latest eGFR (catalog, transition-needed);
# the labels' limits on a bisphosphonate order read kidney function use 1 (concepts/kidney.py).

def kidney_result_since(ctx: RuleContext, lookback_threshold: str) -> bool:
    """Any kidney function result within the named window (transition-timing): a serum creatinine
    or an eGFR (catalog)."""
    # "In 30 days" counts the 30th day back whole: a result of that calendar day is in the window.
    since = ctx.days_before(lookback_threshold).replace(hour=0, minute=0, second=0, microsecond=0)
    return any(True for analyte in ("egfr", "creatinine") for _ in countable_results(ctx, analyte, since))


def renal_plan(ctx: RuleContext, kidney: KidneyFunction | None) -> str:
    """Which transition the renal rule allows (module docstring)."""
    if kidney is None:
        return RENAL_TEST_FIRST
    below_zoledronic = kidney.is_below(ctx.threshold("egfr_zoledronic_acid_min"))
    if below_zoledronic is False:
        return ZOLEDRONIC_ACID
    below_oral = kidney.is_below(ctx.threshold("egfr_oral_bisphosphonate_min"))
    if below_oral:
        return SPECIALIST_REFERRAL
    if below_zoledronic and below_oral is False:
        return ORAL_BISPHOSPHONATE
    return RENAL_TEST_FIRST  # a bound that settles nothing: confirm first


def transition_due_date(ctx: RuleContext, last_dose_date: datetime) -> datetime:
    """When the follow-on bisphosphonate is due: about 6 months after the last 60 mg injection."""
    return last_dose_date + timedelta(days=ctx.threshold("transition_due_days"))


# --- the orders the transition cards suggest ----------------------------------------------------

def zoledronic_acid_order_action(ctx: RuleContext, *, reason: str, dosage_text: str, start: datetime | None) -> Action:
    repeat: dict = {"count": 1}
    if start is not None:
        repeat["boundsPeriod"] = {"start": start.date().isoformat()}
    return medication_order_action(
        ctx, "transition-zoledronic-acid-order", dosage_text=dosage_text, reason=reason, timing={"repeat": repeat}
    )


def oral_bisphosphonate_order_action(ctx: RuleContext, *, reason: str) -> Action:
    """The oral transition bisphosphonate (kidney function 30-34), weekly."""
    return medication_order_action(ctx, "transition-oral-bisphosphonate-order", reason=reason)


def specialist_referral_action(ctx: RuleContext, *, reason: str) -> Action:
    referral = order_codings(ctx, "nephrology-referral-order")[0]
    return Action(
        type="create",
        description=f"Order {referral.display}",
        resource=orders.service_request(
            codings=(referral,), text=referral.display, reason=reason,
            category=order_codings(ctx, "referral-service-category")[0],
            patient_id=ctx.patient_id, encounter_id=ctx.encounter_id,
        ),
    )


def imaging_order_action(ctx: RuleContext, order_set: str, *, reason: str) -> Action:
    """An imaging ServiceRequest (CPT-coded) of `order_set` (DXA, spine X-ray)."""
    study = order_codings(ctx, order_set)[0]
    return Action(
        type="create",
        description=f"Order {study.display}",
        resource=orders.service_request(
            codings=(study,), text=study.display, reason=reason,
            category=order_codings(ctx, "imaging-service-category")[0],
            patient_id=ctx.patient_id, encounter_id=ctx.encounter_id,
        ),
    )


def fmt_limit(ctx: RuleContext, name: str) -> str:
    return fmt_number(ctx.threshold(name))


def renal_rule_suggestion(ctx: RuleContext, last_dose_date: datetime, *, start: datetime | None) -> tuple[Suggestion, str]:
    """The transition the renal rule allows, as one suggestion (its orders), and the words for the
    card's detail. `start`: the date to give it (None: as soon as possible)."""
    kidney = egfr_function(ctx)
    plan = renal_plan(ctx, kidney)
    reason = f"Transition after denosumab 60 mg (last dose {fmt_date(last_dose_date)}): prevent rebound vertebral fractures"
    dose = fmt_limit(ctx, "transition_zoledronic_acid_dose_mg")
    zol_min, oral_min = fmt_limit(ctx, "egfr_zoledronic_acid_min"), fmt_limit(ctx, "egfr_oral_bisphosphonate_min")
    when = f"on or about {fmt_date(start)}" if start is not None else "as soon as possible"
    measured = kidney.describe() if kidney is not None else f"no eGFR since {fmt_date(ctx.days_before('egfr_lookback_days'))}"
    if plan == ZOLEDRONIC_ACID:
        return Suggestion(
            label=f"Order zoledronic acid {dose} mg IV once ({when})",
            actions=(zoledronic_acid_order_action(
                ctx, reason=reason, start=start,
                dosage_text=f"{dose} mg IV infusion over at least 15 minutes, once, {when}; check calcium first"),),
        ), f"Kidney function: {measured} (at least {zol_min}): **zoledronic acid {dose} mg IV once**."
    if plan == ORAL_BISPHOSPHONATE:
        return Suggestion(
            label=f"Order risedronate 35 mg once weekly (eGFR {oral_min}-{int(float(zol_min)) - 1})",
            actions=(oral_bisphosphonate_order_action(ctx, reason=reason),),
        ), (
            f"Kidney function: {measured}: below {zol_min}, so zoledronic acid is contraindicated; at "
            f"{oral_min} or above an **oral bisphosphonate (risedronate 35 mg once weekly)** can be used."
        )
    if plan == SPECIALIST_REFERRAL:
        return Suggestion(
            label="Refer to nephrology / CKD-MBD specialist (no bisphosphonate)",
            actions=(specialist_referral_action(ctx, reason=f"{reason}; eGFR below {oral_min}: bisphosphonates not recommended"),),
        ), (
            f"Kidney function: {measured}: **below {oral_min}: no bisphosphonate is recommended**, and the patient "
            "is in the boxed-warning group for severe hypocalcemia (advanced CKD). Plan the follow-on therapy with "
            "a nephrology / CKD-MBD specialist."
        )
    return Suggestion(
        label="Order serum creatinine (eGFR) before zoledronic acid",
        actions=lab_order_actions(ctx, "renal-function-order", reason="Renal function before zoledronic acid")
        + (zoledronic_acid_order_action(
            ctx, reason=reason, start=start,
            dosage_text=f"{dose} mg IV infusion over at least 15 minutes, once, {when}; give only once eGFR "
                        f"{zol_min} or above is confirmed"),),
    ), (
        f"Kidney function: {measured}. Check renal function first: **zoledronic acid {dose} mg IV once, once eGFR "
        f"{zol_min} or above is confirmed** (contraindicated with creatinine clearance < {zol_min} mL/min)."
    )


def no_bisphosphonate_since(last_dose_date: datetime) -> Absence:
    return Absence("medications", f"a bisphosphonate given or ordered since {fmt_date(last_dose_date)}", last_dose_date)


def renal_rule_absences(ctx: RuleContext) -> tuple[Absence, ...]:
    """What the renal rule concludes from a missing eGFR (no result: renal test first)."""
    if egfr_function(ctx) is not None:
        return ()
    since = ctx.days_before("egfr_lookback_days")
    return (Absence("labs", f"an eGFR since {fmt_date(since)}", since),)
