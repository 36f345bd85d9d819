"""calcium-vitamin-d-supplementation: prevents severe hypocalcemia from denosumab given without
calcium and vitamin D.

When: a denosumab order, and no active calcium supplement or no active vitamin D supplement: an
  active order (MedicationRequest active/on-hold) or medication statement (active/intended) from
  the calcium-supplement / vitamin-d-supplement value sets — a combination calcium + vitamin D
  product is in both, so it counts for both; active vitamin D (calcitriol, the active-vitamin-d
  value set) counts as vitamin D only in dialysis — or a supplement among the draft orders of this
  call. Rests on absences (an active calcium supplement; an active vitamin D supplement).
  **Not issued at all** in the hypercalcemia state (the calcium compared in 30 days above its
  upper limit, or an active hypercalcemia diagnosis with no normal calcium since), nor for a
  120 mg denosumab order for hypercalcemia of malignancy (its reason, or the diagnosis on the
  problem list): calcium and vitamin D are then given only to treat hypocalcemia.
Then: warning listing the supplements found (or none) and what is missing, with the targets
  (calcium 1,000-1,500 mg elemental and vitamin D3 400-800 IU daily); one order suggestion per
  missing supplement (calcium carbonate 1,500 mg = 600 mg elemental calcium twice daily;
  cholecalciferol 400 IU daily), and one that records supplements the patient already buys over
  the counter (a MedicationStatement, informationSource the patient); selectionBehavior "any".
Source: card catalog v2, topic calcium-vitamin-d-supplementation; Prolia label ("All patients
  should receive calcium 1000 mg daily and at least 400 IU vitamin D daily"); Xgeva label
  (calcium and vitamin D as necessary to treat or prevent hypocalcemia); seed "Mandatory
  Pre-Treatment Requirements — Calcium and Vitamin D Supplementation".
"""

from __future__ import annotations

from cds_service.cards import Absence, Finding, Suggestion
from cds_service.record.model import MedicationEntry
from cds_service.rules import common
from cds_service.rules.concepts import calcium, kidney, medications, order_suggestions
from cds_service.rules.context import RuleContext

TOPIC = "calcium-vitamin-d-supplementation"
NEEDS = frozenset({"medications", "labs", "conditions"})  # procedures (dialysis) only widen what counts
CALCIUM, VITAMIN_D, ACTIVE_VITAMIN_D = "calcium-supplement", "vitamin-d-supplement", "active-vitamin-d"


def evaluate(ctx: RuleContext) -> Finding | None:
    calcium_found = supplements_on_record(ctx, CALCIUM)
    vitamin_d = vitamin_d_on_record(ctx)
    if calcium_found and vitamin_d:
        return None
    if calcium.is_for_hypercalcemia_of_malignancy(ctx) or calcium.hypercalcemia_state(ctx):
        return None
    return supplementation_finding(ctx, calcium_found, vitamin_d)


# --- criteria ------------------------------------------------------------------------------------

def supplements_on_record(ctx: RuleContext, concept: str) -> tuple[MedicationEntry, ...]:
    """Active orders and statements of the supplement, and drafts of it in this call."""
    active = medications.active_medications(ctx.record, frozenset({concept}))
    drafts = tuple(order for order in ctx.record.draft_orders if order.is_a(concept))
    return active + drafts


def vitamin_d_on_record(ctx: RuleContext) -> tuple[MedicationEntry, ...]:
    """Vitamin D supplements; active vitamin D (calcitriol) only counts in dialysis."""
    found = supplements_on_record(ctx, VITAMIN_D)
    nutritional = tuple(m for m in found if not m.is_a(ACTIVE_VITAMIN_D))
    if nutritional or not found:
        return nutritional
    return found if kidney.is_on_dialysis(ctx) else ()


# --- the card ------------------------------------------------------------------------------------

def supplementation_finding(
    ctx: RuleContext, calcium_found: tuple[MedicationEntry, ...], vitamin_d: tuple[MedicationEntry, ...],
) -> Finding:
    missing = [name for name, found in (("calcium", calcium_found), ("vitamin D", vitamin_d)) if not found]
    suggestions = []
    statements = []
    if not calcium_found:
        suggestions.append(supplement_suggestion(
            ctx, "calcium-supplement-order", "Calcium supplementation during denosumab therapy (hypocalcemia prevention)"))
        statements.append(order_suggestions.patient_reported_medication_action(
            ctx, "calcium-supplement-order", note="Calcium supplement bought over the counter, reported by the patient"))
    if not vitamin_d:
        suggestions.append(supplement_suggestion(
            ctx, "vitamin-d-supplement-order", "Vitamin D supplementation during denosumab therapy (hypocalcemia prevention)"))
        statements.append(order_suggestions.patient_reported_medication_action(
            ctx, "vitamin-d-supplement-order", note="Vitamin D supplement bought over the counter, reported by the patient"))
    suggestions.append(Suggestion(label="Record supplements the patient buys over the counter", actions=tuple(statements)))
    return Finding(
        topic=TOPIC,
        indicator="warning",
        summary=f"No active {' and '.join(missing)} supplement: start before denosumab (hypocalcemia risk)",
        detail=_detail(ctx, calcium_found, vitamin_d),
        suggestions=tuple(suggestions),
        selection_behavior="any",
        rests_on_absence=tuple(
            Absence("medications", f"an active {name} supplement (order or medication statement)", None) for name in missing
        ),
    )


def _targets(ctx: RuleContext) -> str:
    return (
        f"elemental calcium {common.fmt_number(ctx.threshold('calcium_supplement_daily_mg_min'))}-"
        f"{common.fmt_number(ctx.threshold('calcium_supplement_daily_mg_max'))} mg and vitamin D3 "
        f"{common.fmt_number(ctx.threshold('vitamin_d_daily_iu_min'))}-"
        f"{common.fmt_number(ctx.threshold('vitamin_d_daily_iu_max'))} IU daily"
    )


def _describe(entry: MedicationEntry) -> str:
    if entry.is_draft_order:
        return f"{entry.name} (being ordered now)"
    return f"{entry.name} ({entry.reference or entry.source}, {entry.status}, since {common.fmt_date(entry.date)})"


def _detail(ctx: RuleContext, calcium_found: tuple[MedicationEntry, ...], vitamin_d: tuple[MedicationEntry, ...]) -> str:
    lines = [
        "- Calcium: " + ("; ".join(_describe(m) for m in calcium_found) if calcium_found else "**no active calcium supplement**"),
        "- Vitamin D: " + ("; ".join(_describe(m) for m in vitamin_d) if vitamin_d else "**no active vitamin D supplement**"),
    ]
    return (
        "Active supplements (orders and medication statements):\n" + "\n".join(lines) + "\n\n"
        f"Denosumab can cause severe, even fatal, hypocalcemia; every patient should take {_targets(ctx)} "
        "throughout treatment (a combination calcium + vitamin D product counts for both).\n\n"
        "If the patient already takes supplements bought over the counter, record them instead of ordering."
    )


def supplement_suggestion(ctx: RuleContext, order_set: str, reason: str) -> Suggestion:
    """Order the supplement of `order_set` with its instructions and timing (seeds/valuesets.toml)."""
    action = order_suggestions.medication_order_action(ctx, order_set, reason=reason)
    # The label names the product; the instructions are on the order itself (labels stay under 80 characters).
    return Suggestion(label=action.description.split(": ", 1)[0], actions=(action,))
