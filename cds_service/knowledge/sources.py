"""The documents the knowledge base cites (seeds/sources.toml), read once for everyone: the cards
link a topic's primary sources, the review page prints every full reference and the legend of
the labels older citations use."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from cds_service.knowledge.errors import KnowledgeError

SOURCES_NAME = "sources.toml"
_SOURCE_FIELDS = {"title", "publisher", "date", "url", "doi", "location", "what", "authors", "journal", "label", "also",
                  "primary", "verified", "verification", "revision"}
_DOI_RE = re.compile(r"^10\.\d{4,9}/\S+$")
_ID_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class Source:
    id: str
    title: str
    publisher: str
    date: str
    what: str
    url: str | None = None
    doi: str | None = None
    location: str | None = None
    authors: str | None = None
    journal: str | None = None
    label: str | None = None
    also: tuple[str, ...] = ()
    # what a card cites (the loader reads these too): a primary source, and how its URL was checked
    primary: bool = False
    verified: bool = False
    verification: str | None = None
    revision: str | None = None


@dataclass(frozen=True)
class LegendEntry:
    label: str
    means: str
    sources: tuple[str, ...] = ()


def load_sources(directory: Path) -> tuple[dict[str, Source], tuple[LegendEntry, ...]]:
    """`sources.toml`: every citable source with its full reference, and the legend of labels."""
    path = directory / SOURCES_NAME
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KnowledgeError(f"{path}: file missing") from None
    except tomllib.TOMLDecodeError as exc:
        raise KnowledgeError(f"{path}: invalid TOML: {exc}") from None
    unknown = set(data) - {"sources", "legend"}
    if unknown:
        raise KnowledgeError(f"{path}: unknown tables {sorted(unknown)} (allowed: sources, legend)")
    sources: dict[str, Source] = {}
    for sid, table in data.get("sources", {}).items():
        where = f"{path}: [sources.{sid}]"
        if not _ID_RE.match(sid):
            raise KnowledgeError(f"{where}: a source id is lower-kebab-case")
        if not isinstance(table, dict) or set(table) - _SOURCE_FIELDS:
            extra = sorted(set(table) - _SOURCE_FIELDS) if isinstance(table, dict) else table
            raise KnowledgeError(f"{where}: unknown keys {extra} (allowed: {sorted(_SOURCE_FIELDS)})")
        missing = [k for k in ("title", "publisher", "date", "what") if not (isinstance(table.get(k), str) and table[k].strip())]
        if missing:
            raise KnowledgeError(f"{where}: {', '.join(missing)} required")
        if not any(table.get(k) for k in ("url", "doi", "location")):
            raise KnowledgeError(f"{where}: give a url, a doi, or (an unpublished project document) its location")
        for url in [table.get("url"), *table.get("also", [])]:
            if url is not None and not (isinstance(url, str) and url.startswith(("https://", "http://"))):
                raise KnowledgeError(f"{where}: {url!r} is not an http(s) URL")
        if table.get("doi") is not None and not _DOI_RE.match(str(table["doi"])):
            raise KnowledgeError(f"{where}: doi {table['doi']!r} is not a DOI (10.<registrant>/<suffix>)")
        if table.get("location") is not None and not (directory.parent / table["location"]).exists():
            raise KnowledgeError(f"{where}: location {table['location']!r} is not a file of this repository")
        for flag in ("primary", "verified"):
            if not isinstance(table.get(flag, False), bool):
                raise KnowledgeError(f"{where}: '{flag}' must be true or false")
        # What a card links: the url, else the DOI's address; a primary source needs one, on https.
        link = table.get("url") or (f"https://doi.org/{table['doi']}" if table.get("doi") else None)
        if table.get("primary") and not (link and link.startswith("https://")):
            raise KnowledgeError(f"{where}: a primary source needs an https url or a doi (cards link it)")
        sources[sid] = Source(id=sid, **{**table, "url": link, "also": tuple(table.get("also", ()))})
    legend: list[LegendEntry] = []
    for index, table in enumerate(data.get("legend", [])):
        where = f"{path}: [[legend]] #{index + 1}"
        if not isinstance(table, dict) or set(table) - {"label", "means", "sources"} or not table.get("label") or not table.get("means"):
            raise KnowledgeError(f"{where}: each entry is label, means and optional sources")
        unknown_ids = [sid for sid in table.get("sources", []) if sid not in sources]
        if unknown_ids:
            raise KnowledgeError(f"{where} ({table['label']}): no such source {unknown_ids}")
        legend.append(LegendEntry(table["label"], table["means"], tuple(table.get("sources", ()))))
    labels = [entry.label for entry in legend] + [s.label for s in sources.values() if s.label]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise KnowledgeError(f"{path}: labels defined twice: {duplicates}")
    return sources, tuple(legend)
