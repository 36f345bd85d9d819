"""`denosumab-cds`: serve the service, check one saved hook request offline, or report card outcomes."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from cds_service.config import ConfigError, load_settings
from cds_service.errors import CdsError
from cds_service.json_parse import InvalidJson, parse_json
from cds_service.knowledge import KnowledgeError
from cds_service.logs import configure_logging, gunicorn_logconfig
from cds_service.ops.multiprocess import gunicorn_metrics_hooks, start_multiprocess_metrics
from cds_service.record.dates import parse_day_or_time

logger = logging.getLogger(__name__)
GC_YOUNG_THRESHOLD = 10_000  # allocations between young collections in a worker (Python's default: 700)


def gunicorn_options(settings) -> dict:
    """The gunicorn settings `serve` runs with."""
    from cds_service.workers import WORKER_CLASSES

    options = {
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
        "logconfig_dict": gunicorn_logconfig(),  # gunicorn's own lines as JSON too
        "logger_class": "cds_service.workers.ServiceLogger",
        "max_requests": settings.max_requests,
        # Workers started together would otherwise all restart at the same moment.
        "max_requests_jitter": settings.max_requests // 10,
    }
    if has_gunicorn_setting("control_socket_disable"):
        # gunicorn 25.1+ opens a control socket (`gunicornc`: reload, stop, change workers) at one
        # path per user, taken over by the next gunicorn of that user and removed when either
        # stops: a second instance on the host (a deploy's new one) would take the first's. The
        # service does not use it (it has its own probes and metrics): none is opened.
        options["control_socket_disable"] = True
    return options


def has_gunicorn_setting(name: str) -> bool:
    """Whether the installed gunicorn knows the setting (pyproject allows gunicorn 22 on)."""
    from gunicorn.config import KNOWN_SETTINGS

    return any(setting.name == name for setting in KNOWN_SETTINGS)


def _serve(args) -> int:
    settings = load_settings(args.config)  # a configuration mistake stops here, before anything starts
    from cds_service.config import unsupported_store_url
    from cds_service.store.ledger import store_url

    if problem := unsupported_store_url(store_url(settings)):  # also a $DENOSUMAB_CDS_STORE_URL
        raise ConfigError(f"store.url: {problem}")
    metrics_dir = start_multiprocess_metrics()  # before prometheus_client is imported (by the app)
    from gunicorn.app.base import BaseApplication

    from cds_service.app import create_app

    overrides = {}
    if args.host:
        overrides["host"] = args.host
    if args.port:
        overrides["port"] = args.port
    if args.workers:
        overrides["workers"] = args.workers
    settings = settings.with_overrides(**overrides)
    if settings.trial_mode and not settings.listens_on_loopback:
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
            for name, hook in gunicorn_metrics_hooks(metrics_dir).items():
                self.cfg.set(name, hook)

        def load(self):
            return app

    Server().run()
    return 0


def _check(args) -> int:
    from cds_service.evaluate import HookService
    from cds_service.protocol.auth import anonymous_caller

    settings = load_settings(args.config)
    try:
        document = read_hook_request(Path(args.request))
    except ValueError as error:
        print(f"check: {error}", file=sys.stderr)
        return 2
    # A fixture file wraps the request with its expectations; a plain hook request is used as is.
    body = document.get("request", document)
    service_id = args.service or document.get("service") or body.get("hook")
    if not service_id:
        print(f'check: {args.request}: the request has no "hook" (give --service to check it anyway)', file=sys.stderr)
        return 2
    given = args.as_of or (document.get("asOf") if args.fixture_time else None)
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


def read_hook_request(path: Path) -> dict:
    """A saved hook request (or fixture) as a JSON object; ValueError with a one-line reason."""
    try:
        document = parse_json(path.read_bytes())  # the service's own parser: `check` accepts what `serve` does
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory, not a JSON file") from None
    except OSError as error:
        raise ValueError(f"{path}: cannot be read ({error.strerror or error})") from None
    except InvalidJson as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise ValueError(f"{path}: a hook request is a JSON object, not {_json_kind(document)}")
    if not isinstance(document.get("request", document), dict):
        raise ValueError(f'{path}: the fixture\'s "request" must be a JSON object, not {_json_kind(document["request"])}')
    return document


def _json_kind(value) -> str:
    return {list: "an array", str: "a string", bool: "true or false", type(None): "null"}.get(type(value), "a number")


# `--plot` writes what report.py renders: SVG, alone or inside a self-contained HTML page.
PLOT_SUFFIXES = (".html", ".htm", ".svg")


def plot_path_problem(plot: str) -> str | None:
    """Why `report --plot` cannot write to this path, or None."""
    path = Path(plot)
    if path.suffix.lower() not in PLOT_SUFFIXES:
        return (f"--plot {plot}: the chart is written as an HTML page (.html) or SVG (.svg), "
                f"not {path.suffix or 'a file without extension'}; convert the SVG for other formats")
    if path.is_dir():
        return f"--plot {plot}: is a directory"
    folder = path.parent
    if not folder.is_dir():
        return f"--plot {plot}: folder {folder} does not exist"
    if not os.access(folder, os.W_OK):
        return f"--plot {plot}: folder {folder} is not writable"
    return None


def _fixture_request(args) -> int:
    from cds_service.dated_request import request_dated

    try:
        scenario = read_hook_request(Path(args.fixture))
        if not isinstance(scenario.get("asOf"), str) or "request" not in scenario:
            raise ValueError(f'{args.fixture}: not a fixture (a fixture has "request" and "asOf")')
        moment = parse_day_or_time(args.as_of) if args.as_of else datetime.now(timezone.utc)
        request = request_dated(scenario, moment)
    except ValueError as error:
        print(f"fixture-request: {error}", file=sys.stderr)
        return 2
    json.dump(request, sys.stdout, indent=2)
    print()
    return 0


def _report(args) -> int:
    from cds_service.report import run_report

    if args.plot and (problem := plot_path_problem(args.plot)):
        print(f"report: {problem}", file=sys.stderr)
        return 2
    return run_report(args)


def _port(text: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (1-65535)")
    return port


def _positive(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text} is not at least 1")
    return number


class _VersionAction(argparse.Action):
    """`--version`: the release and the knowledge version of the seeds and the configuration."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print the version and the knowledge version, then exit")

    def __call__(self, parser, namespace, values, option_string=None):
        from cds_service.knowledge import load_knowledge
        from cds_service.knowledge.version import knowledge_version, release

        try:
            settings = load_settings()  # $DENOSUMAB_CDS_CONFIG when set: its overrides are part of the version
        except ConfigError as error:
            parser.exit(2, f"configuration error: {error}\n")
        kb = load_knowledge(threshold_overrides=settings.threshold_overrides or None)
        print(f"denosumab-cds {release()} knowledge {knowledge_version(kb, settings)}")
        parser.exit()


def _knowledge_export(args) -> int:
    from cds_service.knowledge.fhir_export import run_export

    return run_export(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="denosumab-cds", description=__doc__)
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the CDS Hooks service under gunicorn")
    serve.add_argument("--config", help="TOML configuration file (default: $DENOSUMAB_CDS_CONFIG, else local trial mode)")
    serve.add_argument("--host", help="address to listen on (default: [server] host of the file, 0.0.0.0; "
                       "127.0.0.1 in trial mode, which listens on loopback only)")
    serve.add_argument("--port", type=_port, help="TCP port (default: [server] port of the file, 8080)")
    serve.add_argument("--workers", type=_positive, help="worker processes (default: [server] workers of the file, 2)")
    serve.set_defaults(handler=_serve)
    check = commands.add_parser("check", help="evaluate one saved hook request and print the CDS Hooks response")
    check.add_argument("request", help="hook request JSON (or a fixture file from fixtures/)")
    check.add_argument("--config", help="TOML configuration file (default: $DENOSUMAB_CDS_CONFIG, else trial mode)")
    check.add_argument("--service", help="service id (default: the fixture's service, else the request's hook)")
    check.add_argument("--as-of", help="evaluate as of this ISO date-time instead of now")
    check.add_argument("--fixture-time", action="store_true", help="evaluate as of the fixture's asOf")
    check.set_defaults(handler=_check)
    fixture = commands.add_parser(
        "fixture-request", help="print a fixture's hook request with its dates moved so that its asOf is now (to send live)"
    )
    fixture.add_argument("fixture", help="a fixture file from fixtures/scenarios/")
    fixture.add_argument("--as-of", help="move the dates to this ISO date-time instead of now")
    fixture.set_defaults(handler=_fixture_request)
    report = commands.add_parser("report", help="card outcomes per topic (accepted, overridden, reasons) for the CDS committee")
    report.add_argument("--config", help="TOML configuration file whose [store] url to read")
    report.add_argument("--since", help="cards issued on or after this date (YYYY-MM-DD, UTC) or ISO date-time")
    report.add_argument("--until", help="cards issued before this date or date-time")
    report.add_argument("--format", choices=["table", "csv", "json"], default="table")
    report.add_argument("--top", type=int, default=5, help="override reasons and suggestions listed per topic (default: 5)")
    report.add_argument(
        "--by", action="append", choices=["indicator", "service", "client", "version", "month"],
        help="split each topic by this (repeatable; default: indicator and service; month: override-rate trend)",
    )
    report.add_argument("--plot", metavar="PATH",
                        help="also write a bar chart of outcomes by topic: PATH.html (page with chart and table) or PATH.svg")
    report.set_defaults(handler=_report)
    knowledge = commands.add_parser("knowledge", help="the knowledge base in other forms")
    knowledge_commands = knowledge.add_subparsers(dest="knowledge_command", required=True)
    export = knowledge_commands.add_parser("export", help="write the knowledge base as FHIR R4 resources (validated)")
    export.add_argument("--fhir", required=True, metavar="DIR",
                        help="folder to write the ValueSet, CodeSystem, PlanDefinition and Library JSON files to")
    export.set_defaults(handler=_knowledge_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        return args.handler(args)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    except KnowledgeError as error:
        print(f"knowledge base invalid: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
