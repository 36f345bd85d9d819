"""One order set per response (card catalog, general rules).

The same order — same code and the same timing (a one-time calcium before the dose and a weekly
series after it are two orders) — is suggested on one card only: the highest-ranked one
(indicator, then catalog order of the topics). Prospective orders (a ServiceRequest with an
occurrence, e.g. the post-dose calcium series) are exempt. Rules stay pure: each suggests what
its topic needs; this step removes the repeats from the response as a whole.
"""

from __future__ import annotations

import json
from dataclasses import replace

from cds_service.cards.model import INDICATOR_ORDER, Action, Finding, Suggestion

_LABEL_MAX = 79
_NOT_REPEATED = "*Orders already suggested on a higher-ranked card of this response are not repeated here.*"


def order_key(action: Action) -> tuple | None:
    """What makes two suggested orders the same order; None for what is not an order to dedupe
    (deletes, recorded statements, prospective series)."""
    resource = action.resource
    if action.type != "create" or not isinstance(resource, dict):
        return None
    kind = resource.get("resourceType")
    if kind == "ServiceRequest":
        if any(key.startswith("occurrence") for key in resource):
            return None
        concept, timing = resource.get("code") or {}, None
    elif kind == "MedicationRequest":
        concept = resource.get("medicationCodeableConcept") or {}
        timing = json.dumps([d.get("timing") for d in resource.get("dosageInstruction") or ()], sort_keys=True)
    else:
        return None
    codes = frozenset((c.get("system"), c.get("code")) for c in concept.get("coding") or () if c.get("code"))
    return (kind, codes or concept.get("text"), timing) if codes or concept.get("text") else None


def _short_name(action: Action) -> str:
    """A test's or drug's name for a label. A lab name whose display ends in its common name in
    parentheses uses that: LOINC's "Calcitriol [...] (1,25-dihydroxyvitamin D)" is the vitamin D
    level, and "Order Calcitriol" would read as the drug."""
    resource = action.resource or {}
    concept = resource.get("code") or resource.get("medicationCodeableConcept") or {}
    text = concept.get("text") or action.description
    if resource.get("resourceType") == "ServiceRequest" and text.endswith(")") and " (" in text:
        return text[text.rindex(" (") + 2:-1]
    return text.split(" [")[0]


def _relabelled(suggestion: Suggestion, kept: tuple[Action, ...]) -> Suggestion:
    """The label names what is left: 'Order Parathyrin.intact, 1,25-dihydroxyvitamin D (rest on a card above)'."""
    names = ", ".join(_short_name(a) for a in kept if a.type == "create")
    label = f"Order {names} (rest on a card above)"
    if len(label) > _LABEL_MAX:
        label = f"Order {names}"[: _LABEL_MAX - 1].rstrip(", ") + "…"
    return replace(suggestion, actions=kept, label=label)


def one_order_set(findings: list[Finding], topic_order: list[str]) -> list[Finding]:
    """The findings with every repeated order left only on the highest-ranked card, in the same order."""
    rank = {topic: position for position, topic in enumerate(topic_order)}
    ranked = sorted(range(len(findings)), key=lambda i: (
        INDICATOR_ORDER[findings[i].indicator], rank.get(findings[i].topic, len(rank)),
    ))
    seen: set[tuple] = set()
    result = list(findings)
    for index in ranked:
        finding = findings[index]
        suggestions, removed = [], False
        for suggestion in finding.suggestions:
            kept = []
            for action in suggestion.actions:
                key = order_key(action)
                if key is not None and key in seen:
                    removed = True
                    continue
                kept.append(action)
            seen.update(key for action in kept if (key := order_key(action)) is not None)
            if len(kept) == len(suggestion.actions):
                suggestions.append(suggestion)
            elif any(a.type == "create" for a in kept):
                suggestions.append(_relabelled(suggestion, tuple(kept)))
        if removed:
            result[index] = replace(
                finding, suggestions=tuple(suggestions), detail=f"{finding.detail.rstrip()}\n\n{_NOT_REPEATED}"
            )
    return result
