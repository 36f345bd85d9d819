"""The HTTP face of the service (Flask): thin routes that delegate to `HookService`.

Every error answer is a FHIR OperationOutcome; no stack trace ever reaches a client."""

from __future__ import annotations

import json
import logging
import os
import time

from flask import Flask, Response, current_app, g, request
from flask_cors import CORS
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from cds_service.config import Settings, load_settings
from cds_service.errors import CdsError, Issue, bad_request, operation_outcome
from cds_service.evaluate import Clock, HookService, utc_now
from cds_service.feedback import open_feedback
from cds_service.json_parse import InvalidJson, parse_json
from cds_service.logs import log_call
from cds_service.openapi import openapi_document
from cds_service.ops import metrics
from cds_service.ops.health import register_probes
from cds_service.protocol.auth import Caller, anonymous_caller
from cds_service.protocol.http_read import BodyTooLarge, ResponseUnreadable, inflated
from cds_service.protocol.fhir_knowledge_routes import register_knowledge_routes
from cds_service.protocol.hook_body import HookBodyParser
from cds_service.record.outline import ObservationOutline

logger = logging.getLogger(__name__)
JSON = "application/json"
BENCH_FLOOR_ENV_VAR = "DENOSUMAB_CDS_BENCH_FLOOR"
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})  # not in the access log when they answer 200


def _json_response(body: dict, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status=status, mimetype=JSON, headers=headers)


def _request_body() -> bytes:
    """The body, 413 past MAX_CONTENT_LENGTH. One with a Content-Length is read from the server's
    input in one call: werkzeug's bounded stream reads it in slices, and gunicorn copies its
    buffer for every slice (2 ms of a 600 KiB body, bench/RESULTS.md). A chunked one goes through
    werkzeug's stream, which counts as it reads."""
    length = request.content_length
    if length is None:
        return request.get_data(cache=False)
    if length > current_app.config["MAX_CONTENT_LENGTH"]:
        raise RequestEntityTooLarge()
    return request.environ["wsgi.input"].read(length) if length else b""


def _read_json_body(parse=parse_json):
    """The request body, parsed by `parse` (parse_json, or a HookBodyParser's); 400 when it is not JSON."""
    raw = _request_body()
    encoding = request.headers.get("Content-Encoding")
    if encoding and encoding.strip().lower() != "identity":
        raw = _decompressed(raw, encoding)
    if not raw:
        raise bad_request("The request body is empty; a CDS Hooks request is a JSON object.")
    try:
        return parse(raw)
    except InvalidJson as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}.", code="structure") from None


def _decompressed(raw: bytes, encoding: str) -> bytes:
    """A gzip (or deflate) body, decompressed under the same size limit as a plain one."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if encoding.strip().lower() not in ("gzip", "x-gzip", "deflate"):
        raise CdsError(415, (Issue(
            f"Content-Encoding {encoding.strip()[:40]!r} is not supported; send the body as is, or with gzip or deflate",
            code="not-supported", expression=("Content-Encoding",),
        ),))
    try:
        return b"".join(inflated((raw,), encoding, limit))
    except BodyTooLarge:
        raise CdsError(413, (Issue(f"The request body is larger than {limit} bytes once decompressed.", code="too-costly"),)) from None
    except ResponseUnreadable:
        raise bad_request("The request body is not valid gzip or deflate data (Content-Encoding).", code="structure") from None


def create_app(settings: Settings | None = None, *, hook_service: HookService | None = None, clock: Clock | None = None) -> Flask:
    settings = settings or load_settings()
    app = Flask(__name__, static_folder=None)  # no static files: nothing to serve but the API
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.url_map.strict_slashes = False  # /cds-services/order-sign/ is /cds-services/order-sign
    app.json.sort_keys = False
    service = hook_service or HookService(settings, clock=clock or utc_now)
    hook_bodies = {  # per service: a history's Observations read in outline, in one pass
        definition.id: HookBodyParser(
            ObservationOutline, prefetch_keys=tuple(t.key for t in definition.prefetch),
            outlined_keys=frozenset(t.key for t in definition.prefetch if t.resource_type == ObservationOutline.kind()),
        )
        for definition in service.services.values()
    }
    app.extensions["denosumab_cds"] = service
    feedback_receiver = app.extensions["denosumab_cds_feedback"] = open_feedback(settings, service)  # + card ledger
    CORS(
        app,
        origins=list(settings.cors_origins),
        allow_headers=["Authorization", "Content-Type", "Content-Encoding"],
        expose_headers=["X-Skipped-Resources", "Retry-After", "WWW-Authenticate"],
        methods=["GET", "POST", "OPTIONS"],
        max_age=600,
    )
    verifier = None
    if settings.require_jwt:
        from cds_service.protocol.jwt_auth import JwtVerifier

        verifier = JwtVerifier(settings)
    app.extensions["denosumab_cds_jwt"] = verifier

    def authenticate() -> Caller:
        if "caller" in g:  # once per request: a second check would see its own jti as a replay
            return g.caller
        if verifier is None:
            g.caller = anonymous_caller(settings)
        else:
            called = f"{settings.public_base_url}{request.path}"
            # The EHR signs the URL it calls; with or without the trailing slash it is one endpoint.
            audience = called if not called.endswith("/") else [called, called.rstrip("/")]
            g.caller = verifier.verify(request.headers.get("Authorization"), audience)
        return g.caller

    @app.before_request
    def start_timer():
        g.started = time.perf_counter()

    @app.before_request
    def authenticate_cds_routes():
        # Every /cds-services route, including any added later, needs a verified caller; a CORS
        # preflight carries no credentials and is answered without one.
        if request.method != "OPTIONS" and (request.path == "/cds-services" or request.path.startswith("/cds-services/")):
            g.service_id = (request.view_args or {}).get("service_id")  # in the access log of a 401 too
            authenticate()

    metrics.declare_label_values(service.services, service.kb.topics)
    service.listeners.append(metrics.record_cards)
    register_probes(app, service, feedback_receiver.engine)
    metrics.register_metrics_route(app, settings, authenticate)
    register_knowledge_routes(app, service.kb, settings.public_base_url)

    openapi = openapi_document(service.services)

    @app.get("/openapi.json")
    def openapi_description():
        return _json_response(openapi)

    @app.get("/cds-services")
    def discovery():
        return _json_response(service.discovery())

    @app.post("/cds-services/<service_id>")
    def hook_call(service_id: str):
        g.service_id = service_id
        caller = authenticate()
        service.service(service_id)  # 404 before reading a body for a service that does not exist
        outcome = service.evaluate(service_id, _read_json_body(hook_bodies[service_id].parse), caller)
        g.outcome = outcome
        headers = {"X-Skipped-Resources": str(len(outcome.skipped))} if outcome.skipped else None
        return _json_response(outcome.response, headers=headers)

    @app.post("/cds-services/<service_id>/feedback")
    def feedback(service_id: str):
        g.service_id = service_id
        service.service(service_id)  # 404 for a service that does not exist
        return _json_response(feedback_receiver.receive(service_id, _read_json_body(), authenticate()))

    if os.environ.get(BENCH_FLOOR_ENV_VAR) == "1":
        # The benchmark's floor (bench/): same server and app, the body read as the bare framework
        # reads it (Flask's own JSON), none of the service's work: beside bench/floor_app.py it
        # shows what the app's middleware costs. Never on unless asked for by name.
        @app.post("/bench/floor")
        def bench_floor():
            request.get_json()
            return _json_response({"cards": []})

    @app.errorhandler(CdsError)
    def cds_error(error: CdsError):
        g.error = str(error)
        return _json_response(error.body(), error.status, error.headers)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if isinstance(error, RequestEntityTooLarge):
            message = f"The request body is larger than {settings.max_body_bytes} bytes."
            issue = Issue(message, code="too-costly")
        elif error.code == 404:
            issue = Issue(f"No such endpoint: {request.method} {request.path}", code="not-found")
        elif error.code == 405:
            issue = Issue(f"{request.method} is not allowed on {request.path}", code="not-supported")
        else:
            issue = Issue(error.description or error.name, code="processing")
        headers = {"Allow": ", ".join(error.valid_methods)} if getattr(error, "valid_methods", None) else None
        return _json_response(operation_outcome([issue]), error.code or 500, headers)

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        # Our bug: log the type and where, never the input; the client gets a generic outcome.
        logger.error("unhandled error in %s", request.path, exc_info=(type(error), error, error.__traceback__))
        g.error = type(error).__name__
        return _json_response(
            operation_outcome([Issue("Internal error; the service log has the details.", code="exception", severity="fatal")]),
            500,
        )

    @app.after_request
    def access_log(response: Response):
        outcome = g.get("outcome")
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        fields = {
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round(seconds * 1000, 1),
        }
        if request.path in QUIET_PATHS and response.status_code == 200:
            return response  # a probe or scrape every few seconds: only its failures are news
        if request.method == "OPTIONS":
            # A browser client's CORS preflight: a wrong URL or origin shows here, or nowhere.
            fields.update(preflight=True, origin=(request.headers.get("Origin") or "")[:256] or None)
        else:
            metrics.record_request(request.path, response.status_code, seconds)
        caller = g.get("caller")
        if caller is not None and caller.iss is not None:
            fields.update(iss=caller.iss, tenant=caller.tenant)
        if g.get("service_id") is not None:
            fields["service"] = g.service_id
        if outcome is not None:
            fields.update(
                hookInstance=outcome.request.hook_instance,
                fhir_fetches=outcome.fhir_requests,
                topics=outcome.topics,
                skipped_resources=len(outcome.skipped),
                skipped=[s.description for s in outcome.skipped[:10]],
                unavailable=list(outcome.unavailable),
            )
        if g.get("error"):
            fields["error"] = g.error
        log_call(**fields)
        return response

    if settings.trial_mode:
        logger.warning(
            "LOCAL TRIAL MODE: no configuration file, so no JWT is checked and no FHIR server is "
            "contacted. Do not expose this to a network; pass --config for production."
        )
    elif not settings.require_jwt and not settings.listens_on_loopback:
        logger.warning(
            "auth.require_jwt is false and the service listens on %s: calls are accepted without "
            "authentication (no JWT is checked). Set require_jwt = true with [[clients]], or listen on 127.0.0.1.",
            settings.host,
        )
    return app
