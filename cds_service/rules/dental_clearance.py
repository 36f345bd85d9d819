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
  denosumab dose history it used, says what to do, and suggests a dental evaluation referral
  (SNOMED CT 103697008). The no-examination branches rest on absences (no dental examination in
  the window; at initiation also no denosumab dose in 12 months), the invasive-procedure branch on
  what was found.
Source: Prolia and Xgeva US PI, W&P Osteonecrosis of the Jaw (oral examination and preventive
  dentistry before treatment); AAOMS 2022 (start once the extraction site has mucosalised, about
  14-21 days); seed "Mandatory Pre-Treatment Requirements — Dental Evaluation" (wait 2-4 weeks;
  dental examinations every 6-12 months).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cds_service.cards import Absence, Finding
from cds_service.record.model import ProcedureEntry
from cds_service.rules import common
from cds_service.rules.concepts import dose_history, recency
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
        ctx, "invasive-dental-procedure", recency.window_start_day(ctx, "invasive_dental_healing_days")
    ))


def evaluate(ctx: RuleContext) -> Finding | None:
    initiating = dose_history.is_initiating(ctx)
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
        rests_on_absence=() if invasive else _absences(ctx, no_exam_before_start),
    )


def _absences(ctx: RuleContext, initiating: bool) -> tuple[Absence, ...]:
    """What the no-examination card concludes from data not found (a dental examination is a
    procedure or an encounter diagnosis; initiation is the absence of a dose in 12 months)."""
    window = "dental_exam_initiation_lookback_days" if initiating else "dental_exam_on_therapy_max_age_days"
    months = recency.window_in_words(ctx, window)
    since = ctx.days_before(window)
    found = (
        Absence("procedures", f"a dental examination in the last {months}", since),
        Absence("conditions", f"a dental examination visit (encounter diagnosis) in the last {months}", since),
    )
    if initiating:
        found += (Absence("medications", "a denosumab dose in the last 12 months (initiation)",
                          ctx.days_before("initiation_no_dose_lookback_days")),)
    return found


def _therapy_line(ctx: RuleContext, initiating: bool) -> str:
    ordered = ", ".join(order.name for order in ctx.orders)
    last_dose = dose_history.last_denosumab_dose(ctx)
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
            "Give denosumab only once the site has healed: AAOMS 2022 advises starting once the site has "
            "mucosalised (about 14-21 days; the seed says 2-4 weeks). Confirm healing with the dentist."
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
