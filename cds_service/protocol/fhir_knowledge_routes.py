"""GET /fhir/<ValueSet|CodeSystem|PlanDefinition|Library>/<id>: the knowledge base as FHIR R4
resources (cds_service.knowledge.fhir_export), read-only, for EHR analysts and terminology
servers. No JWT: they hold no patient data, only what seeds/ publishes anyway."""

from __future__ import annotations

import json
import threading

from flask import Response

from cds_service.errors import Issue, operation_outcome
from cds_service.knowledge.fhir_export import RESOURCE_TYPES, knowledge_resources

FHIR_JSON = "application/fhir+json"


def _serialized(body: dict) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def _fhir_response(body: dict | str, status: int = 200) -> Response:
    return Response(body if isinstance(body, str) else _serialized(body), status=status, mimetype=FHIR_JSON)


def register_knowledge_routes(app, kb) -> None:
    index: dict[tuple[str, str], str] = {}
    lock = threading.Lock()

    def resource(resource_type: str, resource_id: str) -> str | None:
        # Built and serialized on first use, once per worker (~60 ms: the export walks every seed;
        # the value sets of medications are large, 2 MiB in all), not at every start-up.
        with lock:
            if not index:
                index.update({(r["resourceType"], r["id"]): _serialized(r) for r in knowledge_resources(kb)})
        return index.get((resource_type, resource_id))

    @app.get("/fhir/<resource_type>/<resource_id>")
    def knowledge_resource(resource_type: str, resource_id: str):
        if resource_type not in RESOURCE_TYPES:
            known = ", ".join(RESOURCE_TYPES)
            message = f"No such resource type here: {resource_type[:64]}; this server has {known}."
            issue = Issue(message, code="not-supported")
            return _fhir_response(operation_outcome([issue]), 404)
        found = resource(resource_type, resource_id)
        if found is None:
            issue = Issue(f"No {resource_type} with id {resource_id[:64]!r}.", code="not-found")
            return _fhir_response(operation_outcome([issue]), 404)
        return _fhir_response(found)
