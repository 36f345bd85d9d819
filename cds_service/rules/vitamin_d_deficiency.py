"""vitamin-d-deficiency: prevents denosumab-induced hypocalcemia in a patient whose vitamin D
deficiency has not been corrected.

When: a denosumab order, and
  - the latest countable 25-OH vitamin D within 12 months (vitamin_d_lookback_days) is below
    20 ng/mL (vitamin_d_deficiency_below_ng_ml) — results in nmol/L are converted (seeds/units.toml)
    and must also be below 50 nmol/L (vitamin_d_deficiency_below_nmol_l), so a value exactly at the
    printed limit in either unit never counts; a reported bound (">15") that does not show it is
    low does not count; or
  - an active vitamin D deficiency diagnosis with no normal level since: no countable 25-OH
    vitamin D at or above the limit dated on or after the diagnosis (onset, else recorded date; a
    diagnosis with neither date is cleared by a normal level within the 12 months). A resolved or
    inactive diagnosis does not count.
Then: warning showing the level with its unit and date (or the diagnosis and "no normal level
  since <date>") and what to do: correct the deficiency before the dose, then keep supplementing.
  Only for a diagnosis without a normal level since does it suggest an order: a 25-OH vitamin D
  level (what is missing is the measurement); a low level asks for repletion, whose dose is the
  clinician's choice, and the calcium-vitamin-d-supplementation card proposes the daily supplement.
Source: seed "Mandatory Pre-Treatment Requirements — Calcium and Vitamin D Supplementation"
  ("Correct vitamin D deficiency before the first dose") and "Critical Clinical Pitfalls" #3.
"""

from __future__ import annotations

from datetime import datetime

from cds_service.cards import Finding, Suggestion
from cds_service.record.model import ConditionEntry, LabResult
from cds_service.record.units import analyte_units
from cds_service.rules import common
from cds_service.rules.context import RuleContext

TOPIC = "vitamin-d-deficiency"
NEEDS = frozenset({"labs", "conditions"})
ANALYTE = "vitamin-d-25oh"
_MOLAR_UNIT = "nmol/L"  # the unit of vitamin_d_deficiency_below_nmol_l


def evaluate(ctx: RuleContext) -> Finding | None:
    latest = latest_level(ctx)
    if latest is not None and is_deficient(ctx, latest):
        return low_level_finding(ctx, latest)
    unanswered = [d for d in common.active_conditions(ctx, "vitamin-d-deficiency") if not normal_level_since(ctx, d)]
    if unanswered:
        return diagnosis_finding(ctx, unanswered, latest)
    return None


# --- criteria ------------------------------------------------------------------------------------

def deficiency_limit(ctx: RuleContext) -> float:
    """The limit in ng/mL: below both printed forms (20 ng/mL and 50 nmol/L, converted)."""
    molar = analyte_units()[ANALYTE].to_canonical(ctx.threshold("vitamin_d_deficiency_below_nmol_l"), _MOLAR_UNIT, None)
    return min(ctx.threshold("vitamin_d_deficiency_below_ng_ml"), molar)


def latest_level(ctx: RuleContext) -> LabResult | None:
    return common.latest_result(ctx, (ANALYTE,), "vitamin_d_lookback_days")


def is_deficient(ctx: RuleContext, lab: LabResult) -> bool:
    return lab.value < deficiency_limit(ctx) and lab.comparator not in (">", ">=")


def is_normal(ctx: RuleContext, lab: LabResult) -> bool:
    return lab.value >= deficiency_limit(ctx) and lab.comparator not in ("<", "<=")


def diagnosed_on(condition: ConditionEntry) -> datetime | None:
    return condition.onset or condition.recorded


def normal_level_since(ctx: RuleContext, condition: ConditionEntry) -> LabResult | None:
    since = diagnosed_on(condition) or ctx.days_before("vitamin_d_lookback_days")
    return next(
        (lab for lab in common.countable_results(ctx, ANALYTE, since) if lab.value is not None and is_normal(ctx, lab)),
        None,
    )


# --- the card ------------------------------------------------------------------------------------

def _limit_text(ctx: RuleContext) -> str:
    return (
        f"{common.fmt_number(ctx.threshold('vitamin_d_deficiency_below_ng_ml'))} ng/mL "
        f"({common.fmt_number(ctx.threshold('vitamin_d_deficiency_below_nmol_l'))} nmol/L)"
    )


_WHAT_TO_DO = (
    "Correct vitamin D deficiency **before** giving denosumab: an uncorrected deficiency adds to the "
    "risk of severe, potentially fatal hypocalcemia. Replete vitamin D, keep calcium and vitamin D "
    "supplementation throughout treatment, and check calcium before the dose."
)


def low_level_finding(ctx: RuleContext, lab: LabResult) -> Finding:
    return Finding(
        topic=TOPIC,
        indicator="warning",
        summary=f"Vitamin D deficiency (25-OH D {common.fmt_number(lab.value)} {lab.unit}): correct before denosumab",
        detail=(
            f"**Latest 25-OH vitamin D: {common.fmt_result(lab)}** — below {_limit_text(ctx)}.\n\n{_WHAT_TO_DO}"
        ),
    )


def diagnosis_finding(ctx: RuleContext, diagnoses: list[ConditionEntry], latest: LabResult | None) -> Finding:
    lines = []
    for condition in diagnoses:
        since = diagnosed_on(condition)
        after = f"since {common.fmt_date(since)}" if since else f"in the last 12 months (since {common.fmt_date(ctx.days_before('vitamin_d_lookback_days'))})"
        lines.append(f"- {common.fmt_condition_dated(condition)}: **no normal 25-OH vitamin D {after}**")
    latest_text = f"Latest 25-OH vitamin D on file: {common.fmt_result(latest)}." if latest else (
        f"No 25-OH vitamin D result since {common.fmt_date(ctx.days_before('vitamin_d_lookback_days'))}."
    )
    return Finding(
        topic=TOPIC,
        indicator="warning",
        summary="Active vitamin D deficiency with no normal level since: check and correct before denosumab",
        detail=(
            "Active vitamin D deficiency diagnosis:\n" + "\n".join(lines) + f"\n\n{latest_text}\n\n"
            f"{_WHAT_TO_DO} Confirm the level is at least {_limit_text(ctx)}."
        ),
        suggestions=(
            Suggestion(
                label="Order 25-OH vitamin D level",
                actions=common.lab_order_actions(
                    ctx, "vitamin-d-level-order", reason="Vitamin D deficiency before denosumab: confirm it is corrected"
                ),
                is_recommended=True,
            ),
        ),
    )
