"""The performance benchmark: `denosumab-cds serve` (2 gunicorn workers) against the bare framework.

    python3 -m bench                 # one full run (5-12 minutes, by the machine), writes bench/RESULTS.md
    python3 -m bench --runs 5        # five full runs in a row: five rows in the Runs table
    python3 -m bench --new-series    # empties the Runs table first (do so when the code changes)
    python3 -m bench --quick         # tiny sizes, well under a minute: checks the harness only

The floors, measured with the same bodies to the same URL path:
- the bare floor (what the service is judged against): bench/floor_app.py, a Flask app that
  imports only Flask, under gunicorn with the service's worker count and worker class; it reads
  the body with Flask's own `request.get_json()` and answers {"cards": []}: the framework itself;
- the in-app floor (shown beside it): a route of the service's own app and server
  (DENOSUMAB_CDS_BENCH_FLOOR=1) that reads the body as the bare floor does and answers
  {"cards": []}: the bare floor plus what the app's middleware and settings cost.
Sections: 1. heavy and lean order-select under load (with a card, as default, and without);
2. growth to 10,000 Observations; 3. no prefetch; 4. memory over 10,000 mixed calls and start-up;
5. each newer piece of the hot path, in-process (bench/hot_path.py). Every run appends a row to
the Runs table of RESULTS.md (kept across runs, like the hand-written Notes).
All traffic stays on 127.0.0.1; every loop is bounded by a count and a duration.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from bench.fhir_server import FhirServer
from bench.load import LoadResult, get_once, post_once, run_load
from bench.patient import (
    CARD_LABS_DAYS_AGO, PATIENT_ID, QUIET_LABS_DAYS_AGO, PatientRotation, heavy_patient, order_select_request,
)
from bench.service import BARE_FLOOR_PATH, FLOOR_PATH, ROOT, Served, bare_floor_options, start_bare_floor, start_service

HOOK_PATH = "/cds-services/order-select"
LOAD_TURNS = 6  # turns per route and client count in section 1
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
RUNS_HEADING = "## Runs"
NOTES_HEADING = "## Notes"
DEFAULT_FHIR_TIMEOUT_SECONDS = 2.0  # cds_service.config's default, used unless --fhir-timeout
# Issue 18's targets.
P50_RATIO, P99_RATIO = 1.3, 1.5  # service / bare floor, section 1
LARGEST_CALL_MS = 150  # 10,000 Observations, section 2
NO_PREFETCH_RATIO = 1.3  # hook / slowest single FHIR query, section 3
RSS_LIMIT_MB, RSS_GROWTH_MIB = 150, 1.0  # section 4
STARTUP_SECONDS = 3.0
# One column of the Runs table per group of targets: its key numbers, and whether all were met.
RUNS_COLUMNS = ("1. heavy", "1. lean", "2. 10,000 Obs.", "3. no prefetch", "4. memory", "5. pieces")
# What the code digest of a run covers: the code measured, the harness and the pinned dependencies.
CODE_PATHS = ("cds_service", "bench", "seeds", "hooks", "pyproject.toml", "constraints.txt")


@dataclass(frozen=True)
class Sizes:
    observations: int = 400
    load_requests: int = 1200  # per judged row of section 1 (at most), in LOAD_TURNS turns; shown rows half
    load_seconds: float = 40.0  # per judged row of section 1 (at most; >= 1,000 requests down to 30/s); shown rows half
    warmup_requests: int = 100
    scaling: tuple[int, ...] = (100, 1000, 10000)
    scaling_calls: tuple[int, ...] = (100, 60, 20)
    memory_calls: int = 10000
    memory_step: int = 1000
    memory_patients: int = 100  # ~50 cards each by the end: a long-treated patient's ledger
    fhir_calls: int = 20
    fhir_latency_seconds: float = 0.1
    hang_calls: int = 3
    piece_calls: int = 300  # in-process calls of each kind, section 5
    patients: int = 1000  # bodies rotate over this many patients (bench.patient.PatientRotation)


QUICK = Sizes(
    observations=30, load_requests=60, load_seconds=5, warmup_requests=5, scaling=(10, 20, 40),
    scaling_calls=(3, 3, 3), memory_calls=40, memory_step=20, memory_patients=10, fhir_calls=3,
    fhir_latency_seconds=0.02, hang_calls=1, piece_calls=10, patients=50,
)


def _section_number(text: str) -> int:
    """The number a target or section starts with ('1. ...', '## 2. ...'), for the reading order."""
    found = re.match(r"(?:## )?(\d+)\.", text)
    return int(found.group(1)) if found else 99


@dataclass
class Report:
    command: str
    machine: dict[str, str] = field(default_factory=dict)
    sections: list[str] = field(default_factory=list)  # in the order measured; written by number
    targets: list[tuple[str, str, bool]] = field(default_factory=list)  # (target, measured, met)
    runs_cells: dict[str, tuple[str, bool]] = field(default_factory=dict)  # RUNS_COLUMNS -> (key numbers, met)
    data: dict = field(default_factory=dict)

    def target(self, name: str, measured: str, met: bool) -> None:
        self.targets.append((name, measured, met))

    def runs_cell(self, column: str, numbers: str, met: bool) -> None:
        assert column in RUNS_COLUMNS, column
        self.runs_cells[column] = (numbers, met)

    @property
    def all_met(self) -> bool:
        return bool(self.targets) and all(met for _, _, met in self.targets)

    def runs_row(self) -> str:
        cells = [self.machine.get("date", "?"), f"`{self.machine.get('code', '?')}`",
                 self.machine.get("load average at start", "?").split(" / ")[0]]
        for column in RUNS_COLUMNS:
            numbers, met = self.runs_cells.get(column, ("not measured", False))
            cells.append(f"{numbers}: {'yes' if met else '**no**'}")
        cells.append("yes" if self.all_met else "**no**")
        return "| " + " | ".join(cells) + " |"

    def markdown(self) -> str:
        lines = ["# Benchmark results", "", "Written by `python3 -m bench` (bench/run.py); see README, section Benchmark.", ""]
        lines += ["## Machine and command", "", "| | |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in self.machine.items()]
        lines += [f"| command | `{self.command}` |", ""]
        lines += ["## Targets", "", "| target | measured | met |", "| --- | --- | --- |"]
        targets = sorted(self.targets, key=lambda target: _section_number(target[0]))
        lines += [f"| {name} | {measured} | {'yes' if met else '**no**'} |" for name, measured, met in targets]
        lines += ["", f"All targets met: {'yes' if self.all_met else '**no**'}.", ""]
        for section in sorted(self.sections, key=_section_number):
            lines += [section, ""]
        return "\n".join(lines).rstrip() + "\n"


def runs_header() -> list[str]:
    columns = ["date", "code", "load (1 min)", *RUNS_COLUMNS, "all met"]
    return ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]


RUNS_INTRO = (
    "Appended by every `python3 -m bench` (one row per run; `--runs N` makes N); the sections above\n"
    "are the last run's. `python3 -m bench --new-series` starts the table afresh: do so when the code\n"
    "under test changes, so that the table holds every run since the last change. *code* is the\n"
    "commit and a digest of the working tree's cds_service/, bench/, seeds/, hooks/ and dependency\n"
    "pins (rows with different digests measured different code). Each cell: the key numbers of\n"
    "the section's targets (see Targets), and whether all of them were met."
)


def _previous_runs(previous: str) -> tuple[list[str], str]:
    """(the rows of the Runs table in `previous`, when its columns are today's; the series' first line)."""
    if RUNS_HEADING not in previous:
        return [], ""
    section = previous[previous.index(RUNS_HEADING):]
    if NOTES_HEADING in section:
        section = section[:section.index(NOTES_HEADING)]
    lines = section.splitlines()
    header = runs_header()
    if header[0] not in lines:
        print("the Runs table's columns changed: a new series begins", file=sys.stderr)
        return [], ""
    rows = [line for line in lines[lines.index(header[0]) + 2:] if line.startswith("| ")]
    series = next((line for line in lines if line.startswith("Series since ")), "")
    return rows, series


def write_results(out: Path, report: Report, *, new_series: bool) -> None:
    """The report, then the Runs table with this run's row appended, then the hand-written notes."""
    previous = out.read_text(encoding="utf-8") if out.exists() else ""
    rows, series = ([], "") if new_series else _previous_runs(previous)
    if rows and f"`{report.machine.get('code')}`" not in rows[-1]:
        print("the code changed since the last run of this series (see `code` in the Runs table); "
              "start a new one with --new-series if that change is the one to measure", file=sys.stderr)
    series = series or f"Series since {report.machine.get('date', '?')} (code `{report.machine.get('code', '?')}` then)."
    notes = previous[previous.index(NOTES_HEADING):] if NOTES_HEADING in previous else ""
    runs = [RUNS_HEADING, "", RUNS_INTRO, "", series, "", *runs_header(), *rows, report.runs_row(), ""]
    out.write_text(report.markdown() + "\n" + "\n".join(runs) + ("\n" + notes if notes else ""), encoding="utf-8")


def code_version() -> str:
    """The commit, and a digest of the files that decide what is measured (working tree, so that
    uncommitted changes count): two runs with the same value measured the same code."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    digest = hashlib.sha256()
    for name in CODE_PATHS:
        path = ROOT / name
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
        for file in files:
            relative = file.relative_to(ROOT).as_posix()
            if "__pycache__" in file.parts or relative == RESULTS.relative_to(ROOT).as_posix():
                continue
            digest.update(relative.encode() + b"\0" + file.read_bytes() + b"\0")
    return f"{commit}+{digest.hexdigest()[:8]}"


def machine_facts() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import version

    mem_total = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "code": code_version(),
        "CPU": f"{cpu}, {os.cpu_count()} cores",
        "memory": mem_total,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "server": f"gunicorn {version('gunicorn')}, {_server_shape()} (cds_service/cli.py, default [server] settings)",
        "bare floor": f"bench/floor_app.py (Flask {version('flask')} only), `gunicorn {' '.join(bare_floor_options(2))}`",
        "client": "bench/load.py on the same machine: closed loop, one connection per client thread "
                  "(gunicorn's sync workers close it after each answer; the client reconnects)",
    }


def _server_shape() -> str:
    from cds_service.cli import gunicorn_options
    from cds_service.config import Settings
    from cds_service.workers import WORKER_CLASSES

    options = gunicorn_options(Settings(workers=2))
    kind = next(name for name, worker_class in WORKER_CLASSES.items() if worker_class == options["worker_class"])
    threads = f" x {options['threads']} threads" if kind == "gthread" else ""
    return f"{options['workers']} {kind} workers{threads}"


def _load_average() -> str:
    """1/5/15-minute load: other work on this 2-core machine shows up in every number here."""
    try:
        return " / ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _one_minute_load() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


def _ms(value: float) -> str:
    return f"{value:.1f} ms"


def _body(document: dict) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def _check_answer(server: Served, body: bytes, path: str = HOOK_PATH) -> dict:
    status, data, _ = post_once(server.url(path), body)
    if status != 200:
        raise RuntimeError(f"{path} answered {status}: {data[:300]!r}")
    return json.loads(data)


def _topics(answer: dict) -> list[str]:
    return sorted(card.get("source", {}).get("topic", {}).get("code", "?") for card in answer.get("cards", []))


def _ratio(value: float, floor: float) -> float:
    return value / floor if floor else float("nan")


# --- scenarios -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    """One row of section 1: a server, a URL path and the bodies sent to it."""

    label: str
    server: Served
    path: str
    bodies: PatientRotation
    share: float = 1.0  # of Sizes.load_requests and load_seconds: the rows only shown get half


def _measured_load(route: Route, **load) -> LoadResult:
    """run_load, with the CPU time the route's workers spent on it."""
    cpu_before = route.server.worker_cpu_seconds()
    result = run_load(route.server.url(route.path), route.bodies, **load)
    result.worker_cpu_seconds = route.server.worker_cpu_seconds() - cpu_before
    return result


def order_select_requests(sizes: Sizes, *, lean: bool, patients: int, first: int = 0) -> dict[str, PatientRotation]:
    """The carded request (the default) and the quiet one (no card), each for `patients` patients."""
    return {
        label: PatientRotation(_body(order_select_request(heavy_patient(observations=sizes.observations, lean=lean,
                                                                        newest_labs_days_ago=days))),
                               patients=patients, first=first)
        for label, days in (("card", CARD_LABS_DAYS_AGO), ("quiet", QUIET_LABS_DAYS_AGO))
    }


def _checked_topics(service: Served, requests: dict[str, PatientRotation], what: str) -> list[str]:
    """The carded request's card topics; loudly wrong if it has none or the quiet one has any."""
    carded = _topics(_check_answer(service, requests["card"].body_for(0)))
    quiet = _topics(_check_answer(service, requests["quiet"].body_for(0)))
    if not carded:
        raise RuntimeError(f"the {what} request with a card answered no card: the benchmark would measure the quiet path")
    if quiet:
        raise RuntimeError(f"the {what} request without a card answered {', '.join(quiet)}")
    return carded


def order_select_load(service: Served, floor: Served, report: Report, sizes: Sizes) -> None:
    requests = {kind: order_select_requests(sizes, lean=kind == "lean", patients=sizes.patients) for kind in ("heavy", "lean")}
    topics = {kind: _checked_topics(service, requests[kind], kind) for kind in requests}
    if topics["lean"] != topics["heavy"]:
        raise RuntimeError(f"the lean request answers {topics['lean']}, the heavy one {topics['heavy']}: not the same call")
    bare_answer = _check_answer(floor, requests["heavy"]["card"].body_for(0), BARE_FLOOR_PATH)
    if bare_answer != {"cards": []}:
        raise RuntimeError(f"the bare floor answered {bare_answer!r}")
    rows, judged, cells = [], {}, {}
    cpu_notes = []
    for kind, bodies in requests.items():
        # The target is judged on the bare floor and the carded call; the other two are shown.
        routes = (Route("bare floor", floor, BARE_FLOOR_PATH, bodies["card"]),
                  Route("in-app floor", service, FLOOR_PATH, bodies["card"], share=0.5),
                  Route("service, card issued", service, HOOK_PATH, bodies["card"]),
                  Route("service, no card", service, HOOK_PATH, bodies["quiet"], share=0.5))
        for route in routes:  # warm every route before measuring
            run_load(route.server.url(route.path), route.bodies, clients=8, requests=sizes.warmup_requests,
                     max_seconds=sizes.load_seconds)
        kib = bodies["card"].size / 1024
        ratios = {}
        for clients in (8, 32):
            results: dict[str, LoadResult] = {}
            # The routes take turns, so that the machine's changing speed (other work on it)
            # weighs on all of them alike.
            for _turn in range(LOAD_TURNS):
                for route in routes:
                    count = max(1, round(sizes.load_requests * route.share / LOAD_TURNS))
                    part = _measured_load(route, clients=clients, requests=count,
                                          max_seconds=sizes.load_seconds * route.share / LOAD_TURNS)
                    results[route.label] = results[route.label].merged(part) if route.label in results else part
            bare = results["bare floor"]
            for route in routes:
                result = results[route.label]
                errors = f" ({result.errors} errors)" if result.errors else ""
                rows.append(f"| {kind} | {route.label} | {clients} | {result.count}{errors} | {_ms(result.p50)} | {_ms(result.p99)} "
                            f"| {result.throughput:.0f}/s | {result.cpu_ms_per_request:.2f} ms "
                            f"| {_ratio(result.p50, bare.p50):.2f} x | {_ratio(result.p99, bare.p99):.2f} x |")
            service_result = results["service, card issued"]
            p50, p99 = _ratio(service_result.p50, bare.p50), _ratio(service_result.p99, bare.p99)
            ratios[clients] = (p50, p99)
            judged[f"{kind}@{clients}"] = {label: {"p50": r.p50, "p99": r.p99, "rps": r.throughput,
                                                   "cpu_ms": r.cpu_ms_per_request, "count": r.count}
                                           for label, r in results.items()}
            name = f"1. {kind} order-select ({kib:.0f} KiB), card issued, {clients} clients"
            report.target(f"{name}: service p50 <= {P50_RATIO} x bare floor p50",
                          f"{p50:.2f} x ({_ms(service_result.p50)} vs {_ms(bare.p50)})", p50 <= P50_RATIO)
            report.target(f"{name}: service p99 <= {P99_RATIO} x bare floor p99",
                          f"{p99:.2f} x ({_ms(service_result.p99)} vs {_ms(bare.p99)})", p99 <= P99_RATIO)
            cpu = {label: r.cpu_ms_per_request for label, r in results.items()}
            cpu_notes.append(f"{kind} at {clients} clients {_ratio(cpu['service, card issued'], cpu['bare floor']):.2f} x "
                             f"({cpu['service, card issued']:.2f} vs {cpu['bare floor']:.2f} ms; in-app floor "
                             f"{_ratio(cpu['in-app floor'], cpu['bare floor']):.2f} x)")
        met = all(p50 <= P50_RATIO and p99 <= P99_RATIO for p50, p99 in ratios.values())
        cells[kind] = (f"p50 {ratios[8][0]:.2f} / {ratios[32][0]:.2f} x, p99 {ratios[8][1]:.2f} / {ratios[32][1]:.2f} x", met)
    report.runs_cell("1. heavy", *cells["heavy"])
    report.runs_cell("1. lean", *cells["lean"])
    report.data["order_select"] = judged
    heavy = heavy_patient(observations=sizes.observations)
    report.sections.append("\n".join([
        "## 1. Order-select under load, full prefetch: the service against the bare framework",
        "",
        f"Two requests with the same resources ({', '.join(f'{n} {k}' for k, n in heavy.counts().items())}): "
        f"*heavy*, {requests['heavy']['card'].size / 1024:.0f} KiB of compact JSON as a thorough EHR sends it, and "
        f"*lean*, {requests['lean']['card'].size / 1024:.0f} KiB, the same without what EHRs often leave out "
        "(meta, display strings, extra codings, identifiers, text; bench/patient.py `lean_resource`). "
        f"Cards answered with the patient's newest labs {CARD_LABS_DAYS_AGO} days old (the default): heavy "
        f"{', '.join(topics['heavy'])}, lean {', '.join(topics['lean'])} (checked the same); the card is written to the "
        f"card ledger and the suppression look-up runs before each answer. *No card*: the newest labs "
        f"{QUIET_LABS_DAYS_AGO} days old. Each request rotates over {sizes.patients:,} patient ids (same bytes), "
        "so that no patient collects thousands of cards in the ledger.",
        "",
        "Routes: *bare floor* = bench/floor_app.py (Flask only, `request.get_json()`, `{\"cards\": []}`) under gunicorn "
        "with the service's workers and worker class, at the hook's path; *in-app floor* = the service's own server "
        f"and app, `{FLOOR_PATH}` (reads the body as the bare floor does, answers `{{\"cards\": []}}`: the app's middleware "
        "and settings on top of the framework); the floors get the carded body. The judged rows (bare floor, card "
        f"issued): up to {sizes.load_requests:,} requests or {sizes.load_seconds:.0f} s each, the others half that, in "
        f"{LOAD_TURNS} turns taken in rotation with the other routes of the same request, after "
        f"{sizes.warmup_requests} warm-up requests per route. Ratios are to the bare floor's row of the same request "
        "and client count.",
        "",
        "| request | route | clients | requests | p50 | p99 | throughput | worker CPU per request | p50 / bare floor | p99 / bare floor |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "Service (card issued) / bare floor worker CPU per request: " + "; ".join(cpu_notes) + ". On two cores shared "
        "with the load client, latency is mostly queueing behind that CPU time, so this ratio is the steadier "
        "measure of the same thing.",
    ]))


def _get_paged(url: str) -> tuple[float, int]:
    """(seconds, pages) for one FHIR search, following `next` links, as the service does."""
    import http.client
    from urllib.parse import urlsplit

    started = time.perf_counter()
    pages = 0
    while url:
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers={"Accept": "application/fhir+json"})
        bundle = json.loads(conn.getresponse().read())
        conn.close()
        pages += 1
        url = next((link["url"] for link in bundle.get("link", []) if link.get("relation") == "next"), None)
    return time.perf_counter() - started, pages


def no_prefetch(service: Served, fhir: FhirServer, report: Report, sizes: Sizes, fhir_timeout: float) -> None:
    heavy = heavy_patient(observations=sizes.observations)
    body = _body(order_select_request(heavy, prefetch=False, fhir_server=fhir.base_url))
    descriptor = json.loads((ROOT / "hooks" / "order-select.json").read_text(encoding="utf-8"))
    queries = {
        key: f"{fhir.base_url}/{template.replace('{{context.patientId}}', quote(PATIENT_ID, safe=''))}"
        for key, template in descriptor["prefetch"].items()
    }
    timings: dict[str, list[float]] = {key: [] for key in queries}
    pages: dict[str, int] = {}
    for _ in range(3):
        for key, url in queries.items():
            seconds, pages[key] = _get_paged(url)
            timings[key].append(seconds * 1000)
    query_ms = {key: statistics.median(values) for key, values in timings.items()}
    slowest_key = max(query_ms, key=query_ms.get)
    slowest = query_ms[slowest_key]
    answer = _check_answer(service, body)
    calls = [post_once(service.url(HOOK_PATH), body)[2] for _ in range(sizes.fhir_calls)]
    hook_p50 = statistics.median(calls)
    ratio = hook_p50 / slowest

    fhir.hang = "Procedure"
    hang_answers = []
    try:
        for _ in range(sizes.hang_calls):
            status, data, elapsed = post_once(service.url(HOOK_PATH), body)
            hang_answers.append((status, elapsed, _topics(json.loads(data)) if status == 200 else []))
    finally:
        fhir.hang = None
    worst_hang = max(elapsed for _, elapsed, _ in hang_answers)
    hang_ok = all(status == 200 for status, _, _ in hang_answers) and worst_hang <= fhir_timeout * 1000 + 100
    report.data["no_prefetch"] = {"hook_p50": hook_p50, "slowest_query": slowest, "hang_worst": worst_hang}
    report.target(f"3. no prefetch: hook p50 <= {NO_PREFETCH_RATIO} x slowest single FHIR query",
                  f"{ratio:.2f} x ({_ms(hook_p50)} vs {_ms(slowest)}, {slowest_key})", ratio <= NO_PREFETCH_RATIO)
    report.target(f"3. one FHIR query hangs: answer within the deadline ({fhir_timeout:.1f} s + 100 ms)",
                  f"worst {_ms(worst_hang)}, status {sorted({s for s, _, _ in hang_answers})}", hang_ok)
    report.runs_cell("3. no prefetch", f"{ratio:.2f} x, hanging query {worst_hang / 1000:.2f} s",
                     ratio <= NO_PREFETCH_RATIO and hang_ok)
    query_rows = [f"| {key} | {pages[key]} | {_ms(ms)} |" for key, ms in query_ms.items()]
    report.sections.append("\n".join([
        "## 3. No prefetch: the service fetches from a FHIR server on loopback",
        "",
        f"bench/fhir_server.py, {fhir.latency_seconds * 1000:.0f} ms added per request, pages of {fhir.page_size}, "
        f"the heavy patient (one card). Each query below fetched alone by the benchmark (median of 3, all pages):",
        "",
        "| prefetch key | pages | time |",
        "| --- | --- | --- |",
        *query_rows,
        "",
        f"Sum if sequential: {_ms(sum(query_ms.values()))}; slowest: {_ms(slowest)} ({slowest_key}).",
        "",
        f"Hook call without prefetch ({sizes.fhir_calls} sequential calls): p50 {_ms(hook_p50)}, "
        f"max {_ms(max(calls))}; {ratio:.2f} x the slowest query. Cards: {', '.join(_topics(answer)) or 'none'}.",
        "",
        f"With the Procedure search hanging ({fhir.hang_seconds:.0f} s) and the service's FHIR deadline at "
        f"{fhir_timeout:.1f} s: " + "; ".join(f"HTTP {s} in {_ms(e)}, cards {', '.join(t) or 'none'}" for s, e, t in hang_answers) + ".",
    ]))


def scaling(service: Served, floor: Served, report: Report, sizes: Sizes) -> None:
    rows, per_call, bare_per_call, own = [], {}, {}, {}
    rss_before = service.worker_rss_kib()
    for count, calls in zip(sizes.scaling, sizes.scaling_calls):
        bodies = PatientRotation(_body(order_select_request(heavy_patient(observations=count))), patients=sizes.patients, first=4000)
        if not _topics(_check_answer(service, bodies.body_for(0))):
            raise RuntimeError(f"the {count}-Observation request answered no card")
        routes = (("bare floor", floor, BARE_FLOOR_PATH), ("in-app floor", service, FLOOR_PATH), ("service", service, HOOK_PATH))
        samples: dict[str, list[float]] = {label: [] for label, _, _ in routes}
        for _label, server, path in routes:
            post_once(server.url(path), bodies())
        for _ in range(calls):  # call by call in turn, so that the machine's drifting speed weighs on all
            body = bodies()
            for label, server, path in routes:
                samples[label].append(post_once(server.url(path), body)[2])
        timings = {label: statistics.median(values) for label, values in samples.items()}
        per_call[count] = timings["service"]
        bare_per_call[count] = timings["bare floor"]
        # Each service call against the bare floor call of the same turn: the median of these
        # differences is steadier than the difference of two medians when the machine's speed drifts.
        own[count] = statistics.median(s - f for f, s in zip(samples["bare floor"], samples["service"]))
        rows.append(f"| {count:,} | {bodies.size / 1024:,.0f} KiB | {_ms(timings['bare floor'])} | {_ms(timings['in-app floor'])} "
                    f"| {_ms(timings['service'])} | {own[count]:+.1f} ms | {_ratio(timings['service'], timings['bare floor']):.2f} x "
                    f"| {calls} |")
    small, middle, large = sizes.scaling
    growth = (per_call[middle] / per_call[small], per_call[large] / per_call[middle])
    growth_ok = growth[0] <= middle / small and growth[1] <= large / middle
    under_limit = per_call[large] < LARGEST_CALL_MS
    below_floor = per_call[large] < bare_per_call[large]
    report.data["scaling"] = per_call
    report.target(f"2. {large:,} Observations: whole call under {LARGEST_CALL_MS} ms", _ms(per_call[large]), under_limit)
    report.target(f"2. {large:,} Observations: whole call less than the bare floor's at the same size",
                  f"{_ms(per_call[large])} vs {_ms(bare_per_call[large])} ({_ratio(per_call[large], bare_per_call[large]):.2f} x)",
                  below_floor)
    report.target("2. the whole call grows no worse than linearly with Observations",
                  " / ".join(f"{n:,}: {_ms(per_call[n])}" for n in sizes.scaling)
                  + f" (x {growth[0]:.1f} for {middle // small} x the Observations, x {growth[1]:.1f} for {large // middle} x; "
                  "the bare floor alone " + " / ".join(_ms(bare_per_call[n]) for n in sizes.scaling) + ")", growth_ok)
    report.runs_cell("2. 10,000 Obs.", f"{_ms(per_call[large])} (bare floor {_ms(bare_per_call[large])}), "
                     f"growth x {growth[0]:.1f}, x {growth[1]:.1f}", under_limit and below_floor and growth_ok)
    report.sections.append("\n".join([
        "## 2. Scaling with the number of Observations (full prefetch, one card, one client, the three routes call by call in turn, p50)",
        "",
        "| Observations | body | bare floor | in-app floor | service | service - bare floor (median of call pairs) | service / bare floor | calls |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "Bodies above 5 MiB are over the service's default `server.max_body_bytes`; the benchmark's configuration raises it to 64 MiB "
        "(the bare floor has no limit: Flask's MAX_CONTENT_LENGTH is None). Growth is judged on the whole call.",
        "Worker RSS before these calls: " + ", ".join(f"{kib / 1024:.1f} MiB" for _, kib in sorted(rss_before.items()))
        + "; after: " + ", ".join(f"{kib / 1024:.1f} MiB" for _, kib in sorted(service.worker_rss_kib().items()))
        + " (the largest body is parsed into a few hundred MiB of objects; the allocator keeps part of it).",
    ]))


def _metric_total(exposition: str, name: str) -> float:
    """The sum of one metric family's samples in a Prometheus text scrape."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in exposition.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def _override_first_card(service: Served, body: bytes) -> bool:
    """Call once with `body` and send feedback overriding its card (the card's first override
    reason), as a clinician who dismisses it: the patient's later calls find the override in the
    suppression look-up and suppress the card. True when the feedback was taken."""
    cards = _check_answer(service, body).get("cards", [])
    if not cards:
        return False  # already suppressed
    card = cards[0]
    reason = (card.get("overrideReasons") or [None])[0]
    entry = {"card": card["uuid"], "outcome": "overridden",
             "outcomeTimestamp": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")}
    if reason:
        entry["overrideReason"] = {"reason": {"system": reason["system"], "code": reason["code"]}}
    status, _data, _ = post_once(service.url(HOOK_PATH + "/feedback"), _body({"feedback": [entry]}))
    return status == 200


def memory(service: Served, report: Report, sizes: Sizes, startup: dict) -> None:
    requests = order_select_requests(sizes, lean=False, patients=sizes.memory_patients, first=2000)
    turn = itertools.count()

    def mixed() -> bytes:  # every second call has a card (suppression look-up, ledger write), the others none
        return requests["card"]() if next(turn) % 2 == 0 else requests["quiet"]()

    samples: list[tuple[int, dict[int, int]]] = [(0, service.worker_rss_kib())]
    done = errors = overrides = 0
    scrapes: list[float] = []
    scrape_failures = 0
    exposition = ""
    started = time.perf_counter()
    for step in range(sizes.memory_calls // sizes.memory_step + 1):  # bounded; normally ends on `done`
        if done >= sizes.memory_calls:
            break
        result = run_load(service.url(HOOK_PATH), mixed, clients=8, requests=min(sizes.memory_step, sizes.memory_calls - done),
                          max_seconds=120)
        errors += result.errors
        done += result.count + result.errors
        samples.append((done, service.worker_rss_kib()))  # after hook calls, before the scrape below
        # Now and then, as in production: a Prometheus scrape, and a clinician overriding one
        # patient's card (that patient's later cards are suppressed: the look-up finds it).
        status, data, ms = get_once(service.url("/metrics"))
        if status == 200:
            scrapes.append(ms)
            exposition = data.decode("utf-8", "replace")
        else:
            scrape_failures += 1
        if step < sizes.memory_patients:
            overrides += _override_first_card(service, requests["card"].body_for(step))
        if result.count + result.errors == 0:
            break
    elapsed = time.perf_counter() - started
    halfway = min(samples, key=lambda s: abs(s[0] - sizes.memory_calls / 2))
    final = samples[-1]
    peak_mib = max(max(rss.values(), default=0) for _, rss in samples) / 1024
    final_mib = max(final[1].values(), default=0) / 1024
    # Growth = the level RSS holds in the second half against the first (the median of each half's
    # samples): a leak raises it step after step; what the allocator happens to hold after the last
    # calls before a sample (a /metrics text, a feedback call) moves single samples by a MiB or so
    # either way, which a comparison of high-water marks read as growth (bench/RESULTS.md, Notes).
    first_half = [rss for calls, rss in samples if 0 < calls <= halfway[0]]
    second_half = [rss for calls, rss in samples if calls > halfway[0]]
    growth = {
        pid: (statistics.median([rss.get(pid, 0) for rss in second_half] or [0])
              - statistics.median([rss.get(pid, 0) for rss in first_half] or [0])) / 1024
        for pid in final[1]
    }
    worst_growth = max(growth.values(), default=0.0)
    rows = [f"| {calls:,} | " + " | ".join(f"{rss[pid] / 1024:.1f} MiB" for pid in sorted(rss)) + " |" for calls, rss in samples]
    worker_columns = len(samples[0][1]) or 1
    rss_ok = final_mib * 1.048576 < RSS_LIMIT_MB
    growth_ok = worst_growth <= RSS_GROWTH_MIB
    startup_ok = startup["first_answer_s"] < STARTUP_SECONDS
    report.data["memory"] = {"peak_mib": peak_mib, "final_mib": final_mib, "growth_mib": growth}
    report.target(f"4. worker RSS after {final[0]:,} mixed calls under {RSS_LIMIT_MB} MB",
                  f"largest worker {final_mib:.1f} MiB (peak during the run {peak_mib:.1f} MiB)", rss_ok)
    report.target(f"4. no RSS growth between call {halfway[0]:,} and call {final[0]:,} (median RSS of the samples after call "
                  f"{halfway[0]:,} vs up to it, within {RSS_GROWTH_MIB:.0f} MiB)",
                  ", ".join(f"worker {pid}: {delta:+.2f} MiB" for pid, delta in sorted(growth.items())), growth_ok)
    report.target(f"4. start-up to the first answer under {STARTUP_SECONDS:.0f} s", _ms(startup["first_answer_s"] * 1000), startup_ok)
    report.runs_cell("4. memory", f"{final_mib:.0f} MiB, growth {worst_growth:+.1f} MiB, start-up {startup['first_answer_s']:.2f} s",
                     rss_ok and growth_ok and startup_ok)
    counted = {name: _metric_total(exposition, name) for name in
               ("denosumab_cds_cards_total", "denosumab_cds_cards_suppressed_total", "denosumab_cds_store_errors_total")}
    report.sections.append("\n".join([
        "## 4. Memory and start-up",
        "",
        f"Start-up: spawn to discovery answering {_ms(startup['ready_s'] * 1000)}; spawn to the first heavy "
        f"order-select answer {_ms(startup['first_answer_s'] * 1000)} (that first call alone: {_ms(startup['first_call_ms'])}).",
        "",
        f"RSS of each gunicorn worker (/proc/<pid>/status VmRSS) while {final[0]:,} heavy order-select calls ran at 8 clients "
        f"({elapsed:.0f} s, {errors} errors), a mix: every second call with a card (suppression look-up and ledger write), "
        f"the others without, over {sizes.memory_patients} patients. After every {sizes.memory_step:,} calls: one scrape of "
        f"/metrics ({len(scrapes)} scrapes, p50 {_ms(statistics.median(scrapes)) if scrapes else 'n/a'}, "
        f"{scrape_failures} failed) and one more patient's card overridden through the feedback endpoint ({overrides} "
        f"overridden), so that later calls for those patients find an override and suppress the card. The last scrape "
        f"counted {counted['denosumab_cds_cards_total']:,.0f} cards answered, {counted['denosumab_cds_cards_suppressed_total']:,.0f} "
        f"suppressed, {counted['denosumab_cds_store_errors_total']:,.0f} store errors (since start-up).",
        "",
        "| calls | " + " | ".join(f"worker {pid}" for pid in sorted(samples[0][1])) + " |",
        "| --- |" + " --- |" * worker_columns,
        *rows,
    ]))


def hot_path_pieces(report: Report, sizes: Sizes) -> None:
    """Section 5: bench/hot_path.py in a fresh process (a worker's setup, nothing else running)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for name in ("PROMETHEUS_MULTIPROC_DIR", "DENOSUMAB_CDS_CONFIG", "DENOSUMAB_CDS_STORE_URL"):
        env.pop(name, None)
    completed = subprocess.run(
        [sys.executable, "-m", "bench.hot_path", "--json", "--calls", str(sizes.piece_calls),
         "--observations", str(sizes.observations)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"bench.hot_path failed: {completed.stderr[-2000:]}")
    from bench.hot_path import GATE, LOOKUP, METRICS, STAMP, WRITE, table

    result = json.loads(completed.stdout.strip().splitlines()[-1])
    carded = result["kinds"]["card issued"]
    pieces = carded["pieces"]
    missing = [piece for piece in (LOOKUP, WRITE, METRICS, STAMP) if not pieces[piece]["calls"]]

    def short(piece: str) -> str:
        ms = pieces[piece]["median_ms"]
        return "not called" if not pieces[piece]["calls"] else f"{ms * 1000:.1f} µs" if ms < 0.1 else f"{ms:.2f} ms"

    report.data["hot_path"] = result
    report.target("5. each newer piece of the hot path timed beside the whole call (in-process, heavy, card issued)",
                  f"suppression look-up {short(LOOKUP)}, ledger write {short(WRITE)}, metrics {short(METRICS)}, "
                  f"knowledge-version stamp {short(STAMP)}; the card gate, all of it, {short(GATE)}; of the whole call's "
                  f"{_ms(carded['whole_ms'])}" + (f" (not called: {', '.join(missing)})" if missing else ""), not missing)
    report.runs_cell("5. pieces", f"look-up {short(LOOKUP)}, write {short(WRITE)}, metrics {short(METRICS)}, "
                     f"stamp {short(STAMP)} of {_ms(carded['whole_ms'])}", not missing)
    report.sections.append("\n".join([
        "## 5. The hot path's newer pieces, each in its own row (in-process)",
        "",
        f"`python3 -m bench.hot_path` (bench/hot_path.py), in a fresh process set up as a worker of `serve` is: "
        f"create_app, a card ledger in a temporary SQLite file, metrics in multiprocess mode, the JSON access log "
        f"formatted, gc.freeze() and the worker's GC threshold. {result['calls']} heavy order-select calls "
        f"({result['body_kib']:.0f} KiB) of each kind, in turn, through Flask's test client (no HTTP), each for another "
        f"patient; the service's own functions wrapped in timing shims. Cards: {', '.join(result['topics']['card issued'])}. "
        "Medians per call; the share is of the whole call's median.",
        "",
        *table(result),
        "",
        f"The knowledge version is worked out once per worker at start-up ({_ms(result['version_once_ms'])}, "
        "`knowledge.version.knowledge_version`, seeds digest not cached); per call it is one entry in each card and "
        "one column of the ledger row, hence the stamp's cost is the difference of `build_response` with and without it.",
    ]))


def _measure(service, floor: Served, fhir: FhirServer, report: Report, sizes: Sizes, deadline: float) -> None:
    with service:
        ready = service.wait_ready()
        first_body = _body(order_select_request(heavy_patient(observations=sizes.observations)))
        _, _, first_call_ms = post_once(service.url(HOOK_PATH), first_body)
        startup = {"ready_s": ready, "first_answer_s": time.perf_counter() - service.started_at,
                   "first_call_ms": first_call_ms}
        # Measured in this order: the 12 MiB bodies of section 2 raise the workers' RSS, so memory comes before.
        for step in (lambda: order_select_load(service, floor, report, sizes),
                     lambda: no_prefetch(service, fhir, report, sizes, deadline),
                     lambda: memory(service, report, sizes, startup),
                     lambda: scaling(service, floor, report, sizes)):
            step()
            print(report.sections[-1], "\n", flush=True)


def run(sizes: Sizes, *, out: Path | None, command: str, fhir_timeout: float | None = None,
        new_series: bool = False) -> Report:
    report = Report(command=command, machine=machine_facts())
    report.machine["load average at start"] = _load_average()
    deadline = fhir_timeout or DEFAULT_FHIR_TIMEOUT_SECONDS
    with FhirServer(heavy_patient(observations=sizes.observations), latency_seconds=sizes.fhir_latency_seconds) as fhir:
        floor = start_bare_floor(workers=2)
        try:
            with floor:
                floor.wait_ready()  # before the service starts, so that its start-up is timed alone
                service = start_service(workers=2, fhir_base=fhir.base_url, fhir_timeout_seconds=fhir_timeout)
                try:
                    _measure(service, floor, fhir, report, sizes, deadline)
                except BaseException:
                    print(f"the service's log is kept: {service.log_path}", file=sys.stderr)
                    raise
                shutil.rmtree(service.log_path.parent, ignore_errors=True)  # its config, log and ledger
        except BaseException:
            print(f"the bare floor's log is kept: {floor.log_path}", file=sys.stderr)
            raise
        shutil.rmtree(floor.log_path.parent, ignore_errors=True)
    hot_path_pieces(report, sizes)  # after both servers stopped: nothing else of the benchmark runs
    print(report.sections[-1], "\n", flush=True)
    report.machine["load average at end"] = _load_average()
    if out is not None:
        write_results(out, report, new_series=new_series)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a check of the harness, not a measurement")
    parser.add_argument("--out", type=Path, help=f"where to write the report (default {RESULTS.relative_to(ROOT)}; "
                                                 "--quick writes nothing unless given)")
    parser.add_argument("--runs", type=int, default=1, metavar="N",
                        help="run the whole benchmark N times in a row, a row in the Runs table each (default 1)")
    parser.add_argument("--new-series", action="store_true",
                        help="empty the Runs table before this run's row (the code under test changed)")
    parser.add_argument("--fhir-timeout", type=float, help="the service's fhir.timeout_seconds (default: its own default)")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="before each run, wait up to this long for the 1-minute load average to fall below 1")
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 100:
        parser.error("--runs must be between 1 and 100")
    out = args.out or (None if args.quick else RESULTS)
    command = "python3 -m bench" + (" --quick" if args.quick else "")
    met = []
    for number in range(args.runs):
        waited_until = time.monotonic() + args.wait_quiet
        while time.monotonic() < waited_until and _one_minute_load() >= 1.0:
            time.sleep(5)
        if args.runs > 1:
            print(f"--- run {number + 1} of {args.runs} ---", flush=True)
        report = run(QUICK if args.quick else Sizes(), out=out, command=command, fhir_timeout=args.fhir_timeout,
                     new_series=args.new_series and number == 0)
        met.append(report.all_met)
        print("| target | measured | met |")
        for name, measured, target_met in sorted(report.targets, key=lambda target: _section_number(target[0])):
            print(f"| {name} | {measured} | {'yes' if target_met else 'NO'} |")
        print(f"all targets met: {'yes' if report.all_met else 'NO'}", flush=True)
    if args.runs > 1:
        print(f"\n{sum(met)} of {args.runs} runs met every target")
    if out is not None:
        print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
