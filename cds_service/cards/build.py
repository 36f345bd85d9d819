"""The one place a CDS Hooks 2.0 card is made: uuids, source with topic, citation, override
reasons, ordering (critical, warning, info) and at most one card per topic."""

from __future__ import annotations

import logging
import uuid

from cds_service.cards.model import INDICATOR_ORDER, Finding
from cds_service.cards.order_set import one_order_set
from cds_service.cards.validate import SUMMARY_MAX, response_problems
from cds_service.knowledge import Knowledge

logger = logging.getLogger(__name__)

SERVICE_LABEL = "Denosumab CDS"
# Stable identifiers of the project's own code systems (documented in README.md).
TOPIC_SYSTEM = "https://denosumab-cds.org/fhir/CodeSystem/card-topic"
OVERRIDE_REASON_SYSTEM = "https://denosumab-cds.org/fhir/CodeSystem/override-reason"
KNOWLEDGE_VERSION_EXTENSION = "https://denosumab-cds.org/knowledge-version"


def _action_json(action) -> dict:
    out = {"type": action.type, "description": action.description}
    if action.resource is not None:
        out["resource"] = action.resource
    if action.resource_id is not None:
        out["resourceId"] = action.resource_id
    return out


def _fit_summary(summary: str) -> str:
    """Summaries carry data (a procedure's or drug's name) and must stay under 140 characters:
    shorten an overlong one rather than lose the card."""
    if len(summary) < SUMMARY_MAX:
        return summary
    return summary[: SUMMARY_MAX - 2].rstrip() + "…"


def card_from_finding(finding: Finding, kb: Knowledge, knowledge_version: str | None = None) -> dict:
    topic = kb.topics[finding.topic]
    source = {
        "label": SERVICE_LABEL,
        "topic": {"system": TOPIC_SYSTEM, "code": topic.code, "display": topic.display},
    }
    if topic.source_url:
        source["url"] = topic.source_url
    card = {
        "uuid": str(uuid.uuid4()),
        "summary": _fit_summary(finding.summary),
        "indicator": finding.indicator,
        "detail": f"{finding.detail.rstrip()}\n\n*Source:* {topic.citation}",
        "source": source,
    }
    if finding.suggestions:
        card["suggestions"] = []
        for suggestion in finding.suggestions:
            entry = {"label": suggestion.label, "uuid": str(uuid.uuid4())}
            if suggestion.is_recommended:
                entry["isRecommended"] = True
            if suggestion.actions:
                entry["actions"] = [_action_json(action) for action in suggestion.actions]
            card["suggestions"].append(entry)
        card["selectionBehavior"] = finding.selection_behavior
    if topic.override_reasons:
        card["overrideReasons"] = [
            {"system": OVERRIDE_REASON_SYSTEM, "code": reason.code, "display": reason.display}
            for reason in topic.override_reasons
        ]
    if finding.links:
        card["links"] = [{"label": link.label, "url": link.url, "type": link.type} for link in finding.links]
    if knowledge_version:
        card["extension"] = {KNOWLEDGE_VERSION_EXTENSION: knowledge_version}  # CDS Hooks 2.0 card extension
    return card


def build_response(findings: list[Finding], kb: Knowledge, knowledge_version: str | None = None) -> dict:
    """Cards ordered critical, warning, info; one per topic (the most severe wins); each order
    suggested on one card only (`order_set.one_order_set`)."""
    best: dict[str, Finding] = {}
    for finding in findings:
        current = best.get(finding.topic)
        if current is None or INDICATOR_ORDER[finding.indicator] < INDICATOR_ORDER[current.indicator]:
            best[finding.topic] = finding
    ordered = sorted(one_order_set(list(best.values()), list(kb.topics)), key=lambda f: (INDICATOR_ORDER[f.indicator], f.topic))
    cards = []
    for finding in ordered:
        card = card_from_finding(finding, kb, knowledge_version)
        problems = response_problems({"cards": [card]})
        if problems:  # our bug: never send an invalid card, never fail the others with it
            logger.error("card for topic %s dropped as invalid: %s", finding.topic, "; ".join(problems))
            continue
        cards.append(card)
    return {"cards": cards}
