"""transition-needed: prevents rebound bone loss and multiple vertebral fractures when denosumab
60 mg is stopped without a follow-on bisphosphonate.

When: patient-view, or a follow-on order that is not itself a bisphosphonate (e.g. teriparatide
  or romosozumab; a bisphosphonate order IS the transition, and transition-timing judges it), for
  a patient on the 60 mg regimen (`common.history_regimen`) with a denosumab dose on record, with
  no active denosumab order or medication statement, and
  - the regimen was stopped: the newest denosumab order or statement has status "stopped"; or
  - the last dose is at least 6 months old (transition_due_days);
  and no bisphosphonate has been given or ordered since the last dose (`common.bisphosphonates_since`:
  administrations, dispenses, statements, orders, and other drafts of this call).
Then: warning showing the last dose (product, date, record), the stopped order if any, the
  bisphosphonates looked for, the latest eGFR (12 months), and the transition due date (last dose
  + 6 months). Suggestions, by renal function:
  - eGFR >= 35 (egfr_zoledronic_acid_min): zoledronic acid 5 mg IV once on or about the due date
    (as soon as possible when it is past);
  - eGFR < 35: an oral bisphosphonate (risedronate 35 mg weekly) instead, saying why (zoledronic
    acid is contraindicated with CrCl < 35 mL/min);
  - no eGFR in 12 months (decision): say so, and suggest both a serum creatinine (eGFR) and the
    zoledronic acid order, to be given only once eGFR >= 35 is confirmed (selectionBehavior "any"):
    zoledronic acid stays the standard follow-on, and a missing lab must not delay the plan.
  Past 7 months (transition_window_end_days) the card adds that rebound may be under way (look for
  vertebral fractures) and that resuming denosumab is the alternative.
Source: ECTS 2021 (Tsourdi et al.): alternative antiresorptive 6 months after the final injection;
  Prolia label W&P Multiple Vertebral Fractures Following Discontinuation; seed "Rebound Bone Loss
  and Multiple Vertebral Fractures"; Reclast label (contraindicated with CrCl < 35 mL/min).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cds_service.cards import Absence, Finding, Suggestion
from cds_service.record.model import LabResult, MedicationEntry
from cds_service.rules import common
from cds_service.rules.context import RuleContext

TOPIC = "transition-needed"
NEEDS = frozenset({"medications", "labs"})


def evaluate(ctx: RuleContext) -> Finding | None:
    if order_is_the_transition(ctx):
        return None
    last = common.last_denosumab_dose(ctx)
    if last is None or common.history_regimen(ctx) != "60mg":
        return None
    if common.active_medications(ctx.record, common.DENOSUMAB):
        return None
    stopped = common.stopped_denosumab_record(ctx)
    if stopped is None and not last_dose_is_due_for_transition(ctx, last):
        return None
    if common.bisphosphonates_since(ctx, last.date):
        return None
    return transition_finding(ctx, last, stopped)


# --- criteria ------------------------------------------------------------------------------------

def order_is_the_transition(ctx: RuleContext) -> bool:
    """A bisphosphonate among the focused follow-on orders: the suggestion would be moot."""
    return any(order.concepts & common.BISPHOSPHONATE for order in ctx.orders)


def last_dose_is_due_for_transition(ctx: RuleContext, last: MedicationEntry) -> bool:
    return ctx.as_of >= common.transition_due_date(ctx, last)


def rebound_may_be_under_way(ctx: RuleContext, last: MedicationEntry) -> bool:
    return common.days_between(last.date, ctx.as_of) > ctx.threshold("transition_window_end_days")


# --- the card ------------------------------------------------------------------------------------

def transition_finding(ctx: RuleContext, last: MedicationEntry, stopped: MedicationEntry | None) -> Finding:
    egfr, zoledronic_acid_allowed = common.egfr_allows_zoledronic_acid(ctx)
    due = common.transition_due_date(ctx, last)
    if zoledronic_acid_allowed is False:
        plan = f"plan an oral bisphosphonate (eGFR < {common.fmt_number(ctx.threshold('egfr_zoledronic_acid_min'))})"
    else:
        dose = common.fmt_number(ctx.threshold("transition_zoledronic_acid_dose_mg"))
        plan = f"plan zoledronic acid {dose} mg IV (due {common.fmt_date(due)})"
    if stopped is not None:
        summary = f"Denosumab 60 mg stopped without a bisphosphonate: {plan}"
    else:
        days = common.days_between(last.date, ctx.as_of)
        summary = f"No denosumab 60 mg for {days} days, no bisphosphonate: {plan}"
    suggestions = _suggestions(ctx, last, zoledronic_acid_allowed)
    return Finding(
        topic=TOPIC,
        indicator="warning",
        summary=summary,
        detail=_detail(ctx, last, stopped, egfr, zoledronic_acid_allowed),
        suggestions=suggestions,
        selection_behavior="any" if len(suggestions) > 1 else "at-most-one",
        rests_on_absence=(
            Absence("medications", f"a bisphosphonate given or ordered since the last denosumab dose ({common.fmt_date(last.date)})", last.date),
            Absence("medications", "an active denosumab order"),
        ),
    )


def _detail(
    ctx: RuleContext, last: MedicationEntry, stopped: MedicationEntry | None, egfr: LabResult | None,
    zoledronic_acid_allowed: bool | None,
) -> str:
    days = common.days_between(last.date, ctx.as_of)
    due = common.transition_due_date(ctx, last)
    text = f"**Last denosumab 60 mg dose: {common.fmt_medication(last)}** — {common.fmt_elapsed(days)} ago.\n\n"
    if stopped is not None:
        text += f"Denosumab was stopped: {common.fmt_medication(stopped)}. "
    text += (
        f"No active denosumab order, and **no bisphosphonate given or ordered since "
        f"{common.fmt_date(last.date)}**.\n\n"
    )
    focus = [order for order in ctx.orders if order.concepts & common.FOLLOW_ON_AGENT]
    if focus:
        text += (
            f"The order in this session ({', '.join(order.name for order in focus)}) is not a bisphosphonate "
            "and does not replace the transition.\n\n"
        )
    when = "on or about" if due > ctx.as_of else "as soon as possible (it was due"
    closing = "" if due > ctx.as_of else ")"
    text += (
        "Stopping denosumab without a follow-on bisphosphonate causes rebound bone loss and multiple "
        "vertebral fractures. Start the bisphosphonate about 6 months after the last injection: "
        f"{when} **{common.fmt_date(due)}**{closing}.\n\n"
    )
    if rebound_may_be_under_way(ctx, last):
        text += (
            "More than 7 months have passed since the last dose: the rebound may be under way. Ask about "
            "new back pain and consider spine imaging for vertebral fractures. If denosumab is to be "
            "continued instead, give the overdue dose now.\n\n"
        )
    limit = common.fmt_number(ctx.threshold("egfr_zoledronic_acid_min"))
    zoledronic_acid = f"**zoledronic acid {common.fmt_number(ctx.threshold('transition_zoledronic_acid_dose_mg'))} mg IV once**"
    if egfr is None:
        since = common.fmt_date(ctx.days_before("egfr_lookback_days"))
        text += (
            f"**No eGFR since {since}.** Give {zoledronic_acid} once renal function is checked: it is "
            f"contraindicated with creatinine clearance < {limit} mL/min (then use an oral bisphosphonate). "
            "Check calcium before the infusion too."
        )
    elif zoledronic_acid_allowed is False:
        text += (
            f"**Latest eGFR {common.fmt_result(egfr)}: below {limit}.** Zoledronic acid is contraindicated "
            f"with creatinine clearance < {limit} mL/min, so an **oral bisphosphonate** is suggested instead "
            "(check the product's own renal limits, and consider specialist advice in advanced CKD)."
        )
    elif zoledronic_acid_allowed:
        text += f"Latest eGFR {common.fmt_result(egfr)} (at least {limit}): give {zoledronic_acid}; check calcium first."
    else:
        text += (
            f"Latest eGFR {common.fmt_result(egfr)} does not show whether it is at least {limit}: confirm renal "
            f"function, then give {zoledronic_acid} (contraindicated with creatinine clearance < {limit} mL/min)."
        )
    return text


def _suggestions(ctx: RuleContext, last: MedicationEntry, zoledronic_acid_allowed: bool | None) -> tuple[Suggestion, ...]:
    reason = f"Transition after denosumab 60 mg (last dose {common.fmt_date(last.date)}): prevent rebound vertebral fractures"
    if zoledronic_acid_allowed is False:
        return (oral_bisphosphonate_suggestion(ctx, reason),)
    zoledronic_acid = zoledronic_acid_suggestion(ctx, last, reason, confirmed=bool(zoledronic_acid_allowed))
    if zoledronic_acid_allowed:
        return (zoledronic_acid,)
    renal_check = Suggestion(
        label="Order serum creatinine (eGFR) before zoledronic acid",
        actions=common.lab_order_actions(ctx, "renal-function-order", reason="Renal function before zoledronic acid"),
        is_recommended=True,
    )
    return (renal_check, zoledronic_acid)


def zoledronic_acid_suggestion(ctx: RuleContext, last: MedicationEntry, reason: str, *, confirmed: bool) -> Suggestion:
    due = common.transition_due_date(ctx, last)
    dose = common.fmt_number(ctx.threshold("transition_zoledronic_acid_dose_mg"))
    limit = common.fmt_number(ctx.threshold("egfr_zoledronic_acid_min"))
    repeat: dict = {"count": 1}
    if due > ctx.as_of:
        repeat["boundsPeriod"] = {"start": due.date().isoformat()}
        when = f"on or about {common.fmt_date(due)}"
    else:
        when = "as soon as possible"
    dosage = f"{dose} mg IV infusion over at least 15 minutes, once, {when}"
    if not confirmed:
        dosage += f"; give only if eGFR is at least {limit}"
    return Suggestion(
        label=f"Order zoledronic acid {dose} mg IV once ({when})",
        actions=(
            common.medication_order_action(
                ctx, "transition-zoledronic-acid-order", dosage_text=dosage, reason=reason, timing={"repeat": repeat}
            ),
        ),
        is_recommended=confirmed,
    )


def oral_bisphosphonate_suggestion(ctx: RuleContext, reason: str) -> Suggestion:
    limit = common.fmt_number(ctx.threshold("egfr_zoledronic_acid_min"))
    return Suggestion(
        label=f"Order risedronate 35 mg once weekly (zoledronic acid contraindicated: eGFR < {limit})",
        actions=(common.oral_bisphosphonate_order_action(ctx, reason=reason),),
        is_recommended=True,
    )
