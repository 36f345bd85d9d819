"""overdue-dose: prevents rebound bone loss and multiple vertebral fractures (60 mg) and lost
protection from skeletal-related events (120 mg) when a denosumab dose comes late.

When: a denosumab order, or patient-view while therapy is active, and the last dose (dose-history
  precedence of `common.doses_given`: administrations, dispenses, statements, else completed
  orders) is older than the regimen's interval plus grace: 60 mg > 6 months + 4 weeks
  (regimen_60mg_interval_days + regimen_60mg_grace_days = 210 days); 120 mg > 4 weeks + 7 days
  (35 days). No dose on record (initiation) or no known regimen: no card.
  Regimen: that of the last dose (`common.regimen_of`: product, dose, text) and of the draft
  order(s) on an order hook, or of the active denosumab orders on patient-view; when they differ
  (a switch between 60 mg and 120 mg) the longest allowance is used, so a switch of regimen is
  never reported as lateness. When the last dose does not tell its regimen, the newest denosumab
  record that does (`common.history_regimen`) stands in.
  "While therapy is active" (patient-view) means: an active denosumab order or medication
  statement, or a last dose no older than interval + grace + one more interval of its regimen
  (60 mg: 392 days; 120 mg: 63 days), i.e. at most one dose missed — a lapse rather than a stop —
  unless the newest denosumab order or statement is "stopped" or a bisphosphonate has been given
  or ordered since the last dose. Otherwise the patient has stopped; for 60 mg the
  transition-needed card speaks then. Between 7 and 13 months after a 60 mg dose with no active
  order and no explicit stop both cards show: one says "give the late dose", the other "if
  stopping, give the bisphosphonate" — the two ways out of the same rebound.
Then: warning showing the last dose (product, date, record), the days since, the regimen's
  allowance and the date it ran out, and what to do: give the dose now and restart the schedule
  from it; for 60 mg ask about back pain and look for vertebral fractures once past 7 months, and
  never stop without a bisphosphonate; for 120 mg keep every 4 weeks. No suggestion: the action
  is the dose itself (the order being signed, or the active order on patient-view).
Source: Prolia label W&P "Multiple Vertebral Fractures Following Discontinuation" and D&A (missed
  dose: give as soon as possible, then every 6 months from that injection); seed "Rebound Bone
  Loss and Multiple Vertebral Fractures" and "Critical Clinical Pitfalls to Avoid" #1 and #4.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cds_service.cards import Finding
from cds_service.record.model import MedicationEntry
from cds_service.rules import common
from cds_service.rules.context import RuleContext

TOPIC = "overdue-dose"
NEEDS = frozenset({"medications"})


def evaluate(ctx: RuleContext) -> Finding | None:
    last = common.last_denosumab_dose(ctx)
    if last is None:
        return None
    regimen = regimen_judged(ctx, last)
    if regimen is None:
        return None
    if ctx.trigger == "patient-view" and not therapy_is_active(ctx, last, regimen):
        return None
    overdue_since = last.date + allowance(ctx, regimen)
    if ctx.as_of <= overdue_since:
        return None
    return overdue_finding(ctx, last, regimen, overdue_since)


# --- criteria ------------------------------------------------------------------------------------

def allowance(ctx: RuleContext, regimen: str) -> timedelta:
    """The regimen's interval plus grace: how long after a dose the next one is still on time."""
    interval, grace = common.REGIMEN_INTERVAL_AND_GRACE[regimen]
    return timedelta(days=ctx.threshold(interval) + ctx.threshold(grace))


def regimens_involved(ctx: RuleContext, last: MedicationEntry) -> set[str]:
    """The regimen of the last dose and of the orders at hand (drafts, or active orders)."""
    at_hand = ctx.orders if ctx.trigger == "denosumab-order" else active_denosumab(ctx)
    regimens = {common.regimen_of(ctx, last)} | {common.regimen_of(ctx, order) for order in at_hand}
    regimens.discard(None)
    if not regimens:
        regimens = {common.history_regimen(ctx)} - {None}
    return regimens


def regimen_judged(ctx: RuleContext, last: MedicationEntry) -> str | None:
    """The regimen whose allowance decides lateness: the most lenient of those involved."""
    return max(regimens_involved(ctx, last), key=lambda regimen: allowance(ctx, regimen), default=None)


def active_denosumab(ctx: RuleContext) -> tuple[MedicationEntry, ...]:
    return common.active_medications(ctx.record, common.DENOSUMAB)


def therapy_is_active(ctx: RuleContext, last: MedicationEntry, regimen: str) -> bool:
    """An active denosumab order or statement; else at most one dose missed since the last one,
    unless therapy was stopped on purpose or a bisphosphonate has followed it (transition done)."""
    if active_denosumab(ctx):
        return True
    if common.stopped_denosumab_record(ctx) is not None or common.bisphosphonates_since(ctx, last.date):
        return False
    interval, _ = common.REGIMEN_INTERVAL_AND_GRACE[regimen]
    return ctx.as_of <= last.date + allowance(ctx, regimen) + timedelta(days=ctx.threshold(interval))


# --- the card ------------------------------------------------------------------------------------

def overdue_finding(ctx: RuleContext, last: MedicationEntry, regimen: str, overdue_since: datetime) -> Finding:
    days = common.days_between(last.date, ctx.as_of)
    dose = "60 mg" if regimen == "60mg" else "120 mg"
    summary = f"Denosumab {dose} dose overdue: last dose {common.fmt_date(last.date)}, {days} days ago"
    return Finding(topic=TOPIC, indicator="warning", summary=summary, detail=_detail(ctx, last, regimen, overdue_since))


def _detail(ctx: RuleContext, last: MedicationEntry, regimen: str, overdue_since: datetime) -> str:
    interval, grace = common.REGIMEN_INTERVAL_AND_GRACE[regimen]
    days = common.days_between(last.date, ctx.as_of)
    text = (
        f"**Last denosumab dose: {common.fmt_medication(last)}** — {common.fmt_elapsed(days)} ago.\n\n"
        f"Regimen: {common.REGIMEN_WORDS[regimen]}. The next dose was due within "
        f"{common.fmt_number(ctx.threshold(interval))} days plus {common.fmt_number(ctx.threshold(grace))} days' "
        f"grace, i.e. by **{common.fmt_date(overdue_since)}**.\n\n"
    )
    active = active_denosumab(ctx)
    if ctx.trigger == "patient-view":
        if active:
            text += "Active denosumab order on record: " + "; ".join(
                f"{order.name} ({order.reference or order.source}, {order.status}, written {common.fmt_date(order.date)})"
                for order in active
            ) + " — schedule the injection.\n\n"
        else:
            text += "No active denosumab order on record.\n\n"
    if regimen == "60mg":
        text += (
            "**Give the dose as soon as possible**, then every 6 months from that injection. After a late or "
            "missed 60 mg dose, bone turnover rebounds: rapid bone loss and multiple vertebral fractures "
            "have been reported. Ask about new back pain and consider spine imaging for vertebral "
            "fractures. If denosumab is not to be continued, do not simply stop: give a bisphosphonate "
            f"(zoledronic acid {common.fmt_number(ctx.threshold('transition_zoledronic_acid_dose_mg'))} mg IV) instead."
        )
    else:
        text += (
            "**Give the dose now and keep to every 4 weeks**: for bone metastases never extend the "
            "dosing interval beyond 4 weeks — protection from skeletal-related events depends on "
            "consistent monthly dosing."
        )
    return text
