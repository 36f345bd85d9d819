"""overdue-dose: prevents rebound bone loss and multiple vertebral fractures (60 mg) and lost
protection from skeletal-related events (120 mg) when a denosumab dose comes late.

When: the last dose (`dose_history.last_denosumab_dose`) is past the regimen's due date —
  60 mg due at regimen_60mg_interval_days (183), overdue after + regimen_60mg_grace_days
  (213 days: 6 months + 4 weeks); 120 mg overdue after regimen_120mg_interval_days +
  regimen_120mg_grace_days (35 days). Regimen: the draft's on an order hook, else the last
  dose's, else the history's (`dose_history.history_regimen`); a change is named.
  - Order hook (the draft is the late dose itself): only when overdue.
  - Patient-view: only while therapy is active (`dose_history.therapy_is_active`: last dose at
    most 24 months old, no explicit stop, no bisphosphonate since); 60 mg due or overdue; 120 mg
    overdue. Never on a response that carries transition-needed (that card speaks after an
    explicit stop or after 24 months, when therapy is not active).
Then: order hook — info "the dose is N days late"; for 60 mg, rebound may have begun: ask about
  new back pain, suggest a thoracolumbar spine X-ray (CPT). Patient-view — 60 mg due: info "due
  now: give the next dose, or if stopping, start the bisphosphonate now"; 60 mg overdue: warning
  with the rebound text; both with two suggestions, at most one chosen: the next denosumab dose,
  or the transition bisphosphonate by the renal rule (`transition.renal_plan`); 120 mg overdue:
  warning, order the next dose. With the override "dose given elsewhere" goes a suggestion to
  record the outside dose (a MedicationStatement, completed, for the clinician to date).
Source: Prolia label W&P "Multiple Vertebral Fractures Following Discontinuation" and D&A (missed
  dose: give as soon as possible, then every 6 months from that injection); ECTS 2021 (Tsourdi
  et al.); Xgeva label D&A (every 4 weeks).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cds_service.cards import Absence, Action, Finding, Suggestion
from cds_service.cards.orders import medication_request, medication_statement
from cds_service.rules import common
from cds_service.rules.concepts import dose_history, regimen, transition
from cds_service.rules.concepts.regimen import regimen_of
from cds_service.rules.concepts.dose_history import Dose
from cds_service.rules.context import RuleContext

TOPIC = "overdue-dose"
NEEDS = frozenset({"medications", "labs"})


def evaluate(ctx: RuleContext) -> Finding | None:
    last = dose_history.last_denosumab_dose(ctx)
    if last is None:
        return None
    judged = regimen_judged(ctx, last)
    if judged is None:
        return None
    due, overdue = due_dates(ctx, last, judged)
    if ctx.trigger == "patient-view":
        if not dose_history.therapy_is_active(ctx, last):
            return None
        if judged == "60mg" and is_due(last, ctx.as_of, due):
            return patient_view_finding(ctx, last, judged, due, overdue)
        if judged == "120mg" and is_overdue(last, ctx.as_of, overdue):
            return patient_view_finding(ctx, last, judged, due, overdue)
        return None
    if last.regimen and last.regimen != judged:
        return None  # a change of regimen is a new schedule, not a late dose (dose-too-soon names it)
    moment = max((dose_history.draft_moment(ctx, o) for o in ctx.orders), default=ctx.as_of)
    if not is_overdue(last, moment, overdue) or dose_history.calendar_days(last.date, moment) > ctx.threshold("therapy_active_max_days"):
        return None
    return late_dose_finding(ctx, last, judged, overdue, moment)


def is_due(last: Dose, moment: datetime, due: datetime) -> bool:
    return dose_history.calendar_days(last.date, moment) >= dose_history.calendar_days(last.date, due)


def is_overdue(last: Dose, moment: datetime, overdue: datetime) -> bool:
    return dose_history.calendar_days(last.date, moment) > dose_history.calendar_days(last.date, overdue)


def regimen_judged(ctx: RuleContext, last: Dose) -> str | None:
    if ctx.trigger == "denosumab-order":
        for order in ctx.orders:
            if regimen_of(ctx, order):
                return regimen_of(ctx, order)
    return last.regimen or dose_history.history_regimen(ctx)


def due_dates(ctx: RuleContext, last: Dose, judged: str) -> tuple[datetime, datetime]:
    interval, grace = regimen.REGIMEN_INTERVAL_AND_GRACE[judged]
    due = last.date + timedelta(days=ctx.threshold(interval))
    return due, due + timedelta(days=ctx.threshold(grace))


def _regimen_change(ctx: RuleContext, last: Dose, judged: str) -> str:
    if last.regimen and last.regimen != judged:
        return (
            f"Regimen change: the last dose was the {regimen.REGIMEN_WORDS[last.regimen]} regimen, this order is "
            f"{regimen.REGIMEN_WORDS[judged]}; intervals follow the new regimen.\n\n"
        )
    return ""


def late_dose_finding(ctx: RuleContext, last: Dose, judged: str, overdue: datetime, moment: datetime) -> Finding:
    late_by = dose_history.calendar_days(overdue, moment)
    since = dose_history.calendar_days(last.date, moment)
    text = (
        f"**Last denosumab dose: {dose_history.fmt_dose(last)}** — {common.fmt_elapsed(since)} before this dose.\n\n"
        + _regimen_change(ctx, last, judged)
        + f"Regimen {regimen.REGIMEN_WORDS[judged]}: the dose was overdue after {common.fmt_date(overdue)}; this "
        f"order gives it **{late_by} days late**. Continue {regimen.interval_in_words(ctx.threshold(regimen.REGIMEN_INTERVAL[judged]))} "
        "from this injection.\n\n"
    )
    suggestions: tuple[Suggestion, ...] = ()
    if judged == "60mg":
        text += (
            "After a late 60 mg dose bone turnover may already have rebounded: **ask about new back pain** and "
            "consider a thoracolumbar spine X-ray for vertebral fractures."
        )
        suggestions = (
            Suggestion(
                label="Order a thoracolumbar spine X-ray (vertebral fractures)",
                actions=(transition.imaging_order_action(
                    ctx, "spine-xray-order", reason="Late denosumab 60 mg dose: rebound vertebral fractures?"),),
            ),
        )
    else:
        text += "For bone metastases keep every 4 weeks: protection from skeletal-related events depends on it."
    return Finding(
        topic=TOPIC, indicator="info",
        summary=f"Denosumab {regimen.regimen_name(judged)} dose {late_by} days late: continue the schedule from this dose",
        detail=text, suggestions=suggestions, rests_on_absence=(no_dose_since(last),),
    )


def patient_view_finding(ctx: RuleContext, last: Dose, judged: str, due: datetime, overdue: datetime) -> Finding:
    days = dose_history.calendar_days(last.date, ctx.as_of)
    overdue_now = is_overdue(last, ctx.as_of, overdue)
    text = (
        f"**Last denosumab dose: {dose_history.fmt_dose(last)}** — {common.fmt_elapsed(days)} ago.\n\n"
        f"Regimen {regimen.REGIMEN_WORDS[judged]}: next dose due {common.fmt_date(due)}, overdue after "
        f"{common.fmt_date(overdue)}. No explicit stop and no bisphosphonate since the last dose.\n\n"
    )
    next_dose = next_dose_suggestion(ctx, last, judged)
    outside = outside_dose_suggestion(ctx, last)
    if judged == "120mg":
        text += "**Give the next dose now and keep to every 4 weeks** (skeletal-related events)."
        return Finding(
            topic=TOPIC, indicator="warning",
            summary=f"Denosumab 120 mg overdue: last dose {common.fmt_date(last.date)}, {days} days ago",
            detail=text, suggestions=(next_dose, outside), rests_on_absence=(no_dose_since(last),),
        )
    plan_suggestion, plan_text = transition_plan(ctx, last)
    if overdue_now:
        text += (
            "**Overdue: rebound bone loss may have begun** — rapid bone loss and multiple vertebral fractures "
            "have been reported after a late or missed 60 mg dose. Ask about new back pain. Either give the "
            "next dose now, or, if denosumab is to stop, start the bisphosphonate now.\n\n"
        )
        summary = f"Denosumab 60 mg overdue ({days} days): give the dose, or start the bisphosphonate"
    else:
        text += "**Due now: give the next dose, or if stopping, start the bisphosphonate now.**\n\n"
        summary = f"Denosumab 60 mg due now ({days} days since the last dose): dose, or bisphosphonate"
    text += plan_text
    return Finding(
        topic=TOPIC, indicator="warning" if overdue_now else "info", summary=summary, detail=text,
        suggestions=(next_dose, plan_suggestion, outside), selection_behavior="at-most-one",
        rests_on_absence=(
            no_dose_since(last), transition.no_bisphosphonate_since(last.date), *transition.renal_rule_absences(ctx),
        ),
    )


def no_dose_since(last: Dose) -> Absence:
    return Absence("medications", f"a denosumab dose after {common.fmt_date(last.date)}", last.date)


def next_dose_suggestion(ctx: RuleContext, last: Dose, judged: str) -> Suggestion:
    record = last.record
    dose = common.fmt_number(ctx.threshold(regimen.REGIMEN_DOSE_THRESHOLD[judged]))
    interval = regimen.interval_in_words(ctx.threshold(regimen.REGIMEN_INTERVAL[judged]))
    return Suggestion(
        label=f"Order the next denosumab dose ({dose} mg, then {interval})",
        actions=(
            Action(
                type="create",
                description=f"Order {record.name}: {dose} mg subcutaneously once",
                resource=medication_request(
                    codings=record.codings, text=record.name,
                    dosage_text=f"{dose} mg subcutaneously once, now; then {interval} from this injection",
                    timing={"repeat": {"count": 1}},
                    reason=f"Next denosumab dose (last dose {common.fmt_date(last.date)})",
                    patient_id=ctx.patient_id, encounter_id=ctx.encounter_id,
                ),
            ),
        ),
    )


def outside_dose_suggestion(ctx: RuleContext, last: Dose) -> Suggestion:
    """The override "dose given elsewhere": record that dose (a MedicationStatement the clinician
    dates), so the dose history knows it next time."""
    record = last.record
    return Suggestion(
        label="Record a dose given elsewhere (enter its date)",
        actions=(
            Action(
                type="create",
                description=f"Record {record.name} given elsewhere",
                resource=medication_statement(
                    codings=record.codings, text=record.name, patient_id=ctx.patient_id, status="completed",
                    note="Dose given elsewhere: enter the date it was given (effectiveDateTime) before saving.",
                ),
            ),
        ),
    )


def transition_plan(ctx: RuleContext, last: Dose) -> tuple[Suggestion, str]:
    """The bisphosphonate way out, by the renal rule (shared with transition-needed)."""
    return transition.renal_rule_suggestion(ctx, last.date, start=None)
