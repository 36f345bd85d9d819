"""hypocalcemia: denosumab given into pre-existing hypocalcemia (severe, sometimes fatal, hypocalcemia).

When: a denosumab order, and the latest calcium of the last 30 days is below the lower limit —
  total calcium corrected for albumin (Payne: Ca + 0.8 × (4.0 − albumin g/dL)) when an albumin
  was measured within 7 days of it, else the total calcium as reported, below 8.5 mg/dL
  (2.12 mmol/L) or below the result's own reference range low; a lab-reported albumin-corrected
  calcium as reported; ionized calcium below 4.5 mg/dL (1.12 mmol/L). Only final, amended or
  corrected results count.
Then: critical card showing the calcium (and the albumin used), the limit, and that hypocalcemia
  must be corrected before denosumab; suggests cancelling the draft order and ordering a repeat
  serum calcium with albumin.
Source: card catalog topic hypocalcemia; Prolia/Xgeva labels (hypocalcemia is a
  contraindication; correct before initiating); seed "Hypocalcemia".
"""

from __future__ import annotations

from cds_service.cards import Finding
from cds_service.rules import common
from cds_service.rules.common import CalciumReading
from cds_service.rules.context import RuleContext

TOPIC = "hypocalcemia"
NEEDS = frozenset({"labs"})


def low_calcium_readings(ctx: RuleContext) -> tuple[CalciumReading, ...]:
    """The latest calcium specimen's readings that are below their limit."""
    return tuple(reading for reading in common.latest_calcium_readings(ctx) if reading.is_low)


def evaluate(ctx: RuleContext) -> Finding | None:
    low = low_calcium_readings(ctx)
    if not low:
        return None
    worst = min(low, key=lambda reading: reading.value - reading.lower_limit)
    kind = "Ionized calcium" if worst.is_ionized else "Corrected calcium" if worst.is_corrected else "Calcium"
    summary = (
        f"{kind} {worst.shown_value} on {common.fmt_date(worst.lab.effective)} is low: "
        "correct hypocalcemia before denosumab"
    )
    return Finding(
        topic=TOPIC,
        indicator="critical",
        summary=summary,
        detail=_detail(ctx, low),
        suggestions=tuple(s for s in (
            common.cancel_draft_orders_suggestion(ctx, "Cancel the denosumab order until calcium is corrected"),
            common.calcium_recheck_suggestion(ctx, reason="Hypocalcemia before denosumab: repeat calcium with albumin"),
        ) if s is not None),
        selection_behavior="any",
    )


def _detail(ctx: RuleContext, low: tuple[CalciumReading, ...]) -> str:
    lines = [f"- {reading.describe()} — below the lower limit of {reading.lower_limit_text}" for reading in low]
    return (
        "**Latest calcium (last "
        f"{common.fmt_number(ctx.threshold('calcium_lookback_days'))} days):**\n"
        + "\n".join(lines)
        + "\n\nHypocalcemia is a contraindication to denosumab: it must be corrected before the dose "
        "(calcium and vitamin D, magnesium if low), or severe symptomatic hypocalcemia may follow. "
        "Hold this order, treat the cause, and give denosumab once a repeat calcium (with albumin) is normal."
    )
