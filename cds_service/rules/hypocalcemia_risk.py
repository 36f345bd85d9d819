"""hypocalcemia-risk: denosumab in a patient predisposed to severe hypocalcemia, without the
precautions the label asks for.

When: a denosumab order, and any risk factor — latest eGFR (12 months) < 30 mL/min/1.73 m²,
  dialysis dependence (active diagnosis, or dialysis sessions in the last 90 days), an active
  CKD stage 4/5/ESRD diagnosis, active CKD-MBD or renal osteodystrophy, an active calcimimetic
  (cinacalcet, etelcalcetide), active hypoparathyroidism, active malabsorption.
Then: critical when advanced CKD (the first three) comes together with CKD-MBD or a
  calcimimetic, else warning. The card lists each factor with its data. In advanced CKD it gives
  the boxed-warning steps (evaluate CKD-MBD with intact PTH, calcium, 25-OH and 1,25-(OH)2
  vitamin D, showing the latest values; supervision by a CKD-MBD expert; calcium weekly for the
  first month after the dose, then monthly) and suggests ordering that evaluation; otherwise it
  asks for calcium, phosphate and magnesium 10–14 days after the injection and suggests them.
Source: card catalog topic hypocalcemia-risk; Prolia boxed warning (19 Jan 2024) and W&P 5.1;
  seed "Hypocalcemia" and "Renal Impairment".
"""

from __future__ import annotations

from cds_service.cards import Finding, Suggestion
from cds_service.rules import common
from cds_service.rules.concepts import medications
from cds_service.rules.context import RuleContext

TOPIC = "hypocalcemia-risk"
NEEDS = frozenset({"labs", "conditions", "procedures", "medications"})
CALCIMIMETIC = frozenset({"calcimimetic"})
# Workup the boxed warning asks for before starting in advanced CKD, in the order it names them.
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


def evaluate(ctx: RuleContext) -> Finding | None:
    advanced_ckd = common.advanced_ckd_evidence(ctx)
    compounding = ckd_mbd_evidence(ctx) + calcimimetic_evidence(ctx)
    others = other_predisposition_evidence(ctx)
    factors = advanced_ckd + compounding + others
    if not factors:
        return None
    critical = bool(advanced_ckd) and bool(compounding)
    if critical:
        with_what = " and ".join(
            name for name, found in (("CKD-MBD", ckd_mbd_evidence(ctx)), ("a calcimimetic", calcimimetic_evidence(ctx))) if found
        )
        summary = f"Advanced CKD with {with_what}: high risk of severe hypocalcemia on denosumab"
    elif advanced_ckd:
        summary = "Advanced CKD: greater risk of severe hypocalcemia on denosumab (boxed warning)"
    else:
        summary = f"Predisposed to hypocalcemia: check calcium, phosphate and magnesium {_post_dose_days(ctx)} after the dose"
    detail = "**Hypocalcemia risk factors found:**\n" + "\n".join(f"- {line}" for line in factors)
    if advanced_ckd:
        detail += "\n\n" + _advanced_ckd_steps(ctx)
        suggestion = Suggestion(
            label="Order the CKD-MBD evaluation (intact PTH, calcium, 25-OH and 1,25-(OH)2 vitamin D)",
            actions=common.lab_order_actions(
                ctx, "ckd-mbd-evaluation-order", reason="CKD-MBD evaluation before denosumab in advanced CKD"
            ),
        )
    else:
        detail += "\n\n" + _predisposed_steps(ctx)
        suggestion = Suggestion(
            label=f"Order calcium, albumin, phosphate and magnesium for {_post_dose_days(ctx)} after the injection",
            actions=common.lab_order_actions(
                ctx, "post-dose-mineral-check-order", reason="Mineral check after denosumab in a patient predisposed to hypocalcemia",
                note=f"Draw {_post_dose_days(ctx)} after the denosumab injection.",
            ),
        )
    return Finding(
        topic=TOPIC,
        indicator="critical" if critical else "warning",
        summary=summary,
        detail=detail,
        suggestions=(suggestion,),
    )


def _latest_value(ctx: RuleContext, analyte: str) -> str:
    latest = common.latest_result(ctx, (analyte,))
    return common.fmt_result(latest) if latest else "none on file"


def _advanced_ckd_steps(ctx: RuleContext) -> str:
    workup = "\n".join(f"  - {label}: {_latest_value(ctx, analyte)}" for analyte, label in CKD_MBD_WORKUP)
    weekly_phase = common.fmt_number(ctx.threshold("calcium_monitoring_advanced_ckd_weekly_phase_days"))
    return (
        "**Advanced chronic kidney disease (Prolia boxed warning; the Xgeva label warns likewise for severe "
        "renal impairment or dialysis):** severe hypocalcemia, including hospitalization and deaths, has followed "
        "denosumab; CKD-MBD markedly increases the risk.\n"
        f"1. Before starting, evaluate for CKD-MBD — latest values:\n{workup}\n"
        "2. Treatment should be supervised by a provider with expertise in diagnosing and managing CKD-MBD.\n"
        f"3. Monitor serum calcium weekly for the first month ({weekly_phase} days) after the dose, then "
        "monthly; keep calcium up with adequate calcium and activated vitamin D."
    )


def _post_dose_days(ctx: RuleContext) -> str:
    first = common.fmt_number(ctx.threshold("calcium_check_after_dose_min_days"))
    last = common.fmt_number(ctx.threshold("calcium_check_after_dose_max_days"))
    return f"{first}-{last} days"


def _predisposed_steps(ctx: RuleContext) -> str:
    return (
        "Patients predisposed to hypocalcemia and mineral disturbances need adequate calcium and vitamin D "
        f"supplementation, and serum calcium, phosphorus and magnesium checked {_post_dose_days(ctx)} after "
        "the denosumab injection."
    )
