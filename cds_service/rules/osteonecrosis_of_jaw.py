"""osteonecrosis-of-jaw: denosumab ordered for a patient who has or had osteonecrosis of the jaw.

When: a denosumab order, and an ONJ diagnosis — active (active, recurrence, relapse) → critical;
  history only (resolved, inactive, remission, at any verification status but entered-in-error
  or refuted) → warning.
Then: the card shows each ONJ diagnosis with its status and dates and what to do; with active
  ONJ it suggests cancelling the draft order, and always a dental referral.
Source: card catalog topic osteonecrosis-of-jaw; seed "Osteonecrosis of the Jaw (ONJ)"; Prolia/
  Xgeva W&P (ONJ: consider interrupting therapy; dental management).
"""

from __future__ import annotations

from cds_service.cards import Finding
from cds_service.record.model import ConditionEntry
from cds_service.rules import common
from cds_service.rules.concepts import order_suggestions
from cds_service.rules.context import RuleContext

TOPIC = "osteonecrosis-of-jaw"
NEEDS = frozenset({"conditions"})


def onj_diagnoses(ctx: RuleContext) -> tuple[ConditionEntry, ...]:
    """Every ONJ diagnosis on file, active or in history."""
    return common.conditions_in_history(ctx, "osteonecrosis-of-jaw")


def active_onj(ctx: RuleContext) -> tuple[ConditionEntry, ...]:
    return common.active_conditions(ctx, "osteonecrosis-of-jaw")


def evaluate(ctx: RuleContext) -> Finding | None:
    history = onj_diagnoses(ctx)
    if not history:
        return None
    active = active_onj(ctx)
    listed = "\n".join(f"- {common.fmt_condition(c)}" for c in (active or history))
    referral = common.dental_referral_suggestion(
        ctx, reason="Osteonecrosis of the jaw: dental / oral surgery assessment before denosumab"
    )
    if active:
        cancel = order_suggestions.cancel_draft_orders_suggestion(ctx, "Cancel the denosumab order while ONJ is active")
        return Finding(
            topic=TOPIC,
            indicator="critical",
            summary="Active osteonecrosis of the jaw: hold denosumab and involve the dental team",
            detail=(
                f"**Active osteonecrosis of the jaw:**\n{listed}\n\n"
                "Denosumab can cause and worsen ONJ. Hold this order while ONJ is active: manage it with a "
                "dentist or oral surgeon, and decide on further denosumab only after their assessment and a "
                "benefit-risk review."
            ),
            suggestions=tuple(s for s in (cancel, referral) if s is not None),
            selection_behavior="any",
        )
    return Finding(
        topic=TOPIC,
        indicator="warning",
        summary="History of osteonecrosis of the jaw: dental review before more denosumab",
        detail=(
            f"**Osteonecrosis of the jaw in the history (not active):**\n{listed}\n\n"
            "Restarting denosumab after ONJ carries a risk of recurrence. Confirm with the dental team that "
            "ONJ has healed, weigh benefit and risk, keep up oral hygiene and regular dental examinations, "
            "and avoid invasive dental work during treatment."
        ),
        suggestions=(referral,),
    )
