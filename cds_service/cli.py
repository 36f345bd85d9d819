"""`denosumab-cds`: serve the service, check one saved hook request offline, or report card outcomes."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
from pathlib import Path

from cds_service.config import ConfigError, load_settings
from cds_service.errors import CdsError
from cds_service.logs import configure_logging
from cds_service.record.dates import parse_day_or_time

logger = logging.getLogger(__name__)
GC_YOUNG_THRESHOLD = 10_000  # allocations between young collections in a worker (Python's default: 700)


def gunicorn_options(settings) -> dict:
    """The gunicorn settings `serve` runs with."""
    from cds_service.workers import WORKER_CLASSES

    return {
        "bind": f"{settings.host}:{settings.port}",
        "workers": settings.workers,
        # One call at a time per worker by default (sync): the work is CPU-bound, and threads sharing
        # one interpreter took turns every few milliseconds, which cost ~25 % more CPU per call and
        # doubled p99 (bench/RESULTS.md). Threads (gthread) pay off where calls mostly wait on FHIR
        # servers. Both answer malformed HTTP with an OperationOutcome (cds_service/workers.py).
        "worker_class": WORKER_CLASSES["gthread" if settings.threads > 1 else "sync"],
        "threads": settings.threads,
        "timeout": 30,
        "accesslog": None,  # our own JSON line per call replaces it (no query strings)
        "max_requests": settings.max_requests,
        # Workers started together would otherwise all restart at the same moment.
        "max_requests_jitter": settings.max_requests // 10,
    }


def _serve(args) -> int:
    from gunicorn.app.base import BaseApplication

    from cds_service.app import create_app

    settings = load_settings(args.config)
    overrides = {}
    if args.host:
        overrides["host"] = args.host
    if args.port:
        overrides["port"] = args.port
    if args.workers:
        overrides["workers"] = args.workers
    settings = settings.with_overrides(**overrides)
    if settings.trial_mode and settings.host not in ("127.0.0.1", "localhost", "::1"):
        logger.error("trial mode (no --config) listens on 127.0.0.1 only; give a configuration file to bind %s", settings.host)
        return 2
    app = create_app(settings)  # built before forking: models, knowledge and rules load once

    def post_fork(_server, _worker):
        # Freeze the start-up heap so request-time garbage collections skip the large import graph.
        gc.freeze()
        # A parsed prefetch is hundreds of thousands of acyclic containers: with the default 700,
        # a 10,000-Observation call ran ~300 young and ~3 full collections (bench/RESULTS.md).
        gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)

    class Server(BaseApplication):
        def load_config(self):
            for name, value in gunicorn_options(settings).items():
                self.cfg.set(name, value)
            self.cfg.set("post_fork", post_fork)

        def load(self):
            return app

    Server().run()
    return 0


def _check(args) -> int:
    from cds_service.evaluate import HookService
    from cds_service.protocol.auth import anonymous_caller

    settings = load_settings(args.config)
    document = json.loads(Path(args.request).read_text(encoding="utf-8"))
    # A fixture file wraps the request with its expectations; a plain hook request is used as is.
    body = document.get("request", document) if isinstance(document, dict) else document
    service_id = args.service or (document.get("service") if isinstance(document, dict) else None) or body.get("hook")
    given = args.as_of or (document.get("asOf") if args.fixture_time and isinstance(document, dict) else None)
    try:
        as_of = parse_day_or_time(given) if given else None
    except ValueError as error:
        print(f"check: {error}", file=sys.stderr)
        return 2
    service = HookService(settings, clock=(lambda: as_of) if as_of else HookService.clock)
    records = []
    service.listeners.append(lambda _request, _response, record, _as_of: records.append(record))
    try:
        outcome = service.evaluate(service_id, body, anonymous_caller(settings))
    except CdsError as error:
        json.dump(error.body(), sys.stdout, indent=2)
        print()
        return 1
    skipped = outcome.skipped
    if records:
        # A hook call validates only the history the rules read; an integrator checking a request
        # wants every unusable resource listed.
        records[0].read_everything()
        skipped = records[0].skipped
    for resource in skipped:
        print(f"skipped ({resource.where}) {resource.reference or ''}: {resource.description}", file=sys.stderr)
    for lab in records[0].value_readings() if records else ():
        print(f"value ({lab.analyte}) Observation/{lab.id or '(no id)'}: {lab.reading}", file=sys.stderr)
    json.dump(outcome.response, sys.stdout, indent=2)
    print()
    return 0


def _report(args) -> int:
    from cds_service.report import run_report

    return run_report(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="denosumab-cds", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the CDS Hooks service under gunicorn")
    serve.add_argument("--config", help="TOML configuration file (default: $DENOSUMAB_CDS_CONFIG, else local trial mode)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.set_defaults(handler=_serve)
    check = commands.add_parser("check", help="evaluate one saved hook request and print the CDS Hooks response")
    check.add_argument("request", help="hook request JSON (or a fixture file from fixtures/)")
    check.add_argument("--config")
    check.add_argument("--service", help="service id (default: the fixture's service, else the request's hook)")
    check.add_argument("--as-of", help="evaluate as of this ISO date-time instead of now")
    check.add_argument("--fixture-time", action="store_true", help="evaluate as of the fixture's asOf")
    check.set_defaults(handler=_check)
    report = commands.add_parser("report", help="card outcomes per topic (accepted, overridden, reasons) for the CDS committee")
    report.add_argument("--config", help="TOML configuration file whose [store] url to read")
    report.add_argument("--since", help="cards issued on or after this date (YYYY-MM-DD, UTC) or ISO date-time")
    report.add_argument("--until", help="cards issued before this date or date-time")
    report.add_argument("--format", choices=["table", "csv", "json"], default="table")
    report.add_argument("--top", type=int, default=5, help="override reasons and suggestions listed per topic")
    report.add_argument("--plot", help="also write a bar chart of acceptance by topic: an HTML page, or SVG if PATH ends in .svg")
    report.set_defaults(handler=_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        return args.handler(args)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
