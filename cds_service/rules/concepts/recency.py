"""Recency of diagnoses (card catalog v2, general rules): EHRs leave problems "active" for years,
so where a topic gives a window, an active diagnosis counts as current only when its onset (else
its recorded date) lies within that window.

A diagnosis with neither date cannot be shown to be old: it counts as current, and the cards say
that it carries no date (a data problem the clinician can fix on the problem list).
"""

from __future__ import annotations

from datetime import datetime

from cds_service.record.model import ConditionEntry
from cds_service.rules import common
from cds_service.rules.context import RuleContext


def diagnosis_date(condition: ConditionEntry) -> datetime | None:
    """When the diagnosis began as far as the record says: its onset, else its recorded date."""
    return condition.onset or condition.recorded


def is_within(ctx: RuleContext, condition: ConditionEntry, window_threshold: str) -> bool:
    """Onset (else recorded date) on or after the first day of the window, compared by calendar day
    (a diagnosis dated exactly 60 days ago is inside a 60-day window); undated counts."""
    when = diagnosis_date(condition)
    return when is None or when.date() >= ctx.days_before(window_threshold).date()


def window_start_day(ctx: RuleContext, window_threshold: str) -> datetime:
    """The first calendar day of a look-back window, from its midnight: a record dated on that day
    counts whatever its time (an extraction "14 days ago" at 8 am is inside a 14-day window)."""
    start = ctx.days_before(window_threshold)
    return start.replace(hour=0, minute=0, second=0, microsecond=0)


def current_diagnoses(ctx: RuleContext, concept: str, window_threshold: str) -> tuple[ConditionEntry, ...]:
    """Active diagnoses of `concept` whose onset (else recorded date) lies within the window."""
    return tuple(c for c in common.active_conditions(ctx, concept) if is_within(ctx, c, window_threshold))


def stale_diagnoses(ctx: RuleContext, concept: str, window_threshold: str) -> tuple[ConditionEntry, ...]:
    """Active diagnoses of `concept` dated before the window: still on the problem list, no longer current."""
    return tuple(c for c in common.active_conditions(ctx, concept) if not is_within(ctx, c, window_threshold))


def fmt_since(condition: ConditionEntry) -> str:
    """'since 2023-03-14' (onset, else recorded date), or 'with no onset or recorded date'."""
    when = diagnosis_date(condition)
    return f"since {common.fmt_date(when)}" if when else "with no onset or recorded date"


def window_in_words(ctx: RuleContext, window_threshold: str) -> str:
    """A look-back window in days, as a clinician says it: '12 months', '42 weeks', '60 days'."""
    days = ctx.threshold(window_threshold)
    months = days / _DAYS_PER_MONTH
    if days >= 90 and abs(months - round(months)) < 0.05:  # 183 days, 365 days
        return f"{round(months)} months"
    if days >= 28 and days % 7 == 0:  # 294 days
        return f"{common.fmt_number(days / 7)} weeks"
    return f"{common.fmt_number(days)} days"


_DAYS_PER_MONTH = 30.4375  # calendar average
