"""osteonecrosis-of-jaw: denosumab ordered for a patient who has or had osteonecrosis of the jaw.

When (card catalog v2): a denosumab order, and an ONJ diagnosis —
  - active (active, recurrence, relapse) with onset (else recorded date) in the last
    onj_recent_onset_days (12 months), or undated → critical;
  - active but older ("ONJ on the problem list since <date>: verify; continuing therapy is a
    specialist benefit-risk decision (AAOMS 2022)") → warning;
  - history only (resolved, inactive, remission; any verification status but entered-in-error or
    refuted) → warning.
Then: the card shows each ONJ diagnosis with its status and dates and what to do; a new ONJ
  suggests cancelling the draft order; every card suggests a dental referral.
Source: Prolia and Xgeva US PI, W&P Osteonecrosis of the Jaw (dental or oral surgery care;
  consider discontinuing based on benefit-risk); AAOMS 2022 position paper on MRONJ.
"""

from __future__ import annotations

from cds_service.cards import Finding
from cds_service.record.model import ConditionEntry
from cds_service.rules import common
from cds_service.rules.concepts import order_suggestions, recency
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
    recent = recency.current_diagnoses(ctx, "osteonecrosis-of-jaw", "onj_recent_onset_days")
    listed = "\n".join(f"- {common.fmt_condition_dated(c)}" for c in (recent or active or history))
    referral = common.dental_referral_suggestion(
        ctx, reason="Osteonecrosis of the jaw: dental / oral surgery assessment before denosumab"
    )
    window = recency.window_in_words(ctx, "onj_recent_onset_days")
    if recent:
        cancel = order_suggestions.cancel_draft_orders_suggestion(ctx, "Cancel the denosumab order while ONJ is active")
        return Finding(
            topic=TOPIC,
            indicator="critical",
            summary=f"Osteonecrosis of the jaw in the last {window}: hold denosumab, involve dental team",
            detail=(
                f"**Active osteonecrosis of the jaw, onset in the last {window}:**\n{listed}\n\n"
                "Denosumab can cause and worsen ONJ. Hold this order while ONJ is active: manage it with a "
                "dentist or oral surgeon, and decide on further denosumab only after their assessment and a "
                "benefit-risk review."
            ),
            suggestions=tuple(s for s in (cancel, referral) if s is not None),
            selection_behavior="any",
        )
    if active:
        since = recency.fmt_since(active[0])
        return Finding(
            topic=TOPIC,
            indicator="warning",
            summary=f"ONJ on the problem list {since}: verify before more denosumab",
            detail=(
                f"**Osteonecrosis of the jaw, active on the problem list for over {window}:**\n{listed}\n\n"
                f"ONJ on the problem list {since}: **verify** it with the dental team and update the problem list. "
                "Continuing therapy is a specialist benefit-risk decision (AAOMS 2022); keep up oral hygiene and "
                "regular dental examinations, and avoid invasive dental work during treatment."
            ),
            suggestions=(referral,),
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
