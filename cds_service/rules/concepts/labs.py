"""Lab results the rules may count: final, amended or corrected, dated up to the call, newest first.

Observations count when final/amended/corrected (card catalog: "When the service looks at a
patient"); results are read lazily, so a reader takes what it needs and stops.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from cds_service.record.model import LabResult
from cds_service.rules.context import RuleContext

COUNTABLE_OBSERVATION_STATUSES = frozenset({"final", "amended", "corrected"})


def countable_results(ctx: RuleContext, analyte: str, since: datetime | None = None) -> Iterator[LabResult]:
    """Final/amended/corrected results of `analyte` up to the call (since `since`), newest first.
    Read lazily (each result is validated when first read): take what you need and stop."""
    return (
        lab for lab in ctx.record.labs_for(analyte, since)
        if lab.status in COUNTABLE_OBSERVATION_STATUSES and lab.effective is not None and lab.effective <= ctx.as_of
    )


def latest_result(
    ctx: RuleContext, analytes: tuple[str, ...], lookback_threshold: str | None = None, *, numeric: bool = True
) -> LabResult | None:
    """The newest countable result of any of `analytes`, within the named look-back window (any
    age without one), with a numeric value unless `numeric` is False."""
    since = ctx.days_before(lookback_threshold) if lookback_threshold else None
    newest = (
        next((lab for lab in countable_results(ctx, analyte, since) if not numeric or lab.value is not None), None)
        for analyte in analytes
    )
    return max((lab for lab in newest if lab is not None), key=lambda lab: lab.effective, default=None)


def has_result_since(ctx: RuleContext, analyte: str, since: datetime) -> bool:
    """Whether a countable result of `analyte` (with a value, numeric or not) is dated at or after `since`."""
    return any(
        lab.value is not None or lab.original_text or lab.qualitative for lab in countable_results(ctx, analyte, since)
    )
