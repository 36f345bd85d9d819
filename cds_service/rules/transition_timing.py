"""transition-timing: prevents a bisphosphonate after denosumab given while denosumab still acts
(too early), after the rebound has begun (too late), or as zoledronic acid to a patient whose
kidneys cannot take it.

When: a follow-on order that is a bisphosphonate (the focused draft orders), for a patient with a
  denosumab dose on record (`common.last_denosumab_dose`):
  - timing (info): the regimen was 60 mg (`common.history_regimen`), no bisphosphonate has been
    given or ordered since that last dose (otherwise the transition already happened and this
    order continues it, e.g. the yearly zoledronic acid), and the order comes outside 5-7 months
    after the last dose: earlier than transition_window_start_days (152) — denosumab still acting —
    or later than transition_window_end_days (213) — rebound under way;
  - renal (warning): the order is zoledronic acid and the latest eGFR within 12 months is below
    egfr_zoledronic_acid_min (35) — after either regimen.
  Patients without any denosumab dose get no card: this is the service's denosumab transition check,
  not a general bisphosphonate check.
Then: info (warning when the renal problem is present) showing the last dose, the days since and the
  5-7 month window with its dates, the eGFR when it matters. Suggestions: too early — re-enter the
  order to start on the due date (last dose + 6 months); zoledronic acid with eGFR < 35 — replace it
  with an oral bisphosphonate (delete the draft, order risedronate 35 mg weekly). Too late: no
  suggestion (the order should go ahead now); look for vertebral fractures.
Source: ECTS 2021 position on stopping denosumab (bisphosphonate about 6 months after the last
  injection); Reclast label (contraindicated with CrCl < 35 mL/min).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cds_service.cards import Action, Finding, Suggestion
from cds_service.cards.orders import medication_request
from cds_service.record.model import LabResult, MedicationEntry
from cds_service.rules import common
from cds_service.rules.concepts import order_suggestions
from cds_service.rules.context import RuleContext

TOPIC = "transition-timing"
NEEDS = frozenset({"medications", "labs"})
TOO_EARLY, TOO_LATE = "too early", "too late"


def evaluate(ctx: RuleContext) -> Finding | None:
    orders = bisphosphonate_orders(ctx)
    last = common.last_denosumab_dose(ctx)
    if not orders or last is None:
        return None
    timing = timing_problem(ctx, last)
    egfr, zoledronic_acid_allowed = common.egfr_allows_zoledronic_acid(ctx)
    zoledronic_acid_orders = tuple(order for order in orders if order.is_a("zoledronic-acid"))
    renal_problem = bool(zoledronic_acid_orders) and zoledronic_acid_allowed is False
    if timing is None and not renal_problem:
        return None
    return timing_finding(ctx, last, orders, timing, egfr if renal_problem else None, zoledronic_acid_orders)


# --- criteria ------------------------------------------------------------------------------------

def bisphosphonate_orders(ctx: RuleContext) -> tuple[MedicationEntry, ...]:
    return tuple(order for order in ctx.orders if order.concepts & common.BISPHOSPHONATE)


def window(ctx: RuleContext, last: MedicationEntry) -> tuple[datetime, datetime]:
    """The 5-7 month window after the last dose in which the bisphosphonate should start."""
    return (
        last.date + timedelta(days=ctx.threshold("transition_window_start_days")),
        last.date + timedelta(days=ctx.threshold("transition_window_end_days")),
    )


def timing_problem(ctx: RuleContext, last: MedicationEntry) -> str | None:
    """'too early' / 'too late' for a first bisphosphonate after the 60 mg regimen, else None."""
    if common.history_regimen(ctx) != "60mg" or common.bisphosphonates_since(ctx, last.date):
        return None
    start, end = window(ctx, last)
    if ctx.as_of < start:
        return TOO_EARLY
    if ctx.as_of > end:
        return TOO_LATE
    return None


# --- the card ------------------------------------------------------------------------------------

def timing_finding(
    ctx: RuleContext, last: MedicationEntry, orders: tuple[MedicationEntry, ...], timing: str | None,
    low_egfr: LabResult | None, zoledronic_acid_orders: tuple[MedicationEntry, ...],
) -> Finding:
    days = common.days_between(last.date, ctx.as_of)
    limit = common.fmt_number(ctx.threshold("egfr_zoledronic_acid_min"))
    if low_egfr is not None:
        summary = f"Zoledronic acid ordered with eGFR {common.fmt_number(low_egfr.value)} (below {limit}): use an oral bisphosphonate"
    elif timing == TOO_EARLY:
        summary = f"Bisphosphonate {days} days after the last denosumab dose: too early (start about 6 months after)"
    else:
        summary = f"Bisphosphonate {days} days after the last denosumab dose: late, rebound may be under way"
    suggestions: list[Suggestion] = []
    if low_egfr is not None:
        suggestions.append(replace_with_oral_suggestion(ctx, zoledronic_acid_orders, last))
    elif timing == TOO_EARLY:
        suggestions.extend(reschedule_suggestions(ctx, orders, last))
    return Finding(
        topic=TOPIC,
        indicator="warning" if low_egfr is not None else "info",
        summary=summary,
        detail=_detail(ctx, last, orders, timing, low_egfr),
        suggestions=tuple(suggestions),
    )


def _detail(
    ctx: RuleContext, last: MedicationEntry, orders: tuple[MedicationEntry, ...], timing: str | None,
    low_egfr: LabResult | None,
) -> str:
    days = common.days_between(last.date, ctx.as_of)
    start, end = window(ctx, last)
    ordered = ", ".join(f"**{order.name}**" for order in orders)
    text = (
        f"Ordered now: {ordered}.\n\n"
        f"**Last denosumab dose: {common.fmt_medication(last)}** — {common.fmt_elapsed(days)} ago.\n\n"
    )
    if timing is not None:
        text += (
            f"After 60 mg denosumab the bisphosphonate should start 5-7 months after the last injection "
            f"(about 6 months, ECTS 2021): between **{common.fmt_date(start)}** and **{common.fmt_date(end)}**.\n\n"
        )
    if timing == TOO_EARLY:
        text += (
            f"This is **too early**: denosumab is still acting, and a bisphosphonate now does little to "
            f"prevent the rebound that starts when it wears off. Start it on or about "
            f"**{common.fmt_date(common.transition_due_date(ctx, last))}**.\n\n"
        )
    elif timing == TOO_LATE:
        text += (
            "This is **late**: the rebound bone loss may be under way. Give the bisphosphonate now without "
            "further delay, ask about new back pain and consider spine imaging for vertebral fractures.\n\n"
        )
    if low_egfr is not None:
        limit = common.fmt_number(ctx.threshold("egfr_zoledronic_acid_min"))
        text += (
            f"**Latest eGFR {common.fmt_result(low_egfr)}: below {limit}.** Zoledronic acid is contraindicated "
            f"with creatinine clearance < {limit} mL/min: use an oral bisphosphonate instead (check the "
            "product's own renal limits, and consider specialist advice in advanced CKD)."
        )
    elif any(order.is_a("zoledronic-acid") for order in orders):
        egfr, _ = common.egfr_allows_zoledronic_acid(ctx)
        if egfr is None:
            since = common.fmt_date(ctx.days_before("egfr_lookback_days"))
            text += f"No eGFR since {since}: check renal function and calcium before the zoledronic acid infusion."
    return text


def replace_with_oral_suggestion(
    ctx: RuleContext, zoledronic_acid_orders: tuple[MedicationEntry, ...], last: MedicationEntry
) -> Suggestion:
    reason = f"Transition after denosumab (last dose {common.fmt_date(last.date)}); zoledronic acid contraindicated (eGFR < {common.fmt_number(ctx.threshold('egfr_zoledronic_acid_min'))})"
    cancel = order_suggestions.cancel_order_actions(zoledronic_acid_orders)
    product = order_suggestions.order_codings(ctx, "transition-oral-bisphosphonate-order")[0]
    return Suggestion(
        label=f"Replace zoledronic acid with {product.display}, once weekly",
        actions=cancel + (common.oral_bisphosphonate_order_action(ctx, reason=reason),),
        is_recommended=True,
    )


def reschedule_suggestions(
    ctx: RuleContext, orders: tuple[MedicationEntry, ...], last: MedicationEntry
) -> list[Suggestion]:
    """For each draft with an id: cancel it and order the same product to start on the due date."""
    due = common.transition_due_date(ctx, last).date().isoformat()
    suggestions = []
    for order in orders:
        if not order.reference:
            continue
        suggestions.append(
            Suggestion(
                label=f"Re-order {order.name} to start on {due}",
                actions=(
                    *order_suggestions.cancel_order_actions((order,)),
                    Action(
                        type="create",
                        description=f"Order {order.name} starting {due}",
                        resource=medication_request(
                            codings=order.codings, text=order.name,
                            dosage_text=f"{order.dosage_text or 'As ordered'}; start on {due} (6 months after the last denosumab dose)",
                            timing={"repeat": {"boundsPeriod": {"start": due}}},
                            reason="Transition after denosumab 60 mg: start about 6 months after the last injection",
                            patient_id=ctx.patient_id, encounter_id=ctx.encounter_id,
                        ),
                    ),
                ),
            )
        )
    return suggestions
