"""active-infection: a 60 mg denosumab dose during a serious infection (the Prolia label warns of
serious infections leading to hospitalization: skin, abdomen, urinary tract, ear, endocarditis).

When (card catalog v2): a denosumab order on the 60 mg regimen (the serious-infection warning is
the Prolia label's; a 120 mg order gets no card; an order whose regimen the record cannot tell is
treated as 60 mg unless the patient's history is on 120 mg), and an active serious-infection diagnosis (value set active-infection: urinary
tract infection, cellulitis/erysipelas, pneumonia, sepsis, infections needing hospital care; not
otitis media or the common cold) with onset (else recorded date) in the last
infection_lookback_days (60), or an infection treated over months (value set
long-course-infection: osteomyelitis, endocarditis, prosthetic joint infection) in the last
long_course_infection_lookback_days (180). Older diagnoses left active do not count.
Then: initiating (no denosumab dose in 12 months) - warning: consider deferring the first dose until
the infection is treated, suggests cancelling the draft; on therapy - info: weigh benefit and risk of
continuing. The card lists each infection with its status and dates.
Source: Prolia US PI, W&P Serious Infections; seed "Infection Assessment" (deferral at initiation is
expert opinion).
"""

from __future__ import annotations

from cds_service.cards import Finding
from cds_service.rules import common
from cds_service.rules.concepts import dose_history, order_suggestions, recency
from cds_service.rules.concepts.regimen import regimen_of
from cds_service.rules.context import RuleContext

TOPIC = "active-infection"
# Medications only tell initiation from therapy (warning vs info): without them the card still
# shows, as the more cautious warning, so they are not a need.
NEEDS = frozenset({"conditions"})

# Value set -> the look-back window (threshold name) its diagnoses count for.
INFECTION_WINDOWS = {
    "active-infection": "infection_lookback_days",
    "long-course-infection": "long_course_infection_lookback_days",
}


def evaluate(ctx: RuleContext) -> Finding | None:
    if not on_60mg_regimen(ctx):
        return None
    infections = current_infections(ctx)
    if not infections:
        return None
    initiating = dose_history.is_initiating(ctx)
    lines = "\n".join(f"- {common.fmt_condition_dated(c)}" for c in infections)
    windows = (
        f"onset in the last {common.fmt_number(ctx.threshold('infection_lookback_days'))} days, or "
        f"{common.fmt_number(ctx.threshold('long_course_infection_lookback_days'))} days for osteomyelitis, "
        "endocarditis and prosthetic joint infection"
    )
    if initiating:
        detail = (
            f"Serious infection on record ({windows}):\n\n{lines}\n\n"
            "Denosumab 60 mg may increase the risk of serious infections. This order starts therapy: "
            "**consider deferring the first dose until the infection is treated** (expert opinion). "
            "If it has resolved, mark the diagnosis resolved."
        )
        cancel = order_suggestions.cancel_draft_orders_suggestion(ctx, "Defer the first dose until the infection is treated")
        return Finding(
            topic=TOPIC,
            indicator="warning",
            summary="Serious infection: consider deferring the first denosumab dose",
            detail=detail,
            suggestions=(cancel,) if cancel else (),
        )
    detail = (
        f"Serious infection on record ({windows}):\n\n{lines}\n\n"
        "The patient is on denosumab 60 mg. For a serious infection, **weigh the benefit and risk of "
        "continuing** (Prolia label); if the infection has resolved, mark the diagnosis resolved."
    )
    return Finding(
        topic=TOPIC,
        indicator="info",
        summary="Serious infection on denosumab: weigh benefit and risk of continuing",
        detail=detail,
    )


def on_60mg_regimen(ctx: RuleContext) -> bool:
    """Any focused draft on the 60 mg regimen (its own, else the patient's history regimen), or of
    a regimen the record cannot tell (not shown to be 120 mg)."""
    return any((regimen_of(ctx, order) or dose_history.history_regimen(ctx)) != "120mg" for order in ctx.orders)


def current_infections(ctx: RuleContext):
    found = []
    for concept, window in INFECTION_WINDOWS.items():
        found += [c for c in recency.current_diagnoses(ctx, concept, window) if c not in found]
    return tuple(found)
