"""dose-too-soon: prevents a second denosumab dose days or weeks after the last one (EHRs order
denosumab one dose at a time, so an active-order duplicate check never sees it).

When: a denosumab order whose moment (`dose_history.draft_moment`: boundsPeriod.start,
  timing.event, validityPeriod.start, else the call) is too close to the dose before it — the
  last dose given (`dose_history.last_denosumab_dose`), or for the second and later of several
  drafts in one request, the draft before it (the drafts are read as a schedule, in moment order):
  60 mg regimen under dose_too_soon_60mg_min_days (150 days, 5 months); 120 mg under
  dose_too_soon_120mg_min_days (21 days). The regimen is the draft's (product, dose, text).
  Exception: 120 mg loading doses for giant cell tumour of bone or hypercalcemia of malignancy —
  within loading_course_window_days (35) of the course start (first 120 mg dose after 12 weeks
  or more without one), doses loading_dose_min_gap_days (6) or more apart get no card, nor does
  a loading-dose order (days 8 and 15 written in it). Drafts for the same day as the draft before
  them are duplicate-denosumab's concern, not a schedule.
Then: critical when under dose_too_soon_60mg_critical_days (4 weeks, 60 mg) or
  dose_too_soon_120mg_critical_days (6 days, 120 mg) — never when the dose before is a dispense
  with no administration (the card asks whether this order is for that dispensed syringe); else
  warning. Detail: the dose before (record, date), the days between, when the next dose is due;
  suggests cancelling the draft.
Source: Prolia label D&A 2.1 (60 mg every 6 months); Xgeva label D&A 2.1-2.3 (120 mg every 4
  weeks; GCTB and hypercalcemia of malignancy: additional doses on days 8 and 15).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cds_service.cards import Finding
from cds_service.record.model import MedicationEntry
from cds_service.rules import common
from cds_service.rules.concepts import dose_history, indications, medications, order_suggestions, regimen
from cds_service.rules.concepts.regimen import regimen_of
from cds_service.rules.context import RuleContext

TOPIC = "dose-too-soon"
NEEDS = frozenset({"medications"})

_LIMITS = {
    "60mg": ("dose_too_soon_60mg_min_days", "dose_too_soon_60mg_critical_days"),
    "120mg": ("dose_too_soon_120mg_min_days", "dose_too_soon_120mg_critical_days"),
}


@dataclass(frozen=True)
class TooSoon:
    order: MedicationEntry
    moment: datetime
    previous_date: datetime
    previous: str  # the dose before, in words
    regimen: str
    critical: bool
    dispense_only: bool
    previous_regimen: str | None = None


def evaluate(ctx: RuleContext) -> Finding | None:
    findings = too_soon_orders(ctx)
    if not findings:
        return None
    return too_soon_finding(ctx, findings)


class Course120:
    """The 120 mg course the doses so far belong to: its start (the first 120 mg dose after
    loading_course_gap_days or more without one) and its last dose. Doses are added in time order,
    so a request with many drafts is read in one pass."""

    def __init__(self, ctx: RuleContext, dates):
        self.gap = timedelta(days=ctx.threshold("loading_course_gap_days"))
        self.start: datetime | None = None
        self.last: datetime | None = None
        for date in dates:
            self.add(date)

    def start_if_added(self, moment: datetime) -> datetime:
        return moment if self.last is None or moment - self.last >= self.gap else self.start

    def add(self, moment: datetime) -> None:
        self.start, self.last = self.start_if_added(moment), moment


def too_soon_orders(ctx: RuleContext) -> list[TooSoon]:
    """Each focused draft against the dose before it (the last dose given, or the draft before)."""
    last = dose_history.last_denosumab_dose(ctx)
    doses = dose_history.denosumab_doses(ctx, ctx.days_before("initiation_no_dose_lookback_days")) if last else ()
    course = Course120(ctx, sorted(d.date for d in doses if d.regimen != "60mg"))
    drafts = sorted(
        (d for d in ctx.record.draft_orders if medications.is_denosumab(d)),
        key=lambda d: dose_history.draft_moment(ctx, d),
    )
    focused = {id(o) for o in ctx.orders}
    previous_date = last.date if last else None
    previous_text = dose_history.fmt_dose(last) if last else None
    previous_dispense_only = last.is_dispense_only if last else False
    previous_regimen = last.regimen if last else None
    previous_is_draft = False
    fallback_regimen = dose_history.history_regimen(ctx)
    loading_indication = bool(drafts) and indications.has_loading_dose_indication(ctx, drafts[0])
    found = []
    for draft in drafts:
        moment = dose_history.draft_moment(ctx, draft)
        draft_regimen = regimen_of(ctx, draft) or fallback_regimen
        if previous_is_draft and dose_history.calendar_days(previous_date, moment) < 1:
            continue  # drafts for the same day: duplicate-denosumab's concern (or a loading-dose order beside)
        if draft_regimen == "120mg" and indications.is_loading_dose_order(ctx, draft) and loading_indication:
            continue  # the loading-dose order itself (days 8 and 15): the schedule it writes is the label's
        if previous_date is not None and draft_regimen in _LIMITS and id(draft) in focused:
            problem = _judge(ctx, moment, draft_regimen, previous_date, course, loading_indication)
            if problem is not None:
                found.append(TooSoon(draft, moment, previous_date, previous_text, draft_regimen,
                                     problem and not previous_dispense_only, previous_dispense_only, previous_regimen))
        previous_date, previous_dispense_only, previous_is_draft = moment, False, True
        previous_regimen = draft_regimen
        previous_text = f"the draft order {draft.name} in this request, for {common.fmt_date(moment)}"
        if draft_regimen == "120mg":
            course.add(moment)
    return found


def _judge(ctx, moment, draft_regimen, previous_date, course: Course120, loading_indication: bool) -> bool | None:
    """None: not too soon; True: under the critical limit; False: too soon (warning)."""
    minimum, critical = _LIMITS[draft_regimen]
    gap = dose_history.calendar_days(previous_date, moment)
    if gap >= ctx.threshold(minimum):
        return None
    if draft_regimen == "120mg" and loading_indication:
        if indications.is_expected_loading_dose(ctx, course.start_if_added(moment), previous_date, moment):
            return None
    return gap < ctx.threshold(critical)


def too_soon_finding(ctx: RuleContext, found: list[TooSoon]) -> Finding:
    critical = any(f.critical for f in found)
    first = found[0]
    days = dose_history.calendar_days(first.previous_date, first.moment)
    dose = regimen.regimen_name(first.regimen)
    interval = regimen.interval_in_words(ctx.threshold(regimen.REGIMEN_INTERVAL[first.regimen]))
    lines = []
    for item in found:
        minimum = ctx.threshold(_LIMITS[item.regimen][0])
        due = item.previous_date + timedelta(days=ctx.threshold(regimen.REGIMEN_INTERVAL[item.regimen]))
        when = "now" if item.moment == ctx.as_of else f"for {common.fmt_date(item.moment)}"
        line = (
            f"- **{item.order.name}**{medications.name_match_note(item.order)} ({when}): **{dose_history.calendar_days(item.previous_date, item.moment)} days** after "
            f"{item.previous} — the {regimen.regimen_name(item.regimen)} regimen is given "
            f"{regimen.interval_in_words(ctx.threshold(regimen.REGIMEN_INTERVAL[item.regimen]))}; "
            f"not before {common.fmt_number(minimum)} days. Next dose due about **{common.fmt_date(due)}**."
        )
        if item.dispense_only:
            line += (
                " The last dose on record is a **dispense with no administration recorded**: is this order "
                "for that dispensed syringe? If it was given, record the administration and cancel this order."
            )
        if item.previous_regimen and item.previous_regimen != item.regimen:
            line += (
                f" Regimen change: the dose before was {regimen.REGIMEN_WORDS[item.previous_regimen]}, this order is "
                f"{regimen.REGIMEN_WORDS[item.regimen]}; the interval follows this order's regimen."
            )
        lines.append(line)
    detail = (
        "This denosumab order comes too soon after the dose before it:\n\n" + "\n".join(lines) + "\n\n"
        "A second dose this early adds exposure (hypocalcemia, osteonecrosis of the jaw) without benefit. "
        "**Cancel the draft order**, unless the recorded dose was not given."
    )
    summary = f"Denosumab {dose} ordered {days} days after the last dose (given {interval})"
    suggestion = order_suggestions.cancel_orders_suggestion(tuple(f.order for f in found), "Cancel the draft denosumab order")
    return Finding(
        topic=TOPIC,
        indicator="critical" if critical else "warning",
        summary=summary,
        detail=detail,
        suggestions=(suggestion,) if suggestion else (),
    )
