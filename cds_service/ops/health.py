"""Probes for load balancers and orchestrators: GET /healthz (liveness), GET /readyz (readiness).

Neither needs a JWT (a probe has none) and neither says anything about the configuration: no
store URL, no host names, no error text, only what is not ready."""

from __future__ import annotations

import json
import logging

from flask import Response
from sqlalchemy import Engine

from cds_service import __version__
from cds_service.errors import Issue, operation_outcome
from cds_service.ops.metrics import record_store_error

logger = logging.getLogger(__name__)
READY_RETRY_AFTER_SECONDS = 5


def _json(body: dict, status: int = 200, headers: dict | None = None) -> Response:
    # no-store: a cache between the prober and the service must not answer for the service
    headers = {"Cache-Control": "no-store", **(headers or {})}
    body_text = json.dumps(body, separators=(",", ":"))
    return Response(body_text, status=status, mimetype="application/json", headers=headers)


def health_body(service) -> dict:
    return {"status": "ok", "version": __version__, "knowledgeVersion": service.knowledge_version}


def knowledge_loaded(service) -> bool:
    """The knowledge base and the rules built on it are in memory."""
    kb = service.kb
    return kb is not None and bool(kb.topics) and bool(kb.value_sets) and bool(service.rules)


def store_answers(engine: Engine) -> bool:
    """One read of the store's own table. On the DB-API connection, below SQLAlchemy's transaction
    events: the ledger's SQLite engine begins every transaction IMMEDIATE (a write lock), which a
    probe must neither take nor wait for."""
    try:
        connection = engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute("SELECT name FROM store_meta LIMIT 1")
            cursor.fetchall()
            cursor.close()
        finally:
            connection.close()
    except Exception as error:  # any driver's error: the store is not there for us
        logger.warning("readiness: the store does not answer", extra={"fields": {"problem": type(error).__name__}})
        record_store_error("readiness")
        return False
    return True


def register_probes(app, service, store_engine: Engine) -> None:
    @app.get("/healthz")
    def healthz():
        return _json(health_body(service))

    @app.get("/readyz")
    def readyz():
        issues = []
        if not knowledge_loaded(service):
            issues.append(Issue("Not ready: the knowledge base is not loaded.", code="transient"))
        if not store_answers(store_engine):
            issues.append(Issue("Not ready: the store (card ledger, feedback) does not answer.", code="transient"))
        if issues:
            return _json(operation_outcome(issues), 503, {"Retry-After": str(READY_RETRY_AFTER_SECONDS)})
        return _json({"status": "ready"})
