"""calcium-vitamin-d-supplementation: prevents severe hypocalcemia from denosumab given without
calcium and vitamin D.

When: a denosumab order, and no active calcium supplement or no active vitamin D supplement: an
  active order (MedicationRequest active/on-hold) or medication statement (active/intended) from
  the calcium-supplement / vitamin-d-supplement value sets — a combination product is in both, so
  it counts for both — or a supplement among the draft orders of this call (being ordered now).
  Calcium is never suggested when the latest calcium within calcium_lookback_days is above its
  upper limit (the result's reference range high, else the fixed limit; `common.latest_calcium_readings`)
  or an active hypercalcemia diagnosis is on record. For such a patient the absence of calcium is
  right, so when vitamin D is active too there is no card at all (decision: a warning with
  nothing to do is alert fatigue).
Then: warning listing the supplements found (or none) and what is missing, with the targets
  (calcium 1,000-1,500 mg and vitamin D3 400-800 IU daily); one suggestion per missing supplement
  (calcium carbonate 600 mg elemental twice daily; cholecalciferol 400 IU daily), any of which the
  clinician may accept (selectionBehavior "any"). When calcium is withheld, says why, with the
  value or diagnosis.
Source: Prolia label ("All patients should receive calcium 1000 mg daily and at least 400 IU vitamin
  D daily"); seed "Mandatory Pre-Treatment Requirements — Calcium and Vitamin D Supplementation"
  and "Critical Clinical Pitfalls to Avoid" #3.
"""

from __future__ import annotations

from cds_service.cards import Absence, Finding, Suggestion
from cds_service.record.model import MedicationEntry
from cds_service.rules import common
from cds_service.rules.context import RuleContext

TOPIC = "calcium-vitamin-d-supplementation"
NEEDS = frozenset({"medications", "labs", "conditions"})
CALCIUM, VITAMIN_D = "calcium-supplement", "vitamin-d-supplement"


def evaluate(ctx: RuleContext) -> Finding | None:
    calcium = supplements_on_record(ctx, CALCIUM)
    vitamin_d = supplements_on_record(ctx, VITAMIN_D)
    # Asked only when calcium would be suggested: the latest calcium and its albumin are then read.
    reasons_to_withhold_calcium = () if calcium else calcium_contraindications(ctx)
    missing_calcium = not calcium and not reasons_to_withhold_calcium
    missing_vitamin_d = not vitamin_d
    if not missing_calcium and not missing_vitamin_d:
        return None
    return supplementation_finding(
        ctx, calcium, vitamin_d, reasons_to_withhold_calcium, missing_calcium=missing_calcium,
        missing_vitamin_d=missing_vitamin_d,
    )


# --- criteria ------------------------------------------------------------------------------------

def supplements_on_record(ctx: RuleContext, concept: str) -> tuple[MedicationEntry, ...]:
    """Active orders and statements of the supplement, and drafts of it in this call."""
    active = common.active_medications(ctx.record, frozenset({concept}))
    drafts = tuple(order for order in ctx.record.draft_orders if order.is_a(concept))
    return active + drafts


def calcium_contraindications(ctx: RuleContext) -> tuple[str, ...]:
    """Why calcium must not be suggested: a high latest calcium, active hypercalcemia."""
    reasons = [
        f"latest {reading.describe()} is above the upper limit ({common.fmt_number(reading.upper_limit)} {reading.lab.unit})"
        for reading in common.latest_calcium_readings(ctx) if reading.is_high
    ]
    reasons += [f"active hypercalcemia: {common.fmt_condition(c)}" for c in common.active_conditions(ctx, "hypercalcemia")]
    return tuple(reasons)


# --- the card ------------------------------------------------------------------------------------

def supplementation_finding(
    ctx: RuleContext, calcium: tuple[MedicationEntry, ...], vitamin_d: tuple[MedicationEntry, ...],
    reasons_to_withhold_calcium: tuple[str, ...], *, missing_calcium: bool, missing_vitamin_d: bool,
) -> Finding:
    missing = " and ".join(
        name for name, is_missing in (("calcium", missing_calcium), ("vitamin D", missing_vitamin_d)) if is_missing
    )
    summary = f"No active {missing} supplement: start before denosumab (hypocalcemia risk)"
    suggestions = []
    if missing_calcium:
        suggestions.append(calcium_suggestion(ctx))
    if missing_vitamin_d:
        suggestions.append(vitamin_d_suggestion(ctx))
    return Finding(
        topic=TOPIC,
        indicator="warning",
        summary=summary,
        detail=_detail(ctx, calcium, vitamin_d, reasons_to_withhold_calcium),
        suggestions=tuple(suggestions),
        selection_behavior="any",
        rests_on_absence=(Absence("medications", f"an active {missing} supplement"),),
    )


def _targets(ctx: RuleContext) -> str:
    return (
        f"calcium {common.fmt_number(ctx.threshold('calcium_supplement_daily_mg_min'))}-"
        f"{common.fmt_number(ctx.threshold('calcium_supplement_daily_mg_max'))} mg and vitamin D3 "
        f"{common.fmt_number(ctx.threshold('vitamin_d_daily_iu_min'))}-"
        f"{common.fmt_number(ctx.threshold('vitamin_d_daily_iu_max'))} IU daily"
    )


def _describe(entry: MedicationEntry) -> str:
    if entry.is_draft_order:
        return f"{entry.name} (being ordered now)"
    return f"{entry.name} ({entry.reference or entry.source}, {entry.status}, since {common.fmt_date(entry.date)})"


def _detail(
    ctx: RuleContext, calcium: tuple[MedicationEntry, ...], vitamin_d: tuple[MedicationEntry, ...],
    reasons_to_withhold_calcium: tuple[str, ...],
) -> str:
    lines = [
        "- Calcium: " + ("; ".join(_describe(m) for m in calcium) if calcium else "**no active calcium supplement**"),
        "- Vitamin D: " + ("; ".join(_describe(m) for m in vitamin_d) if vitamin_d else "**no active vitamin D supplement**"),
    ]
    text = (
        "Active supplements (orders and medication statements):\n" + "\n".join(lines) + "\n\n"
        f"Denosumab can cause severe, even fatal, hypocalcemia; every patient should take {_targets(ctx)} "
        "throughout treatment (a combination product counts for both).\n\n"
    )
    if reasons_to_withhold_calcium:
        text += (
            "**Calcium is not suggested**: " + "; ".join(reasons_to_withhold_calcium) + ". Vitamin D only; "
            "recheck calcium and find the cause of the high calcium before adding calcium."
        )
    else:
        text += "If the patient takes supplements bought over the counter, record them as medication statements."
    return text


def supplement_suggestion(ctx: RuleContext, order_set: str, reason: str) -> Suggestion:
    """Order the supplement of `order_set` with its instructions and timing (seeds/valuesets.toml)."""
    action = common.medication_order_action(ctx, order_set, reason=reason)
    return Suggestion(label=action.description, actions=(action,))


def calcium_suggestion(ctx: RuleContext) -> Suggestion:
    return supplement_suggestion(
        ctx, "calcium-supplement-order", "Calcium supplementation during denosumab therapy (hypocalcemia prevention)"
    )


def vitamin_d_suggestion(ctx: RuleContext) -> Suggestion:
    return supplement_suggestion(
        ctx, "vitamin-d-supplement-order", "Vitamin D supplementation during denosumab therapy (hypocalcemia prevention)"
    )
