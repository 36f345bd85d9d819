"""vitamin-d-deficiency: prevents denosumab-induced hypocalcemia in a patient whose vitamin D
deficiency has not been corrected.

When: a denosumab order, and
  - the latest countable 25-OH vitamin D within 12 months is below 20 ng/mL (50 nmol/L) — a
    value exactly at the printed limit in either unit never counts; a reported bound (">15")
    that does not show it is low does not count; or
  - an active vitamin D deficiency diagnosis with onset (else recorded date) in the last 12
    months and no normal 25-OH D since; an older active diagnosis with no 25-OH D in 12 months
    asks for a level, not repletion (rests on an absence: a 25-OH vitamin D in 12 months).
  Not issued when a vitamin D order or statement (repletion or maintenance; the
  vitamin-d-supplement value set, this call's drafts included) started after the low result or
  the diagnosis.
Then: warning showing the level as reported (and converted when compared in another unit), and
  a repletion order — cholecalciferol 50,000 IU by mouth once weekly for 8 weeks (seeds), not the
  400–800 IU maintenance dose. Timing: at initiation of the 60 mg regimen "consider deferring the
  first dose until repleted if fracture risk allows; calcium must be normal before any dose"; on
  60 mg therapy and for 120 mg at any time "do not delay the dose: start repletion now, check
  calcium before and after the dose". In the hypercalcemia state: info "do not replete while
  calcium is high; recheck once it is normal", no order; likewise info without an order for a
  120 mg order for hypercalcemia of malignancy (calcium and vitamin D only to treat hypocalcemia).
Source: card catalog v2, topic vitamin-d-deficiency; Endocrine Society 2011 clinical practice
  guideline on vitamin D deficiency (Holick et al., DOI 10.1210/jc.2011-0385: 50,000 IU weekly for
  8 weeks); Prolia label W&P Hypocalcemia (correct hypocalcemia and vitamin D before dosing); seed
  "Mandatory Pre-Treatment Requirements — Calcium and Vitamin D Supplementation".
"""

from __future__ import annotations

from datetime import datetime

from cds_service.cards import Absence, Finding, Suggestion
from cds_service.record.model import ConditionEntry, LabResult, MedicationEntry
from cds_service.record.units import analyte_units
from cds_service.rules import common
from cds_service.rules.concepts import calcium, dose_history, labs, medications, order_suggestions
from cds_service.rules.concepts.regimen import regimen_of
from cds_service.rules.context import RuleContext

TOPIC = "vitamin-d-deficiency"
NEEDS = frozenset({"labs", "conditions"})  # medications only silence it: unavailable, it still fires
ANALYTE = "vitamin-d-25oh"
VITAMIN_D = frozenset({"vitamin-d-supplement"})
_MOLAR_UNIT = "nmol/L"  # the unit of vitamin_d_deficiency_below_nmol_l


def evaluate(ctx: RuleContext) -> Finding | None:
    latest = latest_level(ctx)
    if latest is not None and is_deficient(ctx, latest):
        if vitamin_d_started_since(ctx, latest.effective):
            return None
        return deficiency_finding(ctx, f"**Latest 25-OH vitamin D: {common.fmt_result(latest)}** — below {_limit_text(ctx)}.",
                                  f"25-OH D {common.fmt_reported(latest)}")
    for diagnosis in common.active_conditions(ctx, "vitamin-d-deficiency"):
        since = diagnosed_on(diagnosis)
        if normal_level_since(ctx, diagnosis) or vitamin_d_started_since(ctx, since):
            continue
        if since is not None and since >= ctx.days_before("vitamin_d_lookback_days"):
            text = (
                f"Active vitamin D deficiency: {common.fmt_condition_dated(diagnosis)} — **no normal 25-OH vitamin D "
                f"since {common.fmt_date(since)}** ({_latest_text(ctx, latest)})."
            )
            return deficiency_finding(ctx, text, "diagnosed", rests_on_normal_level_since=since)
        if latest is None:
            return level_needed_finding(ctx, diagnosis)
    return None


# --- criteria ------------------------------------------------------------------------------------

def deficiency_limit(ctx: RuleContext) -> float:
    """The limit in ng/mL: below both printed forms (20 ng/mL and 50 nmol/L, converted)."""
    molar = analyte_units()[ANALYTE].to_canonical(ctx.threshold("vitamin_d_deficiency_below_nmol_l"), _MOLAR_UNIT, None)
    return min(ctx.threshold("vitamin_d_deficiency_below_ng_ml"), molar)


def latest_level(ctx: RuleContext) -> LabResult | None:
    return labs.latest_result(ctx, (ANALYTE,), "vitamin_d_lookback_days")


def is_deficient(ctx: RuleContext, lab: LabResult) -> bool:
    return lab.value < deficiency_limit(ctx) and lab.comparator not in (">", ">=")


def is_normal(ctx: RuleContext, lab: LabResult) -> bool:
    return lab.value >= deficiency_limit(ctx) and lab.comparator not in ("<", "<=")


def diagnosed_on(condition: ConditionEntry) -> datetime | None:
    return condition.onset or condition.recorded


def normal_level_since(ctx: RuleContext, condition: ConditionEntry) -> LabResult | None:
    since = diagnosed_on(condition) or ctx.days_before("vitamin_d_lookback_days")
    return next(
        (lab for lab in labs.countable_results(ctx, ANALYTE, since) if lab.value is not None and is_normal(ctx, lab)),
        None,
    )


def vitamin_d_started_since(ctx: RuleContext, since: datetime | None) -> MedicationEntry | None:
    """A vitamin D order or statement (repletion or maintenance) started on or after `since`, or
    a vitamin D draft of this call; not one cancelled, entered in error or merely intended."""
    draft = next((d for d in ctx.record.draft_orders if d.concepts & VITAMIN_D), None)
    if draft is not None or since is None:
        return draft
    return next(
        (m for m in ctx.record.medications_of(VITAMIN_D, since=since, sources=frozenset({"MedicationRequest", "MedicationStatement"}))
         if m.status not in medications.WITHDRAWN_MEDICATION_STATUSES and m.date is not None and m.date <= ctx.as_of),
        None,
    )


# --- the card ------------------------------------------------------------------------------------

def _limit_text(ctx: RuleContext) -> str:
    return (
        f"{common.fmt_number(ctx.threshold('vitamin_d_deficiency_below_ng_ml'))} ng/mL "
        f"({common.fmt_number(ctx.threshold('vitamin_d_deficiency_below_nmol_l'))} nmol/L)"
    )


def _latest_text(ctx: RuleContext, latest: LabResult | None) -> str:
    if latest is not None:
        return f"latest 25-OH vitamin D {common.fmt_result(latest)}"
    return f"no 25-OH vitamin D result since {common.fmt_date(ctx.days_before('vitamin_d_lookback_days'))}"


def _timing_text(ctx: RuleContext) -> str:
    regimens = {regimen_of(ctx, order) for order in ctx.orders}
    if dose_history.is_initiating(ctx) and "120mg" not in regimens:
        return (
            "**Starting the 60 mg regimen:** consider deferring the first dose until vitamin D is repleted if "
            "fracture risk allows; calcium must be normal before any dose."
        )
    return (
        "**Do not delay the dose:** start repletion now, and check calcium before and after the dose."
    )


def repletion_suggestion(ctx: RuleContext) -> Suggestion:
    action = order_suggestions.medication_order_action(
        ctx, "vitamin-d-repletion-order", reason="Vitamin D deficiency during denosumab therapy: repletion"
    )
    return Suggestion(label="Order vitamin D3 50,000 IU once weekly for 8 weeks", actions=(action,), is_recommended=True)


def deficiency_finding(ctx: RuleContext, found: str, what: str, *, rests_on_normal_level_since: datetime | None = None) -> Finding:
    absence = (
        (Absence("labs", f"a normal 25-OH vitamin D since {common.fmt_date(rests_on_normal_level_since)}",
                 rests_on_normal_level_since),)
        if rests_on_normal_level_since is not None else ()
    )
    hypercalcemia = calcium.hypercalcemia_state(ctx)
    if hypercalcemia:
        return Finding(
            topic=TOPIC,
            indicator="info",
            summary="Low 25-OH vitamin D: do not replete while calcium is high; recheck once it is normal",
            detail=f"{found}\n\n**Calcium is high:** {hypercalcemia.describe()}. Do not replete vitamin D while calcium "
                   "is high; recheck 25-OH vitamin D once calcium is normal.",
            rests_on_absence=absence,
        )
    if calcium.is_for_hypercalcemia_of_malignancy(ctx):
        return Finding(
            topic=TOPIC,
            indicator="info",
            summary="Low 25-OH vitamin D in hypercalcemia of malignancy: replete only to treat hypocalcemia",
            detail=f"{found}\n\nThis denosumab order treats hypercalcemia of malignancy: calcium and vitamin D are given "
                   "only to treat hypocalcemia. Recheck calcium after the dose; replete vitamin D if calcium falls low.",
            rests_on_absence=absence,
        )
    summary = (
        f"Vitamin D deficiency ({what}): start repletion" if what != "diagnosed"
        else "Vitamin D deficiency with no normal level since: start repletion"
    )
    ordered = ctx.kb.value_set("vitamin-d-repletion-order")
    return Finding(
        topic=TOPIC,
        indicator="warning",
        summary=summary,
        detail=(
            f"{found}\n\n{_timing_text(ctx)}\n\nRepletion (Endocrine Society 2011): {ordered.sig}; the 400-800 IU "
            "daily maintenance dose does not correct a deficiency. An uncorrected deficiency adds to the risk of "
            "severe, potentially fatal hypocalcemia on denosumab."
        ),
        suggestions=(repletion_suggestion(ctx),),
        rests_on_absence=absence,
    )


def level_needed_finding(ctx: RuleContext, diagnosis: ConditionEntry) -> Finding:
    since = ctx.days_before("vitamin_d_lookback_days")
    actions = order_suggestions.lab_order_actions(
        ctx, "vitamin-d-level-order", reason="Vitamin D deficiency on the problem list: check the level before denosumab",
        lookback_threshold="vitamin_d_lookback_days",
    )
    return Finding(
        topic=TOPIC,
        indicator="warning",
        summary="Vitamin D deficiency on the problem list, no level in 12 months: check 25-OH vitamin D",
        detail=(
            f"Active vitamin D deficiency: {common.fmt_condition_dated(diagnosis)}. **No 25-OH vitamin D result since "
            f"{common.fmt_date(since)}.**\n\nCheck the level before denosumab: if it is below {_limit_text(ctx)}, "
            "replete before or with the dose."
        ),
        suggestions=tuple(s for s in (order_suggestions.lab_order_suggestion(
            "Order 25-OH vitamin D level", actions, is_recommended=True),) if s is not None),
        rests_on_absence=(Absence("labs", "a 25-OH vitamin D in the last 12 months", since),),
    )
