"""dosing-regimen: prevents denosumab given too often (60 mg), too seldom (120 mg), at a dose that
is not the product's, or a giant cell tumour of bone treated without its loading doses.

When: a denosumab order whose regimen is known (from the product, else the dose, else the text —
`regimen.regimen_of`) and whose written dose or interval does not fit it:
- intervals compared in days: 60 mg at an interval under dosing_regimen_60mg_min_interval_days
  (150); 120 mg at an interval over dosing_regimen_120mg_max_interval_days (35: "monthly" and
  "every 4 weeks" do not fire, every 6 weeks does); intervals are shown in words ("every 6
  months", "every 4 weeks", "daily"), never "every 183 days";
- a dose in mg that is not the dose of the product ordered (e.g. 120 mg of a 60 mg/mL product);
- (info) giant cell tumour of bone or hypercalcemia of malignancy at initiation without the day 8
  and day 15 loading doses.
  Loading doses count as ordered when this order, another draft of this call or an active
  denosumab order is a loading-dose order (`indications.is_loading_dose_order`: a weekly schedule, or
  dosage text naming both loading days or "loading").
The interval comes from dosageInstruction.timing (period/periodUnit with frequency, or a code such
as Q6M); a once-only order (repeat.count 1) has no interval. An order still being written
(order-select: no dose, no timing, no dosage text yet) gets no card about what it does not say.
Then: warning (info when only the loading doses are missing) showing the order's dose and interval
as written against the regimen's; suggests cancelling the draft to re-enter it, or (GCTB) the
loading-dose order.
Source: Prolia label D&A; Xgeva label D&A; seed "Giant Cell Tumor of Bone", "Critical Clinical
Pitfalls to Avoid" #4.
"""

from __future__ import annotations

import math

from cds_service.cards import Absence, Action, Finding, Suggestion
from cds_service.cards.orders import medication_request
from cds_service.record.model import MedicationEntry
from cds_service.rules import common
from cds_service.rules.concepts import dose_history, indications, medications, order_suggestions, regimen as regimens
from cds_service.rules.context import RuleContext

TOPIC = "dosing-regimen"
NEEDS = frozenset({"medications", "conditions"})

REGIMEN_INTERVAL = {"60mg": "regimen_60mg_interval_days", "120mg": "regimen_120mg_interval_days"}


def evaluate(ctx: RuleContext) -> Finding | None:
    problems: list[str] = []
    missing_loading: list[MedicationEntry] = []
    loading_check = LoadingDoseCheck(ctx)
    for order in ctx.orders:
        problems += dose_problems(ctx, order) + interval_problems(ctx, order)
        if loading_check.needs_loading_doses(order):
            missing_loading.append(order)
    if problems:
        return regimen_finding(ctx, problems, missing_loading)
    if missing_loading:
        return loading_dose_finding(ctx, missing_loading)
    return None


# --- criteria ------------------------------------------------------------------------------------

def dose_problems(ctx: RuleContext, order: MedicationEntry) -> list[str]:
    """The written dose is not the dose of the product's regimen."""
    regimen = regimens.product_regimen(order)
    if regimen is None or order.dose_mg is None or regimens.regimen_of_dose(ctx, order.dose_mg) == regimen:
        return []
    return [
        f"**{order.name}**: dose **{common.fmt_number(order.dose_mg)} mg** written, but this product is "
        f"given as {regimen_text(ctx, regimen)}."
    ]


def interval_problems(ctx: RuleContext, order: MedicationEntry) -> list[str]:
    regimen = regimens.regimen_of(ctx, order)
    days = interval_days(order)
    if regimen is None or days is None:
        return []
    if regimen == "60mg" and is_more_often_than_every_6_months(ctx, days):
        return [
            f"**{order.name}**: {interval_text(order)} — 60 mg is given once every 6 months "
            f"(not under {common.fmt_number(ctx.threshold('dosing_regimen_60mg_min_interval_days'))} days); more frequent doses "
            "add exposure without benefit."
        ]
    if regimen == "120mg" and is_longer_than_every_4_weeks(ctx, days):
        return [
            f"**{order.name}**: {interval_text(order)} — 120 mg is given every 4 weeks "
            f"(not over {common.fmt_number(ctx.threshold('dosing_regimen_120mg_max_interval_days'))} days); never extend the "
            "interval beyond 4 weeks for bone metastases (efficacy depends on consistent dosing)."
        ]
    return []


def interval_days(order: MedicationEntry) -> float | None:
    """Days between doses as the order's timing says; None when unwritten or a single dose."""
    timing = order.timing
    if timing is None or timing.period_days is None or timing.count == 1:
        return None
    if not 0 < timing.period_days < math.inf:  # nonsense such as 1e308 years
        return None
    return timing.period_days


def is_more_often_than_every_6_months(ctx: RuleContext, days: float) -> bool:
    return days < ctx.threshold("dosing_regimen_60mg_min_interval_days")


def is_longer_than_every_4_weeks(ctx: RuleContext, days: float) -> bool:
    return days > ctx.threshold("dosing_regimen_120mg_max_interval_days")


class LoadingDoseCheck:
    """Whether a 120 mg initiation lacks its loading doses. What does not depend on the order (the
    dose history, a loading-dose order anywhere) is worked out once per call, so that many drafts
    cost linear time."""

    def __init__(self, ctx: RuleContext):
        self.ctx = ctx
        self._initiating: bool | None = None
        self._loading_ordered: bool | None = None

    def needs_loading_doses(self, order: MedicationEntry) -> bool:
        """GCTB or hypercalcemia of malignancy, initiating, the dosage written, no loading-dose order."""
        ctx = self.ctx
        if regimens.regimen_of(ctx, order) == "60mg" or not has_written_dosage(order):
            return False
        if not indications.has_loading_dose_indication(ctx, order):
            return False
        if self._initiating is None:
            self._initiating = dose_history.is_initiating(ctx)
        if not self._initiating:
            return False
        if self._loading_ordered is None:
            candidates = (*(d for d in ctx.record.draft_orders if medications.is_denosumab(d)),
                          *indications.active_denosumab_orders(ctx))
            self._loading_ordered = any(indications.is_loading_dose_order(ctx, c) for c in candidates)
        return not self._loading_ordered


def has_written_dosage(order: MedicationEntry) -> bool:
    return order.timing is not None or bool(order.dosage_text)


# --- wording -------------------------------------------------------------------------------------

def regimen_text(ctx: RuleContext, regimen: str) -> str:
    dose = common.fmt_number(ctx.threshold(regimens.REGIMEN_DOSE_THRESHOLD[regimen]))
    return f"{dose} mg every {'6 months' if regimen == '60mg' else '4 weeks'}"


def interval_text(order: MedicationEntry) -> str:
    """'written every 91 days (Q3M)'."""
    timing = order.timing
    written = timing.code or timing.text
    text = f"written **{regimens.interval_in_words(timing.period_days)}**"
    return text + (f" ({written})" if written else "")


def loading_days_text(ctx: RuleContext) -> str:
    second = common.fmt_number(ctx.threshold("gctb_loading_second_dose_day"))
    third = common.fmt_number(ctx.threshold("gctb_loading_third_dose_day"))
    return f"day {second} and day {third}"


def cancel_suggestions(orders) -> tuple[Suggestion, ...]:
    return tuple(
        suggestion
        for order in orders
        if (suggestion := order_suggestions.cancel_orders_suggestion(
            (order,), "Cancel this order to re-enter it at the regimen's dose and interval"))
    )


def regimen_finding(ctx: RuleContext, problems: list[str], missing_loading: list[MedicationEntry]) -> Finding:
    lines = "\n".join(f"- {p}" for p in problems)
    detail = (
        f"The order does not fit its denosumab regimen:\n\n{lines}\n\n"
        f"Regimens: {regimen_text(ctx, '60mg')} (osteoporosis, treatment-induced bone loss); "
        f"{regimen_text(ctx, '120mg')} (bone metastases, myeloma, giant cell tumour of bone, "
        "hypercalcemia of malignancy).\n\n**Correct the dose or interval before signing.**"
    )
    if missing_loading:
        detail += (
            f"\n\nGiant cell tumour of bone at initiation: also order the loading doses on "
            f"{loading_days_text(ctx)} of the first month."
        )
    return Finding(
        topic=TOPIC,
        indicator="warning",
        summary="Denosumab dose or interval does not fit its regimen",
        detail=detail,
        suggestions=cancel_suggestions(o for o in ctx.orders if dose_problems(ctx, o) or interval_problems(ctx, o)),
    )


def loading_dose_finding(ctx: RuleContext, orders: list[MedicationEntry]) -> Finding:
    order = orders[0]
    evidence = indications.indication_evidence(ctx, order, indications.LOADING_DOSE_INDICATIONS)
    dose = common.fmt_number(ctx.threshold("regimen_120mg_dose_mg"))
    days = loading_days_text(ctx)
    last = dose_history.last_denosumab_dose(ctx)
    history = (
        f"last denosumab dose {common.fmt_date(last.date)}" if last is not None
        else "no earlier denosumab dose on record"
    )
    written = order.dosage_text or (order.timing and (order.timing.code or order.timing.text)) or "no loading schedule"
    detail = (
        "Giant cell tumour of bone and hypercalcemia of malignancy are treated with "
        f"{dose} mg every 4 weeks **plus {dose} mg on {days} of the first month** (loading doses).\n\n"
        f"- Indication: {'; '.join(e.description for e in evidence)}\n"
        f"- Initiating ({history})\n"
        f"- This order: {order.name} — {written}; no loading-dose order found\n\n"
        f"**Add the loading doses on {days}.**"
    )
    suggestion = Suggestion(
        label=f"Order the loading doses ({dose} mg on {days})",
        actions=(
            Action(
                type="create",
                description=f"{order.name} {dose} mg subcutaneously on {days} (loading doses)",
                resource=medication_request(
                    codings=order.codings,
                    text=order.name,
                    dosage_text=f"{dose} mg subcutaneously on {days} of the first month (loading doses)",
                    patient_id=ctx.patient_id,
                    encounter_id=ctx.encounter_id,
                    reason=f"Loading doses of denosumab {dose} mg ({'; '.join(e.description for e in evidence)})",
                ),
            ),
        ),
    )
    return Finding(
        topic=TOPIC,
        indicator="info",
        summary=f"Denosumab 120 mg initiation: loading doses on {days} not ordered",
        detail=detail,
        suggestions=(suggestion,),
        # Initiation and "no loading-dose order" are both things not found in the medication history.
        rests_on_absence=(
            Absence("medications", "a denosumab dose in the last 12 months (initiation)",
                    ctx.days_before("initiation_no_dose_lookback_days")),
            Absence("medications", "a loading-dose order of the 120 mg regimen"),
        ),
    )
