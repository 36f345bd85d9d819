"""FHIR date and dateTime values as aware UTC datetimes, handled in this one place.

>>> to_datetime("2026-10")
datetime.datetime(2026, 10, 1, 0, 0, tzinfo=datetime.timezone.utc)
>>> to_datetime(None) is None
True
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone

_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def to_datetime(value) -> datetime | None:
    """A FHIR date/dateTime/instant (model value or string) as UTC; partial dates at their start."""
    if value is None:
        return None
    if isinstance(value, str):
        try:  # the common case first (a whole date or dateTime): ~10 times faster than the fallbacks below
            value = datetime.fromisoformat(value)
        except ValueError:
            return _partial_or_padded(value)
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    return None


def _partial_or_padded(value: str) -> datetime | None:
    """FHIR's partial dates (a year, a year and month) and values with surrounding whitespace."""
    value = value.strip()
    match = _PARTIAL.match(value)
    if match:
        year, month, day = match.groups()
        try:
            return datetime(int(year), int(month or 1), int(day or 1), tzinfo=timezone.utc)
        except ValueError:
            return None
    try:
        return to_datetime(datetime.fromisoformat(value))
    except ValueError:
        return None


def to_date(value) -> date | None:
    moment = to_datetime(value)
    return moment.date() if moment else None


def parse_day_or_time(value: str) -> datetime:
    """A date or date-time typed by a user (`--as-of`, `--since`): a day is its midnight UTC, a
    time without offset is UTC. Raises ValueError with a message fit for the command line."""
    moment = to_datetime(value) if isinstance(value, str) and value.strip() else None
    if moment is None:
        raise ValueError(f"{value!r} is not a date (YYYY-MM-DD) or an ISO date-time")
    return moment
