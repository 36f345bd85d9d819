"""A rule's conclusion, free of CDS Hooks wire details (uuids, source, override reasons)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Indicator = Literal["info", "warning", "critical"]
INDICATOR_ORDER = {"critical": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Action:
    """A suggested change: create/update carry a whole FHIR resource, delete a relative reference."""

    type: Literal["create", "update", "delete"]
    description: str
    resource: dict | None = None
    resource_id: str | None = None


@dataclass(frozen=True)
class Suggestion:
    label: str
    actions: tuple[Action, ...] = ()
    is_recommended: bool = False


@dataclass(frozen=True)
class Link:
    label: str
    url: str
    type: Literal["absolute", "smart"] = "absolute"


@dataclass(frozen=True)
class Absence:
    """Something a finding rests on *not* having been found ("no calcium in the last 30 days").

    Such a conclusion is only sound when the record's `category` is complete: the engine drops a
    finding that rests on an absence in incomplete data and lists `check` on the data-unavailable
    card instead — unless the entries received reach back past `since` (newest first), which
    settles the absence inside the window. `since` None means "at any time" (never settled by a
    partial history).
    """

    category: str  # one of cds_service.record.model.DATA_CATEGORIES
    check: str  # what was looked for, for the data-unavailable card: "a dental examination in the last 6 months"
    since: datetime | None = None


@dataclass(frozen=True)
class Finding:
    """What one rule concluded about this patient and order.

    `detail` is GitHub markdown that shows the data used (values with units and dates, or what is
    missing since when) and what to do; the citation and override reasons come from the topic in
    `seeds/topics.toml`, so every card of a topic cites the same reviewed source.
    """

    topic: str
    indicator: Indicator
    summary: str
    detail: str
    suggestions: tuple[Suggestion, ...] = ()
    selection_behavior: Literal["at-most-one", "any"] = "at-most-one"
    links: tuple[Link, ...] = ()
    # What this finding concludes from data *not* found (see Absence); empty when it rests only
    # on what was found (a low calcium, an ONJ diagnosis, a dose 7 days ago).
    rests_on_absence: tuple[Absence, ...] = ()
