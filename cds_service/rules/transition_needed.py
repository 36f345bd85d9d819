"""transition-needed: prevents rebound bone loss and multiple vertebral fractures when denosumab
60 mg is stopped without a follow-on bisphosphonate.

When: patient-view, or a follow-on order that is not itself a bisphosphonate (a bisphosphonate
  draft in the request IS the transition: no card), for a patient whose regimen is 60 mg
  (`dose_history.history_regimen`), with no bisphosphonate given or ordered since the last dose
  (`transition.bisphosphonates_since`: records, active orders, other drafts of this call), and
  - an explicit stop (`dose_history.explicit_stop`) — or, on a follow-on order hook, a focused
    non-bisphosphonate follow-on order (teriparatide, romosozumab: the decision to leave
    denosumab) — with the last dose at most 24 months old (therapy_active_max_days): warning; or
  - whatever the stop, the last dose over 24 months and at most 5 years old
    (transition_reassess_max_days), no DXA (dxa-scan) and no osteoporosis therapy recorded since
    it: info, reassess fracture risk.
  Never on a patient-view response that carries overdue-dose: that card speaks while therapy is
  active (no explicit stop, last dose <= 24 months), this one only when it is not.
Then: warning — the last dose, the stop record, the transition due date (last dose + 6 months;
  "as soon as possible" once past), and one suggestion by the renal rule
  (`transition.renal_rule_suggestion`: eGFR >= 35 zoledronic acid 5 mg IV once; 30-34
  risedronate 35 mg weekly; < 30 no bisphosphonate, nephrology / CKD-MBD referral; no eGFR in
  12 months: serum creatinine and zoledronic acid once eGFR >= 35 is confirmed). Info — "stopped
  N years ago without a recorded transition: reassess fracture risk (DXA, vertebral fracture
  assessment)", suggesting a DXA (CPT). On a non-bisphosphonate follow-on order the detail says
  it does not replace the transition.
Source: ECTS 2021 position statement (Tsourdi et al., J Clin Endocrinol Metab 2021;106:264-281):
  alternative antiresorptive 6 months after the final injection; Prolia label W&P Multiple
  Vertebral Fractures Following Discontinuation; Reclast (CrCl < 35), Actonel (CrCl < 30) labels.
"""

from __future__ import annotations

from cds_service.cards import Absence, Finding, Suggestion
from cds_service.record.model import MedicationEntry
from cds_service.rules import common
from cds_service.rules.concepts import dose_history, medications, transition
from cds_service.rules.concepts.dose_history import Dose
from cds_service.rules.context import RuleContext

TOPIC = "transition-needed"
NEEDS = frozenset({"medications", "labs"})  # the DXA looked for is an Absence of "procedures"


def evaluate(ctx: RuleContext) -> Finding | None:
    if any(medications.is_bisphosphonate(order) for order in ctx.orders):
        return None
    last = dose_history.last_denosumab_dose(ctx)
    if last is None or dose_history.history_regimen(ctx) != "60mg":
        return None
    if transition.bisphosphonates_since(ctx, last.date):
        return None
    age = dose_history.calendar_days(last.date, ctx.as_of)
    if age > ctx.threshold("transition_reassess_max_days"):
        return None
    if age > ctx.threshold("therapy_active_max_days"):
        if transition.osteoporosis_therapy_since(ctx, last.date) or transition.dxa_since(ctx, last.date):
            return None
        return reassess_finding(ctx, last)
    stop = dose_history.explicit_stop(ctx, last) or non_bisphosphonate_follow_on(ctx)
    if stop is None:
        return None
    return stopped_finding(ctx, last, stop)


def non_bisphosphonate_follow_on(ctx: RuleContext) -> MedicationEntry | None:
    """A focused follow-on order that is not a bisphosphonate (teriparatide, romosozumab...): the
    decision to leave denosumab, so the transition is needed as after an explicit stop."""
    return next((o for o in ctx.orders if medications.is_follow_on_agent(o) and not medications.is_bisphosphonate(o)), None)


def _follow_on_note(ctx: RuleContext) -> str:
    focus = [order for order in ctx.orders if medications.is_follow_on_agent(order)]
    if not focus:
        return ""
    return (
        f"The order in this session ({', '.join(order.name for order in focus)}) is not a bisphosphonate and "
        "**does not replace the transition** after denosumab.\n\n"
    )


def stopped_finding(ctx: RuleContext, last: Dose, stop: MedicationEntry) -> Finding:
    days = common.days_between(last.date, ctx.as_of)
    due = transition.transition_due_date(ctx, last.date)
    start = due if due > ctx.as_of else None
    suggestion, renal_text = transition.renal_rule_suggestion(ctx, last.date, start=start)
    when = f"due on or about **{common.fmt_date(due)}**" if start else f"was due {common.fmt_date(due)}: **as soon as possible**"
    detail = (
        f"**Last denosumab 60 mg dose: {dose_history.fmt_dose(last)}** — {common.fmt_elapsed(days)} ago.\n\n"
        f"{'Denosumab was stopped' if not stop.is_draft_order else 'Leaving denosumab for another agent'}: "
        f"{medications.fmt_medication(stop)}. **No bisphosphonate given or ordered since "
        f"{common.fmt_date(last.date)}.**\n\n" + _follow_on_note(ctx)
        + "Stopping denosumab without a follow-on bisphosphonate causes rebound bone loss and multiple vertebral "
        f"fractures. Start the bisphosphonate about 6 months after the last injection: {when}.\n\n"
    )
    if days > ctx.threshold("transition_window_end_days"):
        detail += (
            "More than 7 months since the last dose: the rebound may be under way. Ask about new back pain and "
            "consider spine imaging for vertebral fractures.\n\n"
        )
    detail += renal_text
    return Finding(
        topic=TOPIC, indicator="warning",
        summary=f"Denosumab 60 mg stopped without a bisphosphonate: transition {'due ' + common.fmt_date(due) if start else 'as soon as possible'}",
        detail=detail, suggestions=(suggestion,),
        rests_on_absence=(transition.no_bisphosphonate_since(last.date), *transition.renal_rule_absences(ctx)),
    )


def reassess_finding(ctx: RuleContext, last: Dose) -> Finding:
    years = (ctx.as_of - last.date).days / 365.25
    detail = (
        f"**Last denosumab 60 mg dose: {dose_history.fmt_dose(last)}** — about {years:.0f} years ago.\n\n"
        f"No bisphosphonate, other osteoporosis therapy or DXA is recorded since {common.fmt_date(last.date)}.\n\n"
        + _follow_on_note(ctx)
        + f"Stopped about {years:.0f} years ago without a recorded transition: the rebound window has passed; "
        "**reassess fracture risk** (DXA, vertebral fracture assessment) and decide on treatment from it, "
        "rather than an urgent bisphosphonate."
    )
    return Finding(
        topic=TOPIC, indicator="info",
        summary=f"Denosumab stopped about {years:.0f} years ago without a recorded transition: reassess fracture risk",
        detail=detail,
        suggestions=(Suggestion(
            label="Order a DXA bone density study",
            actions=(transition.imaging_order_action(
                ctx, "dxa-order", reason="Fracture risk after stopping denosumab without a transition"),),
        ),),
        rests_on_absence=(
            Absence("medications", f"osteoporosis therapy given or ordered since {common.fmt_date(last.date)}", last.date),
            Absence("procedures", f"a DXA since {common.fmt_date(last.date)}", last.date),
        ),
    )
