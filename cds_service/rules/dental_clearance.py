"""dental-clearance: denosumab started or continued without dental care (osteonecrosis of the jaw).

When: a denosumab order, and
  - initiating (no denosumab dose in 12 months) with no dental examination in the last 6 months
    (warning), or
  - an invasive dental procedure (extraction, implant, oral surgery) in the last 14 days: the jaw
    needs 2-4 weeks to heal before the injection (warning), or
  - on therapy, and the last dental examination is over 12 months old or not on file (info).
  A dental examination is a completed oral-evaluation procedure or a dental-examination
  encounter diagnosis; only completed procedures count.
Then: the card shows the last dental examination, the recent invasive procedure and the
  denosumab dose history it used, says what to do, and suggests a dental referral.
Source: card catalog topic dental-clearance; seed "Mandatory Pre-Treatment Requirements —
  Dental Evaluation" and "Critical Clinical Pitfalls" 2; Prolia/Xgeva W&P (ONJ: oral exam and
  preventive dentistry before treatment).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cds_service.cards import Absence, Finding
from cds_service.record.model import ProcedureEntry
from cds_service.rules import common
from cds_service.rules.context import RuleContext

TOPIC = "dental-clearance"
NEEDS = frozenset({"medications", "procedures", "conditions"})


@dataclass(frozen=True)
class DentalExam:
    date: datetime
    description: str


def last_dental_exam(ctx: RuleContext) -> DentalExam | None:
    """The newest dental examination up to the call: a procedure, or an encounter diagnosis
    ("encounter for dental examination") for EHRs that record the visit only that way."""
    newest = next(common.completed_procedures(ctx, "dental-examination"), None)
    exams = [DentalExam(newest.performed, newest.name)] if newest is not None else []
    for condition in ctx.record.conditions_of("dental-examination"):
        when = condition.onset or condition.recorded
        if when is not None and when <= ctx.as_of and condition.verification_status not in common.EXCLUDED_VERIFICATION_STATUSES:
            exams.append(DentalExam(when, condition.name))
    return max(exams, key=lambda exam: exam.date, default=None)


def has_dental_exam_since(ctx: RuleContext, since: datetime) -> bool:
    last = last_dental_exam(ctx)
    return last is not None and last.date >= since


def recent_invasive_dental_procedures(ctx: RuleContext) -> tuple[ProcedureEntry, ...]:
    return tuple(common.completed_procedures(
        ctx, "invasive-dental-procedure", ctx.days_before("invasive_dental_healing_days")
    ))


def evaluate(ctx: RuleContext) -> Finding | None:
    initiating = common.is_initiating(ctx)
    invasive = recent_invasive_dental_procedures(ctx)
    no_exam_before_start = initiating and not has_dental_exam_since(
        ctx, ctx.days_before("dental_exam_initiation_lookback_days")
    )
    exam_overdue_on_therapy = not initiating and not has_dental_exam_since(
        ctx, ctx.days_before("dental_exam_on_therapy_max_age_days")
    )
    if not (invasive or no_exam_before_start or exam_overdue_on_therapy):
        return None

    last = last_dental_exam(ctx)
    if invasive:
        latest = invasive[0]
        when = common.fmt_date(latest.performed)
        summary = f"{latest.name} on {when}: let the jaw heal before denosumab (ONJ risk)"
    elif no_exam_before_start:
        summary = "Starting denosumab without a recent dental examination: dental evaluation first (ONJ risk)"
    else:
        summary = "Dental examination overdue on denosumab: arrange a dental check-up (ONJ risk)"
    return Finding(
        topic=TOPIC,
        indicator="warning" if invasive or no_exam_before_start else "info",
        summary=summary,
        detail=_detail(ctx, initiating, last, invasive, no_exam_before_start, exam_overdue_on_therapy),
        suggestions=(
            common.dental_referral_suggestion(ctx, reason="Dental evaluation for denosumab therapy (osteonecrosis of the jaw risk)"),
        ),
        rests_on_absence=() if invasive else tuple(
            Absence(category, check.format(common.fmt_date(ctx.days_before(window))), ctx.days_before(window))
            for category, check, window in (
                ("procedures", "a dental examination since {}",
                 "dental_exam_initiation_lookback_days" if initiating else "dental_exam_on_therapy_max_age_days"),
                ("medications", "a denosumab dose since {} (whether this order starts therapy)", "initiation_no_dose_lookback_days"),
            )[: 2 if initiating else 1]
        ),
    )


def _therapy_line(ctx: RuleContext, initiating: bool) -> str:
    ordered = ", ".join(order.name for order in ctx.orders)
    last_dose = common.last_denosumab_dose(ctx)
    if last_dose is None:
        return f"**Denosumab:** no earlier dose on file — this order ({ordered}) starts therapy."
    when = f"last dose {common.fmt_date(last_dose.date)} ({last_dose.name}, {last_dose.source})"
    if initiating:
        since = common.fmt_date(ctx.days_before("initiation_no_dose_lookback_days"))
        return f"**Denosumab:** {when} — no dose since {since}, so this order restarts therapy."
    return f"**Denosumab:** {when} — on therapy."


def _detail(ctx, initiating, last, invasive, no_exam_before_start, exam_overdue_on_therapy) -> str:
    exam = (
        f"**Last dental examination:** {common.fmt_date(last.date)} ({last.description})"
        if last else "**Last dental examination:** none on file"
    )
    lines = [_therapy_line(ctx, initiating), exam]
    todo = []
    if invasive:
        healing = common.fmt_number(ctx.threshold("invasive_dental_healing_days"))
        lines.append(
            f"**Invasive dental procedure in the last {healing} days:** "
            + "; ".join(f"{p.name} on {common.fmt_date(p.performed)}" for p in invasive)
        )
        todo.append(
            "Give denosumab only once the site has healed (the seed advises waiting 2-4 weeks after invasive "
            "dental work); confirm healing with the dentist."
        )
    if no_exam_before_start:
        since = common.fmt_date(ctx.days_before("dental_exam_initiation_lookback_days"))
        todo.append(
            f"No dental examination since {since}: complete a dental evaluation and any invasive dental "
            "work (extractions, implants) before the first injection."
        )
    if exam_overdue_on_therapy:
        since = common.fmt_date(ctx.days_before("dental_exam_on_therapy_max_age_days"))
        todo.append(
            f"No dental examination since {since}: regular dental examinations (every 6-12 months) and good "
            "oral hygiene are advised throughout therapy."
        )
    return "\n\n".join(lines) + "\n\n" + " ".join(todo)
