"""hypocalcemia-risk: denosumab in a patient predisposed to severe hypocalcemia, without the
precautions the labels ask for.

When: a denosumab order, and any risk factor — advanced CKD (kidney function use 2: for the
  60 mg regimen the latest eGFR of 12 months below 30 mL/min/1.73 m²; for 120 mg creatinine
  clearance or eGFR below 30; dialysis: a dialysis procedure in 90 days or an active
  dialysis-dependence diagnosis with no kidney transplant after it; a CKD stage 4/5/ESRD code
  that no later eGFR ≥ 30 of the last 12 months contradicts), active CKD-MBD or renal
  osteodystrophy, an active calcimimetic (cinacalcet, etelcalcetide), active hypoparathyroidism
  (postprocedural E89.2 included: thyroid or parathyroid surgery), active malabsorption (short
  bowel syndrome and postsurgical malabsorption included: small-intestine resection). Procedure
  codes of those surgeries are not in the verified terminology extracts, so the surgery itself is
  read only through these diagnoses.
Then: critical when advanced CKD comes together with CKD-MBD or a calcimimetic, else warning;
  the detail lists each factor with its data.
  - 60 mg with advanced CKD: at initiation the boxed-warning steps ("before starting": evaluate
    CKD-MBD — intact PTH, calcium, 25-OH and 1,25-(OH)2 vitamin D, suggesting only the tests
    without a result in 12 months; CKD-MBD expert supervision); at every dose the post-dose
    calcium as one-click orders: a ServiceRequest weekly × 4 from about day 7
    (occurrenceTiming) and a second monthly × 5.
  - 120 mg with advanced CKD: weekly × 4 at initiation, on therapy one calcium 7–14 days after
    the dose; the text cites the Xgeva label, not the Prolia boxed warning.
  - Any other risk factor: calcium (with albumin), phosphate and magnesium 10–14 days after the
    dose (occurrencePeriod).
Source: card catalog v2, topic hypocalcemia-risk; Prolia boxed warning (19 Jan 2024) and W&P 5.1;
  Xgeva W&P Hypocalcemia (CrCl < 30 mL/min or dialysis; monitor especially in the first weeks);
  KDIGO 2017 CKD-MBD guideline update (DOI 10.1016/j.kisu.2017.04.001).
"""

from __future__ import annotations

from datetime import timedelta

from cds_service.cards import Finding, Suggestion
from cds_service.rules import common
from cds_service.rules.concepts import dose_history, kidney, labs, medications, order_suggestions
from cds_service.rules.concepts.regimen import regimen_of
from cds_service.rules.context import RuleContext

TOPIC = "hypocalcemia-risk"
NEEDS = frozenset({"labs", "conditions", "procedures", "medications"})
CALCIMIMETIC = frozenset({"calcimimetic"})
# The CKD-MBD evaluation the boxed warning asks for before starting, in the order it names them.
CKD_MBD_WORKUP = (("pth", "intact PTH"), ("calcium-total", "serum calcium"),
                  ("vitamin-d-25oh", "25-OH vitamin D"), ("vitamin-d-1-25oh", "1,25-(OH)2 vitamin D"))


def ckd_mbd_evidence(ctx: RuleContext) -> tuple[str, ...]:
    return tuple(f"CKD-MBD: {common.fmt_condition(c)}" for c in common.active_conditions(ctx, "ckd-mbd"))


def calcimimetic_evidence(ctx: RuleContext) -> tuple[str, ...]:
    return tuple(
        f"Calcimimetic: {m.name} (active {'order' if m.source == 'MedicationRequest' else 'medication'}"
        f"{', since ' + common.fmt_date(m.date) if m.date else ''})"
        for m in medications.active_medications(ctx.record, CALCIMIMETIC)
    )


def other_predisposition_evidence(ctx: RuleContext) -> tuple[str, ...]:
    """Hypoparathyroidism and malabsorption (label: patients predisposed to hypocalcemia)."""
    return tuple(
        f"{label}: {common.fmt_condition(c)}"
        for concept, label in (("hypoparathyroidism", "Hypoparathyroidism"), ("malabsorption", "Malabsorption"))
        for c in common.active_conditions(ctx, concept)
    )


def order_regimen(ctx: RuleContext) -> str | None:
    """The regimen of the denosumab order(s) of this call ('60mg', '120mg'), None when unknown."""
    return next((regimen for order in ctx.orders if (regimen := regimen_of(ctx, order))), None)


def evaluate(ctx: RuleContext) -> Finding | None:
    regimen = order_regimen(ctx)
    advanced_ckd = kidney.advanced_ckd_evidence(ctx, regimen)
    ckd_mbd, calcimimetic = ckd_mbd_evidence(ctx), calcimimetic_evidence(ctx)
    others = other_predisposition_evidence(ctx)
    factors = advanced_ckd + ckd_mbd + calcimimetic + others
    if not factors:
        return None
    critical = bool(advanced_ckd) and bool(ckd_mbd or calcimimetic)
    initiating = dose_history.is_initiating(ctx)
    detail = "**Hypocalcemia risk factors found:**\n" + "\n".join(f"- {line}" for line in factors)
    if advanced_ckd and regimen == "120mg":
        steps, suggestions = _advanced_ckd_120mg(ctx, initiating)
    elif advanced_ckd:  # 60 mg, or a regimen not known: the boxed warning's steps, the safer side
        steps, suggestions = _advanced_ckd_60mg(ctx, initiating)
    else:
        steps, suggestions = _predisposed(ctx)
    if critical:
        with_what = " and ".join(name for name, found in (("CKD-MBD", ckd_mbd), ("a calcimimetic", calcimimetic)) if found)
        summary = f"Advanced CKD with {with_what}: high risk of severe hypocalcemia on denosumab"
    elif advanced_ckd:
        summary = "Advanced CKD: greater risk of severe hypocalcemia on denosumab"
    else:
        summary = f"Predisposed to hypocalcemia: check calcium, phosphate and magnesium {_days(ctx)} after the dose"
    return Finding(
        topic=TOPIC,
        indicator="critical" if critical else "warning",
        summary=summary,
        detail=detail + "\n\n" + steps,
        suggestions=tuple(s for s in suggestions if s is not None),
        selection_behavior="any",
    )


# --- post-dose orders ------------------------------------------------------------------------------

def _date_after_dose(ctx: RuleContext, days: float) -> str:
    """The day `days` after the dose: the draft's moment (the date it says it will be given, else
    the call) of the first denosumab draft, so a series for a dose scheduled next week starts
    after that dose."""
    dose_day = min((dose_history.draft_moment(ctx, order) for order in ctx.orders), default=ctx.as_of)
    return (dose_day + timedelta(days=days)).date().isoformat()


def weekly_series(ctx: RuleContext) -> dict:
    """occurrenceTiming: serum calcium weekly × 4 from about day 7 after the dose."""
    return {"occurrenceTiming": {"repeat": {
        "boundsPeriod": {"start": _date_after_dose(ctx, ctx.threshold("post_dose_calcium_weekly_first_day"))},
        "count": int(ctx.threshold("post_dose_calcium_weekly_count")),
        "frequency": 1, "period": 1, "periodUnit": "wk",
    }}}


def monthly_series(ctx: RuleContext) -> dict:
    """occurrenceTiming: serum calcium monthly × 5, from one month after the last weekly draw."""
    last_weekly = ctx.threshold("post_dose_calcium_weekly_first_day") + ctx.threshold(
        "calcium_monitoring_advanced_ckd_weekly_interval_days") * (ctx.threshold("post_dose_calcium_weekly_count") - 1)
    start = last_weekly + ctx.threshold("calcium_monitoring_advanced_ckd_monthly_interval_days")
    return {"occurrenceTiming": {"repeat": {
        "boundsPeriod": {"start": _date_after_dose(ctx, start)},
        "count": int(ctx.threshold("post_dose_calcium_monthly_count")),
        "frequency": 1, "period": 1, "periodUnit": "mo",
    }}}


def _window(ctx: RuleContext, first: str, last: str) -> dict:
    return {"occurrencePeriod": {
        "start": _date_after_dose(ctx, ctx.threshold(first)), "end": _date_after_dose(ctx, ctx.threshold(last)),
    }}


def _series_suggestion(ctx: RuleContext, *, monthly: bool, reason: str) -> Suggestion:
    weekly_count = common.fmt_number(ctx.threshold("post_dose_calcium_weekly_count"))
    actions = order_suggestions.lab_order_actions(
        ctx, "post-dose-calcium-order", reason=reason, occurrence=weekly_series(ctx),
        note=f"Weekly for {weekly_count} weeks after the denosumab dose.",
    )
    label = f"Order post-dose serum calcium weekly × {weekly_count}"
    if monthly:
        monthly_count = common.fmt_number(ctx.threshold("post_dose_calcium_monthly_count"))
        actions += order_suggestions.lab_order_actions(
            ctx, "post-dose-calcium-order", reason=reason, occurrence=monthly_series(ctx),
            note=f"Monthly for {monthly_count} months, after the weekly draws.",
        )
        label += f", then monthly × {monthly_count}"
    return Suggestion(label=label, actions=actions, is_recommended=True)


def _latest_value(ctx: RuleContext, analyte: str) -> str:
    latest = labs.latest_result(ctx, (analyte,))
    return common.fmt_result(latest) if latest else "none on file"


def _advanced_ckd_60mg(ctx: RuleContext, initiating: bool) -> tuple[str, list]:
    reason = "Post-dose calcium monitoring in advanced CKD (Prolia boxed warning)"
    weekly = common.fmt_number(ctx.threshold("post_dose_calcium_weekly_count"))
    monthly = common.fmt_number(ctx.threshold("post_dose_calcium_monthly_count"))
    text = (
        "**Advanced chronic kidney disease (Prolia boxed warning, 19 Jan 2024):** severe hypocalcemia, "
        "including hospitalization and deaths, has followed denosumab; CKD-MBD markedly increases the risk. "
        "Treatment should be supervised by a provider with expertise in diagnosing and managing CKD-MBD.\n"
    )
    suggestions: list = []
    if initiating:
        workup = "\n".join(f"  - {label}: {_latest_value(ctx, analyte)}" for analyte, label in CKD_MBD_WORKUP)
        text += f"- Before starting, evaluate for CKD-MBD (latest values):\n{workup}\n"
        suggestions.append(order_suggestions.lab_order_suggestion(
            "Order the CKD-MBD tests not done in the last 12 months",
            order_suggestions.lab_order_actions(
                ctx, "ckd-mbd-evaluation-order", reason="CKD-MBD evaluation before starting denosumab in advanced CKD",
                lookback_threshold="ckd_mbd_test_lookback_days",
            ),
        ))
    text += (
        f"- After this dose, monitor serum calcium weekly for the first month ({weekly} draws from about day "
        f"{common.fmt_number(ctx.threshold('post_dose_calcium_weekly_first_day'))}), then monthly ({monthly} draws); "
        "keep calcium up with adequate calcium and activated vitamin D."
    )
    suggestions.insert(0, _series_suggestion(ctx, monthly=True, reason=reason))
    return text, suggestions


def _advanced_ckd_120mg(ctx: RuleContext, initiating: bool) -> tuple[str, list]:
    reason = "Post-dose calcium monitoring in severe renal impairment (Xgeva label)"
    text = (
        "**Severe renal impairment (Xgeva label, W&P Hypocalcemia):** patients with creatinine clearance "
        "below 30 mL/min or on dialysis are at greater risk of severe hypocalcemia; monitor calcium, especially "
        "in the first weeks, and give calcium, magnesium and vitamin D as necessary.\n"
    )
    if initiating:
        weekly = common.fmt_number(ctx.threshold("post_dose_calcium_weekly_count"))
        text += f"- First dose: serum calcium weekly × {weekly} from about day 7."
        return text, [_series_suggestion(ctx, monthly=False, reason=reason)]
    first = common.fmt_number(ctx.threshold("post_dose_calcium_120mg_min_days"))
    last = common.fmt_number(ctx.threshold("post_dose_calcium_120mg_max_days"))
    text += f"- After this dose: serum calcium {first}-{last} days after it."
    actions = order_suggestions.lab_order_actions(
        ctx, "post-dose-calcium-order", reason=reason,
        occurrence=_window(ctx, "post_dose_calcium_120mg_min_days", "post_dose_calcium_120mg_max_days"),
        note=f"Draw {first}-{last} days after the denosumab dose.",
    )
    return text, [Suggestion(label=f"Order serum calcium {first}-{last} days after the dose", actions=actions,
                             is_recommended=True)]


def _days(ctx: RuleContext) -> str:
    first = common.fmt_number(ctx.threshold("calcium_check_after_dose_min_days"))
    last = common.fmt_number(ctx.threshold("calcium_check_after_dose_max_days"))
    return f"{first}-{last} days"


def _predisposed(ctx: RuleContext) -> tuple[str, list]:
    text = (
        "Patients predisposed to hypocalcemia and mineral disturbances need adequate calcium and vitamin D "
        f"supplementation, and serum calcium, phosphorus and magnesium checked {_days(ctx)} after the "
        "denosumab injection."
    )
    actions = order_suggestions.lab_order_actions(
        ctx, "post-dose-mineral-check-order",
        reason="Mineral check after denosumab in a patient predisposed to hypocalcemia",
        occurrence=_window(ctx, "calcium_check_after_dose_min_days", "calcium_check_after_dose_max_days"),
        note=f"Draw {_days(ctx)} after the denosumab injection.",
    )
    return text, [Suggestion(label=f"Order calcium, phosphate and magnesium for {_days(ctx)} after the dose",
                             actions=actions, is_recommended=True)]
