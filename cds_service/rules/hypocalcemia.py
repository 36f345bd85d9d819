"""hypocalcemia: denosumab given into pre-existing hypocalcemia (severe, sometimes fatal, hypocalcemia).

When: a denosumab order, and the calcium compared (last 30 days; final, amended or corrected
  results) is below its lower limit. The calcium compared: the latest ionized calcium when it is
  within 7 days of the latest total calcium (or there is no total); else the latest total
  calcium — a lab-reported albumin-corrected calcium as reported, else corrected for albumin
  (Payne: Ca + 0.8 × (4.0 − albumin g/dL)) only when an albumin below 4.0 g/dL was measured within
  7 days of it (no correction at 4.0 g/dL or above). Lower limit: the result's own reference range
  low, else 8.5 mg/dL (2.12 mmol/L), ionized 4.5 mg/dL (1.12 mmol/L); mg/dL and mmol/L alike.
Then: critical when the value is below 8.0 mg/dL (2.00 mmol/L), ionized below 4.0 mg/dL
  (1.00 mmol/L) — CTCAE grade 2 or worse; else warning (grade 1). The card shows the result as
  reported (and the albumin used), the limit, and that hypocalcemia is a contraindication to be
  corrected before dosing; with eGFR < 30 or dialysis it notes that corrected calcium can
  overestimate ionized calcium and suggests an ionized calcium. Suggests cancelling the draft
  order (delete) and a repeat calcium with albumin, magnesium and phosphate.
Source: card catalog v2, topic hypocalcemia; Prolia and Xgeva labels, Contraindications
  (hypocalcemia) and W&P Hypocalcemia ("pre-existing hypocalcemia must be corrected prior to
  initiating"); CTCAE v5.0 (hypocalcemia grades); Payne et al., BMJ 1973;4:643 (correction).
"""

from __future__ import annotations

from cds_service.cards import Finding, Suggestion
from cds_service.rules import common
from cds_service.rules.concepts import calcium, kidney, order_suggestions
from cds_service.rules.concepts.calcium import CalciumReading
from cds_service.rules.context import RuleContext

TOPIC = "hypocalcemia"
NEEDS = frozenset({"labs"})


def low_calcium(ctx: RuleContext) -> CalciumReading | None:
    """The calcium compared, when it is below its lower limit."""
    reading = calcium.compared_calcium(ctx)
    return reading if reading is not None and reading.is_low else None


def evaluate(ctx: RuleContext) -> Finding | None:
    reading = low_calcium(ctx)
    if reading is None:
        return None
    critical = reading.is_critically_low
    kind = "Ionized calcium" if reading.is_ionized else "Corrected calcium" if reading.is_corrected else "Calcium"
    summary = (
        f"{kind} {reading.shown_value} on {common.fmt_date(reading.lab.effective)} is low: "
        "correct hypocalcemia before denosumab"
    )
    kidney_note = _kidney_note(ctx, reading)
    suggestions: list[Suggestion | None] = [
        order_suggestions.cancel_draft_orders_suggestion(ctx, "Cancel the denosumab order until calcium is corrected"),
        order_suggestions.calcium_recheck_suggestion(
            ctx, order_set="hypocalcemia-recheck-order",
            label="Order repeat calcium, albumin, magnesium and phosphate",
            reason="Hypocalcemia before denosumab: repeat calcium with albumin, magnesium and phosphate",
        ),
    ]
    if kidney_note:
        suggestions.append(order_suggestions.lab_order_suggestion(
            "Order ionized calcium",
            order_suggestions.lab_order_actions(
                ctx, "ionized-calcium-order", reason="Corrected calcium can overestimate ionized calcium in advanced CKD"
            ),
        ))
    return Finding(
        topic=TOPIC,
        indicator="critical" if critical else "warning",
        summary=summary,
        detail=_detail(ctx, reading, critical, kidney_note),
        suggestions=tuple(s for s in suggestions if s is not None),
        selection_behavior="any",
    )


def _kidney_note(ctx: RuleContext, reading: CalciumReading) -> str | None:
    """With eGFR < 30 or dialysis, albumin-corrected calcium can overestimate ionized calcium."""
    if reading.is_ionized:
        return None
    egfr = kidney.egfr_function(ctx)
    limit = ctx.threshold("egfr_advanced_ckd_below")
    if egfr is not None and egfr.is_below(limit):
        why = f"{egfr.describe()}, below {common.fmt_number(limit)}"
    elif kidney.is_on_dialysis(ctx):
        why = "on dialysis"
    else:
        return None
    return (
        f"**Kidney function:** {why}. In advanced CKD and on dialysis, total and albumin-corrected calcium "
        "can overestimate ionized calcium: an ionized calcium is suggested."
    )


def _detail(ctx: RuleContext, reading: CalciumReading, critical: bool, kidney_note: str | None) -> str:
    days = common.fmt_number(ctx.threshold("calcium_lookback_days"))
    grade = (
        "**CTCAE grade 2 or worse** (below 8.0 mg/dL, 2.00 mmol/L; ionized below 4.0 mg/dL, 1.00 mmol/L)"
        if critical else "CTCAE grade 1 (below the lower limit, not below 8.0 mg/dL / 2.00 mmol/L)"
    )
    text = (
        f"**Calcium compared (last {days} days):** {reading.describe()} — below the lower limit of "
        f"{reading.lower_limit_text}: {grade}.\n\n"
        "Hypocalcemia is a contraindication to denosumab: correct it before dosing (calcium and vitamin D, "
        "magnesium if low), or severe symptomatic hypocalcemia may follow. Hold this order, treat the cause, "
        "and give denosumab once a repeat calcium (with albumin) is normal."
    )
    if kidney_note:
        text += "\n\n" + kidney_note
    return text
