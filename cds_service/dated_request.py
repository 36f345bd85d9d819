"""A saved hook request moved in time: every FHIR date in it shifted by the same number of days.

A fixture holds a request and the moment it is evaluated at (`asOf`). Sent live, its look-back
windows move with the calendar and its cards change; moved so that `asOf` becomes the moment of
sending, it gives the cards it was written for on any day (`denosumab-cds fixture-request`).
Birth dates move too, so ages stay as written.
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime, timedelta, timezone

# FHIR date and dateTime with at least a full day (YYYY-MM-DD[Thh:mm[:ss[.s]][zone]]).
_FULL_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(T.*)?$")
# Partial dates (YYYY, YYYY-MM) look like codes and counts, so they move only under date elements.
_PARTIAL_DATE = re.compile(r"^(\d{4})(?:-(\d{2}))?$")
_DATE_ELEMENTS = re.compile(r"(Date|DateTime|date|Instant|^start|^end|^issued|^authoredOn|^whenHandedOver|^whenPrepared)$")


def shift_dates(document, by: timedelta, days: int | None = None, key: str | None = None):
    """A copy of `document` (parsed JSON) with every FHIR date-time moved by `by`, and every date
    (a day without a time) by `days` — by default `by`'s whole days; `request_dated` gives the
    number of calendar days its moment moves, so a date stays as many days before it."""
    days = by.days if days is None else days
    if isinstance(document, dict):
        return {k: shift_dates(v, by, days, k) for k, v in document.items()}
    if isinstance(document, list):
        return [shift_dates(item, by, days, key) for item in document]
    if isinstance(document, str):
        return _shift_text(document, by, days, key)
    return document


def _shift_text(text: str, by: timedelta, days: int, key: str | None) -> str:
    full = _FULL_DATE.match(text)
    if full:
        try:
            day = date.fromisoformat(full.group(1))
            moment = datetime.fromisoformat(text) if full.group(2) else None
        except ValueError:  # not a real day or time (2026-02-30): leave it as sent
            return text
        if moment is None:
            return (day + timedelta(days=days)).isoformat()
        return _format_like(moment + by, text)
    partial = _PARTIAL_DATE.match(text)
    if partial and key and _DATE_ELEMENTS.search(key):
        year, month = int(partial.group(1)), int(partial.group(2) or 7)  # mid-year for a bare year
        moved = date(year, month, 15) + timedelta(days=days)
        return f"{moved.year:04d}-{moved.month:02d}" if partial.group(2) else f"{moved.year:04d}"
    return text


def _format_like(moment: datetime, original: str) -> str:
    """`moment` written with the precision and zone notation of `original`."""
    timespec = "milliseconds" if "." in original else "seconds"
    text = moment.isoformat(timespec=timespec)
    if original.endswith("Z"):
        text = text.removesuffix("+00:00") + "Z"
    return text


def request_dated(scenario: dict, moment: datetime) -> dict:
    """The scenario's request with its dates moved so that its `asOf` becomes `moment`, and a new
    hookInstance (each sent request is a new call)."""
    as_of = datetime.fromisoformat(scenario["asOf"])
    by = moment - as_of
    days = (moment.astimezone(timezone.utc).date() - as_of.astimezone(timezone.utc).date()).days
    request = shift_dates(scenario["request"], by, days)
    request["hookInstance"] = str(uuid.uuid4())
    return request
