"""Prometheus metrics of the service, served at GET /metrics (prometheus_client).

Under `denosumab-cds serve` every gunicorn worker writes its values to the shared folder that
`cds_service.ops.multiprocess` sets up, and a scrape adds up every worker's (multiprocess mode);
without that folder (tests, `denosumab-cds check`) the values live in this process.

No label holds patient or resource data, nor anything a caller can choose freely: every label
value comes from a fixed list (service ids of hooks/, topics of seeds/topics.toml, the reasons and
operations below), and a value outside it is counted as "unknown"/"other". Every label value is
declared at zero before the first event (`declare_label_values`), so every family and series is
in the first scrape and a rate() over it never starts from nothing.

Families:
- denosumab_cds_requests_total{service,status}, denosumab_cds_request_duration_seconds{service}:
  calls under /cds-services; service is the CDS service id of a hook call, "discovery",
  "feedback" (any service's feedback), or "unknown" (no such service);
- denosumab_cds_cards_total{topic,indicator}: cards answered;
- denosumab_cds_cards_suppressed_total{topic}: cards not shown because of an earlier override
  (`record_suppressed`, called by the suppression code);
- denosumab_cds_fhir_queries_total{outcome}: queries to an EHR's FHIR server (one per prefetch key
  fetched, all its pages): ok, error, timeout, truncated (stopped at the page limit);
- denosumab_cds_jwt_rejected_total{reason}: refused tokens, by kind of reason;
- denosumab_cds_store_errors_total{operation}: store failures, by what was being done.
"""

from __future__ import annotations

import os
from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder

from cds_service.ops.multiprocess import METRICS_DIR_ENV_VAR, folder_lock

INDICATORS = ("critical", "warning", "info")
# The statuses the service answers under /cds-services, declared so that an error rate has both sides.
DECLARED_STATUSES = ("200", "400", "401", "404", "405", "412", "413", "415", "500", "503")
FHIR_QUERY_OUTCOMES = ("ok", "error", "timeout", "truncated")
# What the store was doing when it failed.
STORE_OPERATIONS = ("ledger-write", "suppression-lookup", "feedback-write", "replay-check", "readiness")
DISCOVERY, FEEDBACK, UNKNOWN = "discovery", "feedback", "unknown"
# A JWT rejection's reason (cds_service.protocol.jwt_auth.TokenRejected, words for the log, some
# quoting the token) -> its label: the first prefix that matches wins; anything else is "other".
JWT_REJECTION_REASONS = (
    ("no Authorization header", "missing"),
    ("Authorization is not a Bearer", "not-bearer"),
    ("token too long", "too-long"),
    ("malformed token", "malformed"),
    ("algorithm ", "algorithm"),
    ("iss is not", "unknown-issuer"),
    ("tenant ", "tenant"),
    ("no kid", "no-kid"),
    ("jku ", "jku"),
    ("kid is not", "unknown-kid"),
    ("key ", "key-mismatch"),
    ("token expired", "expired"),
    ("iat or nbf", "not-yet-valid"),
    ("aud ", "audience"),
    ("claim ", "missing-claim"),
    ("signature ", "signature"),
    ("jti already used", "replay"),
    ("jti is not", "jti-invalid"),
    ("invalid token", "invalid"),
)
JWT_REASON_LABELS = tuple(dict.fromkeys(label for _, label in JWT_REJECTION_REASONS)) + ("other",)
# Hook calls run from about 5 ms (no cards) to the FHIR deadline (2 s by default) and beyond.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "denosumab_cds_requests", "Calls under /cds-services, by CDS service and HTTP status.", ("service", "status")
)
REQUEST_DURATION = Histogram(
    "denosumab_cds_request_duration_seconds", "Time to answer a call under /cds-services, by CDS service.",
    ("service",), buckets=DURATION_BUCKETS,
)
CARDS = Counter("denosumab_cds_cards", "Cards answered, by topic and indicator.", ("topic", "indicator"))
CARDS_SUPPRESSED = Counter(
    "denosumab_cds_cards_suppressed", "Cards not shown because an earlier card of the topic was overridden.", ("topic",)
)
FHIR_QUERIES = Counter(
    "denosumab_cds_fhir_queries", "Queries to an EHR's FHIR server (one per prefetch key fetched), by outcome.",
    ("outcome",),
)
JWT_REJECTED = Counter("denosumab_cds_jwt_rejected", "Bearer tokens refused, by kind of reason.", ("reason",))
STORE_ERRORS = Counter("denosumab_cds_store_errors", "Failures of the store, by operation.", ("operation",))

_known_services: set[str] = set()
_known_topics: set[str] = set()
_children: dict[tuple, object] = {}


def _child(metric, *label_values: str):
    """metric.labels(...), remembered: a look-up instead of the library's checks and lock on every
    event (the label values are from bounded lists, so this stays small)."""
    key = (id(metric), label_values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*label_values)
    return child


def declare_label_values(service_ids: Iterable[str], topics: Iterable[str]) -> None:
    """Create every series at zero (idempotent): every family is in the first scrape."""
    _known_services.update(service_ids)
    _known_topics.update(topics)
    for service in sorted(_known_services) + [DISCOVERY, FEEDBACK, UNKNOWN]:
        REQUEST_DURATION.labels(service)
        for status in DECLARED_STATUSES:
            REQUESTS.labels(service, status)
    for topic in sorted(_known_topics):
        CARDS_SUPPRESSED.labels(topic)
        for indicator in INDICATORS:
            CARDS.labels(topic, indicator)
    for outcome in FHIR_QUERY_OUTCOMES:
        FHIR_QUERIES.labels(outcome)
    for reason in JWT_REASON_LABELS:
        JWT_REJECTED.labels(reason)
    for operation in STORE_OPERATIONS:
        STORE_ERRORS.labels(operation)


def service_label(path: str) -> str | None:
    """The service label of a request path; None outside /cds-services (not counted)."""
    if path == "/cds-services":
        return DISCOVERY
    if not path.startswith("/cds-services/"):
        return None
    parts = path.removeprefix("/cds-services/").split("/")
    if len(parts) == 2 and parts[1] == "feedback" and parts[0] in _known_services:
        return FEEDBACK
    return parts[0] if len(parts) == 1 and parts[0] in _known_services else UNKNOWN


def record_request(path: str, status: int, seconds: float) -> None:
    service = service_label(path)
    if service is None:
        return
    _child(REQUESTS, service, str(status)).inc()
    _child(REQUEST_DURATION, service).observe(seconds)


def record_cards(_request, response: dict, _record=None, _as_of=None) -> None:
    """Count the cards of a response (a `HookService` listener: called with every answer that ran rules)."""
    for card in response.get("cards") or ():
        topic = card["source"]["topic"]["code"]
        indicator = card["indicator"]
        topic = topic if topic in _known_topics else UNKNOWN
        _child(CARDS, topic, indicator if indicator in INDICATORS else UNKNOWN).inc()


def record_suppressed(topic: str) -> None:
    """One card of `topic` not shown because it was overridden before (suppression after override)."""
    _child(CARDS_SUPPRESSED, topic if topic in _known_topics else UNKNOWN).inc()


def fhir_query_outcome(result) -> str:
    """ok, error, timeout or truncated, for one `protocol.fhir_client.FetchResult`."""
    if result.error is None:
        return "ok"
    return {"page-limit": "truncated", "timed-out": "timeout"}.get(result.cause, "error")


def record_fhir_queries(results: Iterable) -> None:
    for outcome, count in Tally(fhir_query_outcome(result) for result in results).items():
        _child(FHIR_QUERIES, outcome).inc(count)


def jwt_rejection_label(reason: str) -> str:
    return next((label for prefix, label in JWT_REJECTION_REASONS if reason.startswith(prefix)), "other")


def record_jwt_rejected(reason: str) -> None:
    _child(JWT_REJECTED, jwt_rejection_label(reason)).inc()


def record_store_error(operation: str) -> None:
    _child(STORE_ERRORS, operation if operation in STORE_OPERATIONS else "other").inc()


def exposition(accept_header: str | None) -> tuple[bytes, str]:
    """(body, content type) of a scrape: every worker's values added up under gunicorn."""
    encoder, content_type = choose_encoder(accept_header or "")
    directory = os.environ.get(METRICS_DIR_ENV_VAR)
    if not directory:
        return encoder(REGISTRY), content_type
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    with folder_lock(directory, exclusive=False):  # no dead worker's files folded mid-read
        return encoder(registry), content_type


def register_metrics_route(app, settings, authenticate) -> None:
    """GET /metrics, when `[metrics] enabled`; behind the JWT check when `[metrics] require_jwt`."""
    from flask import Response, request

    if not settings.metrics_enabled:
        return

    @app.get("/metrics")
    def metrics():
        if settings.metrics_require_jwt:
            authenticate()
        body, content_type = exposition(request.headers.get("Accept"))
        return Response(body, mimetype=None, content_type=content_type)
