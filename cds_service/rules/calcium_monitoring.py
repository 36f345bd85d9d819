"""calcium-monitoring: denosumab given without a recent calcium (hypocalcemia goes unseen).

When: a denosumab order, and no final/amended/corrected calcium result (total, albumin-corrected
  or ionized) with a usable value in the last 30 days. Rests on an absence (a calcium in the last
  30 days): not issued from incomplete lab data.
Then: warning showing the last calcium on file (or none) and asking for a serum calcium with
  albumin before the dose; suggests ordering them (a test, so also in the hypercalcemia state,
  which withholds calcium and vitamin D *supplements*). The post-dose schedule in advanced CKD is
  the hypocalcemia-risk card's.
Source: card catalog v2, topic calcium-monitoring; Prolia and Xgeva labels W&P Hypocalcemia
  (monitor calcium); seed "Calcium and Vitamin D Supplementation" (monitor serum calcium).
"""

from __future__ import annotations

from cds_service.cards import Absence, Finding
from cds_service.record.model import LabResult
from cds_service.rules import common
from cds_service.rules.concepts import calcium, labs, order_suggestions
from cds_service.rules.context import RuleContext

TOPIC = "calcium-monitoring"
NEEDS = frozenset({"labs", "conditions"})
# Results on their way (not yet countable): shown, so nobody orders a calcium that is already done.
PENDING_OBSERVATION_STATUSES = frozenset({"registered", "preliminary"})


def has_recent_calcium(ctx: RuleContext) -> bool:
    return bool(calcium.recent_calcium_results(ctx))


def last_calcium_on_file(ctx: RuleContext) -> LabResult | None:
    """The newest countable calcium result of any age (for the card: what there is)."""
    return labs.latest_result(ctx, calcium.CALCIUM_ANALYTES, numeric=False)


def not_yet_final_calcium(ctx: RuleContext) -> tuple[LabResult, ...]:
    """Recent calcium results that do not count yet (registered, preliminary): worth a mention."""
    since = ctx.days_before("calcium_lookback_days")
    return tuple(
        lab for analyte in calcium.CALCIUM_ANALYTES for lab in ctx.record.labs_for(analyte, since)
        if lab.status in PENDING_OBSERVATION_STATUSES and lab.effective <= ctx.as_of
    )


def evaluate(ctx: RuleContext) -> Finding | None:
    if has_recent_calcium(ctx):
        return None
    days = common.fmt_number(ctx.threshold("calcium_lookback_days"))
    return Finding(
        topic=TOPIC,
        indicator="warning",
        summary=f"No serum calcium in the last {days} days: check calcium (with albumin) before denosumab",
        detail=_detail(ctx),
        suggestions=(
            order_suggestions.calcium_recheck_suggestion(
                ctx, reason=f"Serum calcium before denosumab (none in the last {days} days)"
            ),
        ),
        rests_on_absence=(
            Absence("labs", f"a serum calcium in the last {days} days", ctx.days_before("calcium_lookback_days")),
        ),
    )


def _detail(ctx: RuleContext) -> str:
    since = common.fmt_date(ctx.days_before("calcium_lookback_days"))
    last = last_calcium_on_file(ctx)
    reading = calcium.calcium_reading(ctx, last) if last else None
    if reading is not None:
        seen = f"last on file: {reading.describe()}"
        if reading.is_low:
            seen += f" — **low**, below {reading.lower_limit_text}"
    else:
        seen = f"last on file: {common.fmt_result(last)}" if last else "none on file"
    text = f"**No final serum calcium result since {since}** ({seen}).\n\n"
    not_final = not_yet_final_calcium(ctx)
    if not_final:
        text += "Not counted (not final): " + "; ".join(
            f"{common.fmt_result(lab)} ({lab.status})" for lab in not_final
        ) + ".\n\n"
    text += (
        "Denosumab can cause severe hypocalcemia, and pre-existing hypocalcemia must be corrected "
        "before the dose: check serum calcium, with albumin to correct it, before giving denosumab."
    )
    return text
