"""Checks that a CDS Hooks 2.0 response is valid: required fields, no empty values, and the
invariants cds-resp-1..6 of the CDSHooksResponse logical model. Used on every response the
service builds (a failure is our bug) and by the tests on every response they see."""

from __future__ import annotations

import uuid

INDICATORS = {"info", "warning", "critical"}
ACTION_TYPES = {"create", "update", "delete"}
SELECTION_BEHAVIORS = {"at-most-one", "any"}
LINK_TYPES = {"absolute", "smart"}
SUMMARY_MAX = 140


def _no_empty(value, path: str, problems: list[str]) -> None:
    if value is None or value == "" or value == [] or value == {}:
        problems.append(f"{path} is empty")
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_empty(item, f"{path}.{key}", problems)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _no_empty(item, f"{path}[{index}]", problems)


def _is_uuid(value) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _coding(coding, path: str, problems: list[str], *, display_required: bool) -> None:
    if not isinstance(coding, dict) or not coding.get("system") or not coding.get("code"):
        problems.append(f"{path} needs system and code")
    elif display_required and not coding.get("display"):
        problems.append(f"{path} needs display (cds-resp-4)")


def _card_problems(card: dict, path: str) -> list[str]:
    problems: list[str] = []
    summary = card.get("summary")
    if not isinstance(summary, str) or not summary:
        problems.append(f"{path}.summary is required")
    elif len(summary) >= SUMMARY_MAX:
        problems.append(f"{path}.summary is {len(summary)} characters (must be under {SUMMARY_MAX})")
    if card.get("indicator") not in INDICATORS:
        problems.append(f"{path}.indicator must be one of {sorted(INDICATORS)}")
    if not _is_uuid(card.get("uuid")):
        problems.append(f"{path}.uuid must be a UUID")
    source = card.get("source")
    if not isinstance(source, dict) or not source.get("label"):
        problems.append(f"{path}.source.label is required")
    elif "topic" in source:
        _coding(source["topic"], f"{path}.source.topic", problems, display_required=False)
    suggestions = card.get("suggestions", [])
    if suggestions:
        if card.get("selectionBehavior") not in SELECTION_BEHAVIORS:
            problems.append(f"{path}.selectionBehavior is required with suggestions (cds-resp-6)")
        if card.get("selectionBehavior") == "at-most-one" and sum(bool(s.get("isRecommended")) for s in suggestions) > 1:
            problems.append(f"{path}: at most one suggestion may be recommended (cds-resp-1)")
    for index, suggestion in enumerate(suggestions):
        spath = f"{path}.suggestions[{index}]"
        if not suggestion.get("label"):
            problems.append(f"{spath}.label is required")
        if not _is_uuid(suggestion.get("uuid")):
            problems.append(f"{spath}.uuid must be a UUID")
        for aindex, action in enumerate(suggestion.get("actions", [])):
            apath = f"{spath}.actions[{aindex}]"
            if action.get("type") not in ACTION_TYPES:
                problems.append(f"{apath}.type must be create, update or delete")
            if not action.get("description"):
                problems.append(f"{apath}.description is required (cds-resp-5)")
            if action.get("type") == "delete" and (not action.get("resourceId") or "resource" in action):
                problems.append(f"{apath}: delete needs resourceId and no resource (cds-resp-2)")
            if action.get("type") in ("create", "update") and not isinstance(action.get("resource"), dict):
                problems.append(f"{apath}: {action.get('type')} needs a resource")
    for index, reason in enumerate(card.get("overrideReasons", [])):
        _coding(reason, f"{path}.overrideReasons[{index}]", problems, display_required=True)
    for index, link in enumerate(card.get("links", [])):
        lpath = f"{path}.links[{index}]"
        if not link.get("label") or not link.get("url") or link.get("type") not in LINK_TYPES:
            problems.append(f"{lpath} needs label, url and type absolute|smart")
        if "appContext" in link and link.get("type") != "smart":
            problems.append(f"{lpath}: appContext only on smart links (cds-resp-3)")
    return problems


def response_problems(response) -> list[str]:
    if not isinstance(response, dict) or not isinstance(response.get("cards"), list):
        return ["response must be an object with a cards array"]
    problems: list[str] = []
    for index, card in enumerate(response["cards"]):
        if not isinstance(card, dict):
            problems.append(f"cards[{index}] must be an object")
            continue
        _no_empty(card, f"cards[{index}]", problems)
        problems.extend(_card_problems(card, f"cards[{index}]"))
    if "systemActions" in response:
        _no_empty(response["systemActions"], "systemActions", problems)
    return problems
