"""A rule's conclusion, free of CDS Hooks wire details (uuids, source, override reasons)."""

from __future__ import annotations

from dataclasses import dataclass
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
