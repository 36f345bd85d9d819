"""The knowledge base as a read-only FHIR R4 server (cds_service.knowledge.fhir_export), for EHR
analysts, terminology servers and knowledge repositories:

- GET /fhir/<ValueSet|CodeSystem|PlanDefinition|Library>/<id>: one resource (read);
- GET /fhir/<type>?url=<canonical>: a searchset Bundle (search by canonical URL or `_id`; no
  parameter: every resource of the type), as FHIR clients resolve a canonical reference;
- GET /fhir/metadata: the CapabilityStatement that says so.

No JWT: these hold no patient data, only what seeds/ publishes anyway."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone

from flask import Response, request

from cds_service import __version__
from cds_service.cards.build import SERVICE_LABEL
from cds_service.errors import Issue, operation_outcome
from cds_service.knowledge.fhir_export import RESOURCE_TYPES, knowledge_resources

FHIR_JSON = "application/fhir+json"


def _serialized(body: dict) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def _fhir_response(body: dict | str, status: int = 200) -> Response:
    return Response(body if isinstance(body, str) else _serialized(body), status=status, mimetype=FHIR_JSON)


def _not_found(message: str, code: str = "not-found") -> Response:
    return _fhir_response(operation_outcome([Issue(message, code=code)]), 404)


def capability_statement() -> dict:
    resources = [
        {
            "type": resource_type,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [{"name": "url", "type": "uri"}, {"name": "_id", "type": "token"}],
        }
        for resource_type in RESOURCE_TYPES
    ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": datetime.now(timezone.utc).date().isoformat(),
        "publisher": SERVICE_LABEL,
        "kind": "instance",
        "software": {"name": SERVICE_LABEL, "version": __version__},
        "implementation": {"description": "The Denosumab CDS knowledge base (value sets, code systems, rules), read-only"},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [{"mode": "server", "resource": resources}],
    }


class _KnowledgeIndex:
    """The resources, built and serialized on first use, once per worker (~60 ms: the export walks
    every seed; the medication value sets are large, 2 MiB in all), not at every start-up."""

    def __init__(self, kb):
        self.kb = kb
        self.lock = threading.Lock()
        self.by_key: dict[tuple[str, str], tuple[dict, str]] = {}

    def entries(self) -> dict[tuple[str, str], tuple[dict, str]]:
        with self.lock:
            if not self.by_key:
                self.by_key = {(r["resourceType"], r["id"]): (r, _serialized(r)) for r in knowledge_resources(self.kb)}
            return self.by_key


def register_knowledge_routes(app, kb, public_base_url: str | None = None) -> None:
    index = _KnowledgeIndex(kb)
    metadata = _serialized(capability_statement())

    def unknown_type(resource_type: str) -> Response:
        known = ", ".join(RESOURCE_TYPES)
        return _not_found(f"No such resource type here: {resource_type[:64]}; this server has {known}.", "not-supported")

    @app.get("/fhir/metadata")
    def knowledge_capabilities():
        return _fhir_response(metadata)

    @app.get("/fhir/<resource_type>/<resource_id>")
    def knowledge_resource(resource_type: str, resource_id: str):
        if resource_type not in RESOURCE_TYPES:
            return unknown_type(resource_type)
        found = index.entries().get((resource_type, resource_id))
        if found is None:
            return _not_found(f"No {resource_type} with id {resource_id[:64]!r}.")
        return _fhir_response(found[1])

    @app.get("/fhir/<resource_type>")
    def knowledge_search(resource_type: str):
        if resource_type not in RESOURCE_TYPES:
            return unknown_type(resource_type)
        url, resource_id = request.args.get("url"), request.args.get("_id")
        matches = [
            (resource, text) for (kind, _), (resource, text) in index.entries().items()
            if kind == resource_type and url in (None, resource["url"]) and resource_id in (None, resource["id"])
        ]
        base = (public_base_url or request.url_root).rstrip("/")

        def entry_of(resource: dict, text: str) -> str:
            full_url = json.dumps(f"{base}/fhir/{resource_type}/{resource['id']}")
            return f'{{"fullUrl":{full_url},"resource":{text},"search":{{"mode":"match"}}}}'

        entries = ",".join(entry_of(resource, text) for resource, text in matches)
        # Joined from the serialized resources: a search of every ValueSet is 2 MiB, not re-encoded per call.
        entry = f',"entry":[{entries}]' if matches else ""  # FHIR allows no empty array
        return _fhir_response(f'{{"resourceType":"Bundle","type":"searchset","total":{len(matches)}{entry}}}')
