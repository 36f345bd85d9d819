"""The knowledge base as FHIR R4 resources, for EHR analysts, terminology servers and knowledge
repositories: what `denosumab-cds knowledge export --fhir DIR` writes and GET /fhir/... serves.

- one ValueSet per value set of seeds/valuesets/: ICD-10-CM rows as an `is-a` filter (a row
  matches the code and all of its sub-codes, as the service matches it), every other row as an
  enumerated concept; each row's source in the `code-source` extension (and an ICD-10-CM row's
  display, which a filter cannot hold, in `code-display`);
- the CodeSystems of card topics and of override reasons (the systems cards carry);
- one PlanDefinition (ECA rule) per topic: its trigger (the CDS Hooks hooks it runs on), the
  catalog's When as the condition's description, the action with its suggestion templates (the
  topic's order and referral value sets, with their sig and timing), the thresholds it uses, and
  the cited sources and the value sets it reads as relatedArtifact;
- a Library (asset-collection) that lists all of them.

Everything is generic over what seeds/ holds: a value set or topic added there is exported without
a change here. Each resource is validated with fhir.resources (R4B) before it is written.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from fhir.resources.R4B import get_fhir_model_class

from cds_service.cards.build import OVERRIDE_REASON_SYSTEM, SERVICE_LABEL, TOPIC_SYSTEM
from cds_service.knowledge import ICD10CM, Knowledge, Topic, ValueSet

CANONICAL_BASE = TOPIC_SYSTEM.rsplit("/CodeSystem/", 1)[0]  # https://denosumab-cds.org/fhir
CODE_SOURCE_EXTENSION = f"{CANONICAL_BASE}/StructureDefinition/code-source"
CODE_DISPLAY_EXTENSION = f"{CANONICAL_BASE}/StructureDefinition/code-display"
THRESHOLD_EXTENSION = f"{CANONICAL_BASE}/StructureDefinition/threshold"
LIBRARY_ID = "denosumab-cds-knowledge"
RESOURCE_TYPES = ("ValueSet", "CodeSystem", "PlanDefinition", "Library")
# The value sets of a topic whose codes are what its suggestions order (seeds naming convention).
ORDER_VALUESET_SUFFIXES = ("-order", "-referral")
PLAN_TYPE = "http://terminology.hl7.org/CodeSystem/plan-definition-type"
ACTION_TYPE = "http://terminology.hl7.org/CodeSystem/action-type"
LIBRARY_TYPE = "http://terminology.hl7.org/CodeSystem/library-type"
# The CDS Hooks hooks on which each trigger of seeds/topics.toml can fire (cds_service.rules.engine).
HOOKS_OF_TRIGGER = {
    "denosumab-order": ("order-select", "order-sign", "medication-prescribe"),
    "follow-on-order": ("order-select", "order-sign", "medication-prescribe"),
    "patient-view": ("patient-view",),
}
TRIGGER_WORDS = {
    "denosumab-order": "a denosumab draft order in focus",
    "follow-on-order": "a bisphosphonate or other osteoporosis-agent draft order in focus",
    "patient-view": "the chart of a patient with any denosumab history opened",
}


class ExportError(Exception):
    """A resource did not validate as FHIR R4 (the exporter's bug, never written)."""


def canonical_url(resource_type: str, resource_id: str) -> str:
    return f"{CANONICAL_BASE}/{resource_type}/{resource_id}"


def _computable_name(kebab: str) -> str:
    """`vitamin-d-25oh` -> `VitaminD25oh` (a FHIR `name`: starts with a capital, letters and digits)."""
    name = "".join(part[:1].upper() + part[1:] for part in kebab.split("-"))
    return name if re.match(r"^[A-Z]", name) else "X" + name


def _metadata(resource_type: str, resource_id: str, title: str, version: str) -> dict:
    return {
        "resourceType": resource_type,
        "id": resource_id,
        "url": canonical_url(resource_type, resource_id),
        "version": version,
        "name": _computable_name(resource_id),
        "title": title,
        "status": "active",
        "experimental": False,
        "publisher": SERVICE_LABEL,
    }


def _source_extension(source: str) -> dict:
    return {"url": CODE_SOURCE_EXTENSION, "valueString": source}


def value_set_resource(value_set: ValueSet, version: str) -> dict:
    enumerated: dict[str, list[dict]] = {}
    filters: list[dict] = []
    for coding in value_set.codings:
        if coding.system == ICD10CM:
            filters.append({
                "extension": [
                    {"url": CODE_DISPLAY_EXTENSION, "valueString": coding.display},
                    _source_extension(coding.source),
                ],
                "system": ICD10CM,
                "filter": [{"property": "concept", "op": "is-a", "value": coding.code}],
            })
        else:
            enumerated.setdefault(coding.system, []).append(
                {"extension": [_source_extension(coding.source)], "code": coding.code, "display": coding.display}
            )
    description = value_set.description + "\n\nSources:\n\n" + "\n".join(f"- {s}" for s in value_set.sources)
    if value_set.notes:
        description += f"\n\nNotes: {value_set.notes}"
    resource = _metadata("ValueSet", value_set.name, value_set.title, version)
    resource["description"] = description
    resource["compose"] = {
        "include": [{"system": system, "concept": concepts} for system, concepts in enumerated.items()] + filters
    }
    return resource


def topic_code_system(kb: Knowledge, version: str) -> dict:
    resource = _metadata("CodeSystem", TOPIC_SYSTEM.rsplit("/", 1)[1], "Denosumab CDS card topics", version)
    resource.update(
        url=TOPIC_SYSTEM,
        description="The topic of each card the service issues (card.source.topic), one per rule of the card catalog.",
        caseSensitive=True,
        content="complete",
        count=len(kb.topics),
        concept=[{"code": t.code, "display": t.display, "definition": t.when} for t in kb.topics.values()],
    )
    return resource


def override_reason_code_system(kb: Knowledge, version: str) -> dict:
    """Every override reason of every topic; a code several topics share is one concept, with
    each topic's own wording as a designation and every topic as a `topic` property."""
    concepts: dict[str, dict] = {}
    for topic in kb.topics.values():
        for reason in topic.override_reasons:
            concept = concepts.setdefault(reason.code, {"code": reason.code, "display": reason.display, "property": []})
            if reason.display != concept["display"] and all(
                d["value"] != reason.display for d in concept.get("designation", ())
            ):
                concept.setdefault("designation", []).append({"value": reason.display})
            concept["property"].append({"code": "topic", "valueCode": topic.code})
    resource_id = OVERRIDE_REASON_SYSTEM.rsplit("/", 1)[1]
    resource = _metadata("CodeSystem", resource_id, "Denosumab CDS override reasons", version)
    resource.update(
        url=OVERRIDE_REASON_SYSTEM,
        description="The reasons a clinician may give for overriding a card (card.overrideReasons), by topic.",
        caseSensitive=True,
        content="complete",
        count=len(concepts),
        property=[{
            "code": "topic", "uri": TOPIC_SYSTEM, "type": "code",
            "description": "A card topic (CodeSystem card-topic) whose cards offer this reason",
        }],
        concept=list(concepts.values()),
    )
    return resource


def _suggestion_action(value_set: ValueSet) -> dict:
    action = {
        "title": value_set.title,
        "description": value_set.description,
        "type": {"coding": [{"system": ACTION_TYPE, "code": "create", "display": "Create"}]},
        "code": [{
            "coding": [{"system": c.system, "code": c.code, "display": c.display} for c in value_set.codings],
            "text": value_set.title,
        }],
        "documentation": [
            {"type": "composed-of", "display": value_set.title, "resource": canonical_url("ValueSet", value_set.name)}
        ],
    }
    if value_set.sig:
        action["textEquivalent"] = value_set.sig
    if value_set.timing_repeat:
        action["timingTiming"] = {"repeat": dict(value_set.timing_repeat)}
    return action


def _threshold_extension(kb: Knowledge, name: str) -> dict:
    threshold = kb.thresholds[name]
    return {
        "url": THRESHOLD_EXTENSION,
        "extension": [
            {"url": "name", "valueString": threshold.name},
            {"url": "value", "valueQuantity": {"value": threshold.value, "unit": threshold.unit}},
            {"url": "source", "valueString": threshold.source},
        ],
    }


def plan_definition(topic: Topic, kb: Knowledge, rule_functions: dict[str, str], version: str) -> dict:
    hooks = list(dict.fromkeys(hook for trigger in topic.triggers for hook in HOOKS_OF_TRIGGER[trigger]))
    order_sets = [kb.value_sets[name] for name in topic.valuesets if name.endswith(ORDER_VALUESET_SUFFIXES)]
    action = {
        "title": topic.display,
        "description": (
            f"Runs on: {'; or '.join(TRIGGER_WORDS[t] for t in topic.triggers)}. Card indicator: {topic.indicators}."
        ),
        "code": [{"coding": [{"system": TOPIC_SYSTEM, "code": topic.code, "display": topic.display}]}],
        "trigger": [{"type": "named-event", "name": hook} for hook in hooks],
        "condition": [{
            "kind": "applicability",
            "expression": {
                "description": topic.when,
                "language": "text/x-python",
                # Where the executable logic is (a topic whose rule is not written yet: the engine).
                "expression": rule_functions.get(topic.code, "cds_service.rules.engine.run_rules"),
            },
        }],
    }
    if topic.thresholds:
        action["extension"] = [_threshold_extension(kb, name) for name in topic.thresholds]
    if order_sets:
        action["selectionBehavior"] = "at-most-one"
        action["action"] = [_suggestion_action(value_set) for value_set in order_sets]
    related = [{"type": "citation", "citation": topic.citation}]
    if topic.source_url:
        related.append({"type": "documentation", "label": "Source", "url": topic.source_url})
    related += [
        {"type": "depends-on", "display": kb.value_sets[name].title, "resource": canonical_url("ValueSet", name)}
        for name in topic.valuesets
    ]
    resource = _metadata("PlanDefinition", topic.code, topic.display, version)
    resource.update(
        type={"coding": [{"system": PLAN_TYPE, "code": "eca-rule", "display": "ECA Rule"}]},
        description=topic.when,
        relatedArtifact=related,
        action=[action],
    )
    return resource


def _rule_functions(kb: Knowledge) -> dict[str, str]:
    """Topic -> the Python function that decides it: a rule module's `evaluate`, or the engine's
    own for the data-unavailable topic."""
    from cds_service.rules.engine import DATA_UNAVAILABLE_TOPIC, data_unavailable_finding, discover_rules

    functions = {rule.topic: f"{rule.module.__name__}.evaluate" for rule in discover_rules(kb)}
    functions[DATA_UNAVAILABLE_TOPIC] = f"{data_unavailable_finding.__module__}.{data_unavailable_finding.__name__}"
    return functions


def knowledge_resources(kb: Knowledge, version: str | None = None) -> list[dict]:
    """Every resource of the knowledge base, the Library that gathers them last. Their `version` is
    the knowledge version: by default that of the reviewed seeds without a deployment's overrides."""
    from cds_service.config import Settings
    from cds_service.knowledge.version import knowledge_version

    version = version or knowledge_version(kb, Settings())
    resources = [value_set_resource(vs, version) for vs in kb.value_sets.values()]
    resources += [topic_code_system(kb, version), override_reason_code_system(kb, version)]
    functions = _rule_functions(kb)
    resources += [plan_definition(topic, kb, functions, version) for topic in kb.topics.values()]
    library = _metadata("Library", LIBRARY_ID, "Denosumab CDS knowledge base", version)
    library.update(
        type={"coding": [{"system": LIBRARY_TYPE, "code": "asset-collection", "display": "Asset Collection"}]},
        description=(
            "The value sets, code systems and rules (one PlanDefinition per card topic) of the Denosumab CDS "
            "service, exported from its reviewed seeds."
        ),
        relatedArtifact=[
            {"type": "composed-of", "display": r["title"], "resource": r["url"]} for r in resources
        ],
    )
    return resources + [library]


def validate(resource: dict) -> None:
    """Raise ExportError unless `resource` is a valid FHIR R4 resource of its type (fhir.resources R4B)."""
    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    except Exception as error:  # pydantic's ValidationError, or an unknown resourceType
        raise ExportError(f"{resource.get('resourceType')}/{resource.get('id')}: {error}") from None


def file_name(resource: dict) -> str:
    return f"{resource['resourceType']}-{resource['id']}.json"


def export_fhir(directory: Path, kb: Knowledge) -> list[Path]:
    """Validate every resource, then write each to `directory` (created) as <Type>-<id>.json.
    Nothing is written unless all of them validate."""
    resources = knowledge_resources(kb)
    for resource in resources:
        validate(resource)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for resource in resources:
        path = directory / file_name(resource)
        path.write_text(json.dumps(resource, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written


def run_export(args) -> int:
    """`denosumab-cds knowledge export --fhir DIR`."""
    import sys

    from cds_service.knowledge import load_knowledge

    directory = Path(args.fhir)
    if directory.exists() and not directory.is_dir():
        print(f"knowledge export: {directory} exists and is not a folder", file=sys.stderr)
        return 2
    try:
        written = export_fhir(directory, load_knowledge())
    except ExportError as error:
        print(f"knowledge export: a resource does not validate, nothing written: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        problem = error.strerror or type(error).__name__
        print(f"knowledge export: cannot write to {directory}: {problem}", file=sys.stderr)
        return 2
    counts: dict[str, int] = {}
    for path in written:
        kind = path.name.split("-", 1)[0]
        counts[kind] = counts.get(kind, 0) + 1
    summary = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    print(f"wrote {len(written)} FHIR R4 resources to {directory}: {summary}")
    return 0
