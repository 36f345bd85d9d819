"""transition-timing: prevents a bisphosphonate after denosumab given while denosumab still acts
(too early), after the rebound has begun (too late), or against the label's kidney and calcium limits.

When: a follow-on order that is a bisphosphonate, for a patient with a denosumab dose on record:
  - timing (info): only the first bisphosphonate after the last 60 mg dose (nothing given or
    ordered in between, `transition.bisphosphonates_since`), that dose at most 24 months old
    (therapy_active_max_days), the draft's moment outside 5-7 months from it
    (transition_window_start_days 152, transition_window_end_days 213);
  - safety (warning, whatever the timing, after either regimen): kidney function
    (`kidney.kidney_function_for_bisphosphonates`, use 1: Cockcroft-Gault creatinine clearance, else eGFR) below the drug's limit — zoledronic acid
    and alendronate < 35, risedronate and ibandronate < 30; zoledronic acid with acute kidney
    injury (onset within 90 days) or hypocalcemia (latest calcium low, or an active diagnosis);
    no kidney function result in 12 months (30 days for zoledronic acid).
Then: info or warning listing the last dose, the problems found and the 5-7 month window with its
  dates; suggests a serum creatinine when no kidney result is on file, else (too early) re-entering
  the order to start on the due date.
Source: ECTS 2021 (Tsourdi et al.): bisphosphonate about 6 months after the last injection; Reclast
  label (contraindicated with CrCl < 35 mL/min, acute renal impairment, hypocalcemia); Fosamax label
  (not recommended with CrCl < 35 mL/min); Actonel and Boniva labels (not recommended < 30 mL/min).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cds_service.cards import Absence, Action, Finding, Suggestion
from cds_service.cards.orders import medication_request
from cds_service.record.model import MedicationEntry
from cds_service.rules import common
from cds_service.rules.concepts import calcium, dose_history, medications, order_suggestions, transition
from cds_service.rules.concepts.kidney import egfr_function, kidney_function_for_bisphosphonates
from cds_service.rules.context import RuleContext

TOPIC = "transition-timing"
NEEDS = frozenset({"medications", "labs"})
TOO_EARLY, TOO_LATE = "too early", "too late"


def evaluate(ctx: RuleContext) -> Finding | None:
    orders = bisphosphonate_orders(ctx)
    last = dose_history.last_denosumab_dose(ctx)
    if not orders or last is None:
        return None
    timing = timing_problem(ctx, last)
    safety = safety_problems(ctx, orders)
    if timing is None and not safety:
        return None
    return timing_finding(ctx, last, orders, timing, safety)


# --- criteria ------------------------------------------------------------------------------------

# Per drug: the kidney function limit (thresholds) under which the label advises against it.
_RENAL_LIMIT = (
    ("zoledronic-acid", "egfr_zoledronic_acid_min"),
    ("alendronate", "egfr_alendronate_min"),
    ("risedronate", "egfr_oral_bisphosphonate_min"),
    ("ibandronate", "egfr_oral_bisphosphonate_min"),
)


def bisphosphonate_orders(ctx: RuleContext) -> tuple[MedicationEntry, ...]:
    return tuple(order for order in ctx.orders if medications.is_bisphosphonate(order))


def window(ctx: RuleContext, last) -> tuple[datetime, datetime]:
    """The 5-7 month window after the last dose in which the bisphosphonate should start."""
    return (
        last.date + timedelta(days=ctx.threshold("transition_window_start_days")),
        last.date + timedelta(days=ctx.threshold("transition_window_end_days")),
    )


def timing_problem(ctx: RuleContext, last) -> str | None:
    """'too early' / 'too late' for the first bisphosphonate after a 60 mg dose at most 24 months old."""
    if dose_history.history_regimen(ctx) != "60mg" or transition.bisphosphonates_since(ctx, last.date):
        return None
    if dose_history.calendar_days(last.date, ctx.as_of) > ctx.threshold("therapy_active_max_days"):
        return None
    start, end = window(ctx, last)
    moment = min(dose_history.draft_moment(ctx, o) for o in bisphosphonate_orders(ctx))
    if moment < start:
        return TOO_EARLY
    if moment > end:
        return TOO_LATE
    return None


def _concept_of(order: MedicationEntry, concept: str) -> bool:
    return concept in order.concepts or concept in order.name_concepts


RENAL_LIMIT, ACUTE_KIDNEY_INJURY, HYPOCALCEMIA, NO_KIDNEY_RESULT = "renal-limit", "aki", "hypocalcemia", "no-kidney-result"


@dataclass(frozen=True)
class SafetyProblem:
    order: MedicationEntry
    kind: str  # RENAL_LIMIT | ACUTE_KIDNEY_INJURY | HYPOCALCEMIA | NO_KIDNEY_RESULT
    text: str


def safety_problems(ctx: RuleContext, orders: tuple[MedicationEntry, ...]) -> list[SafetyProblem]:
    """The label's renal and calcium limits, per drug, whatever the timing."""
    problems: list[SafetyProblem] = []
    kidney = kidney_function_for_bisphosphonates(ctx)
    for order in orders:
        for concept, limit_name in _RENAL_LIMIT:
            if _concept_of(order, concept) and kidney is not None and kidney.is_below(ctx.threshold(limit_name)):
                problems.append(SafetyProblem(order, RENAL_LIMIT, (
                    f"**{order.name}** with {kidney.describe()}: below {common.fmt_number(ctx.threshold(limit_name))} "
                    "— the label advises against it at this kidney function."
                )))
        zoledronic = _concept_of(order, "zoledronic-acid")
        if zoledronic:
            since = ctx.days_before("acute_kidney_injury_recent_days")
            for aki in common.active_conditions(ctx, "acute-kidney-injury"):
                if (aki.onset or aki.recorded) and (aki.onset or aki.recorded) >= since:
                    problems.append(SafetyProblem(order, ACUTE_KIDNEY_INJURY, (
                        f"**{order.name}** with acute kidney injury: {common.fmt_condition_dated(aki)} (contraindicated)."
                    )))
            compared = calcium.compared_calcium(ctx)
            low = [compared] if compared is not None and compared.is_low else []
            if low or common.active_conditions(ctx, "hypocalcemia"):
                what = low[0].describe() if low else "an active hypocalcemia diagnosis"
                problems.append(SafetyProblem(order, HYPOCALCEMIA, (
                    f"**{order.name}** with hypocalcemia ({what}): correct calcium first (contraindicated)."
                )))
        lookback = "kidney_function_zoledronic_acid_lookback_days" if zoledronic else "egfr_lookback_days"
        if not transition.kidney_result_since(ctx, lookback):
            problems.append(SafetyProblem(order, NO_KIDNEY_RESULT, (
                f"**{order.name}**: no kidney function result since {common.fmt_date(ctx.days_before(lookback))}: "
                "check serum creatinine before giving it."
            )))
    return problems


# --- the card ------------------------------------------------------------------------------------

def timing_finding(ctx: RuleContext, last, orders, timing: str | None, safety: list[SafetyProblem]) -> Finding:
    days = common.days_between(last.date, ctx.as_of)
    if safety:
        summary = f"Bisphosphonate order: {len(safety)} safety problem{'s' if len(safety) > 1 else ''} (kidney function or calcium)"
    elif timing == TOO_EARLY:
        summary = f"Bisphosphonate {days} days after the last denosumab dose: too early (start about 6 months after)"
    else:
        summary = f"Bisphosphonate {days} days after the last denosumab dose: late, rebound may be under way"
    suggestions: list[Suggestion] = []
    if any(p.kind == NO_KIDNEY_RESULT for p in safety):
        suggestions.append(Suggestion(
            label="Order serum creatinine (eGFR)",
            actions=order_suggestions.lab_order_actions(ctx, "renal-function-order", reason="Kidney function before a bisphosphonate"),
            is_recommended=True,
        ))
    renal_plan = transition.renal_plan(ctx, egfr_function(ctx))  # the renal rule reads the latest eGFR
    over_limit = list({id(p.order): p.order for p in safety if p.kind == RENAL_LIMIT}.values())
    if over_limit and renal_plan in (transition.ORAL_BISPHOSPHONATE, transition.SPECIALIST_REFERRAL):
        way_out, _ = transition.renal_rule_suggestion(ctx, last.date, start=None)
        suggestions.append(Suggestion(
            label=f"Cancel the draft; {way_out.label[0].lower()}{way_out.label[1:]}",
            actions=order_suggestions.cancel_order_actions(over_limit) + way_out.actions,
            is_recommended=True,
        ))
    if timing == TOO_EARLY and not safety:
        suggestions.extend(reschedule_suggestions(ctx, orders, last))
    return Finding(
        topic=TOPIC,
        indicator="warning" if safety else "info",
        summary=summary,
        detail=_detail(ctx, last, orders, timing, safety),
        suggestions=tuple(suggestions),
        rests_on_absence=_absences(ctx, last, timing, safety),
    )


def _absences(ctx: RuleContext, last, timing: str | None, safety) -> tuple[Absence, ...]:
    """Timing rests on no bisphosphonate since the last dose; a missing kidney result on its absence."""
    absences = [transition.no_bisphosphonate_since(last.date)] if timing is not None else []
    for problem in safety:
        if problem.kind == NO_KIDNEY_RESULT:
            lookback = "kidney_function_zoledronic_acid_lookback_days" if _concept_of(problem.order, "zoledronic-acid") else "egfr_lookback_days"
            since = ctx.days_before(lookback)
            absences.append(Absence("labs", f"a kidney function result since {common.fmt_date(since)}", since))
    return tuple(dict.fromkeys(absences))


def _detail(ctx: RuleContext, last, orders, timing: str | None, safety: list[SafetyProblem]) -> str:
    days = common.days_between(last.date, ctx.as_of)
    start, end = window(ctx, last)
    ordered = ", ".join(f"**{order.name}**{medications.name_match_note(order)}" for order in orders)
    text = (
        f"Ordered now: {ordered}.\n\n"
        f"**Last denosumab dose: {dose_history.fmt_dose(last)}** — {common.fmt_elapsed(days)} ago.\n\n"
    )
    if safety:
        text += "Safety:\n\n" + "\n".join(f"- {p.text}" for p in safety) + "\n\n"
    if timing is not None:
        text += (
            f"After 60 mg denosumab the bisphosphonate should start 5-7 months after the last injection "
            f"(about 6 months, ECTS 2021): between **{common.fmt_date(start)}** and **{common.fmt_date(end)}**.\n\n"
        )
    if timing == TOO_EARLY:
        text += (
            "This is **too early**: denosumab is still acting. Start it on or about "
            f"**{common.fmt_date(transition.transition_due_date(ctx, last.date))}**."
        )
    elif timing == TOO_LATE:
        text += (
            "This is **late**: the rebound bone loss may be under way. Give the bisphosphonate now, ask about new "
            "back pain and consider spine imaging for vertebral fractures."
        )
    return text.rstrip()


def reschedule_suggestions(
    ctx: RuleContext, orders: tuple[MedicationEntry, ...], last: MedicationEntry
) -> list[Suggestion]:
    """For each draft with an id: cancel it and order the same product to start on the due date."""
    due = transition.transition_due_date(ctx, last.date).date().isoformat()
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
