"""active-infection: prevents starting denosumab during an active infection (it may increase the
risk of serious infections: skin (cellulitis, erysipelas), urinary tract, abdominal, ear,
endocarditis).

When: a denosumab order and an infection diagnosis that is clinically active (clinicalStatus
active/recurrence/relapse, not entered-in-error or refuted; resolved or abated ones do not count):
urinary tract infection, cellulitis/erysipelas or another serious infection (value set
active-infection).
Then: warning listing each infection with its status and dates: resolve it before the dose (or
close the diagnosis if it has resolved); suggests deferring the order.
Source: seed "Mandatory Pre-Treatment Requirements — Infection Assessment"; Prolia label W&P
Serious Infections.
"""

from __future__ import annotations

from cds_service.cards import Finding
from cds_service.rules import common
from cds_service.rules.concepts import order_suggestions
from cds_service.rules.context import RuleContext

TOPIC = "active-infection"
NEEDS = frozenset({"conditions"})


def evaluate(ctx: RuleContext) -> Finding | None:
    infections = common.active_conditions(ctx, "active-infection")
    if not infections:
        return None
    lines = "\n".join(f"- {common.fmt_condition_dated(c)}" for c in infections)
    detail = (
        f"Active infection on record:\n\n{lines}\n\n"
        "Denosumab may increase the risk of serious infections. **Ensure complete clinical resolution "
        "before the dose**; if the infection has already resolved, mark the diagnosis resolved."
    )
    cancel = order_suggestions.cancel_draft_orders_suggestion(ctx, "Defer denosumab until the infection has resolved")
    return Finding(
        topic=TOPIC,
        indicator="warning",
        summary="Active infection: resolve it before giving denosumab",
        detail=detail,
        suggestions=(cancel,) if cancel else (),
    )

