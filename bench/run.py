"""The performance benchmark: `denosumab-cds serve` (2 gunicorn workers) against its own floor.

    python3 -m bench                 # full run (about 3 minutes), writes bench/RESULTS.md
    python3 -m bench --quick         # tiny sizes, a few seconds: checks the harness only

The floor is a route of the same server process (DENOSUMAB_CDS_BENCH_FLOOR=1) that only reads
the request body as JSON and answers {"cards": []}: the cost of the web framework itself.
All traffic stays on 127.0.0.1; every loop is bounded by a count and a duration.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from bench.fhir_server import FhirServer
from bench.load import LoadResult, post_once, run_load
from bench.patient import PATIENT_ID, heavy_patient, order_select_request
from bench.service import FLOOR_PATH, ROOT, start_service

HOOK_PATH = "/cds-services/order-select"
LOAD_TURNS = 6  # turns per route and client count in section 1
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
NOTES_HEADING = "## Notes"
DEFAULT_FHIR_TIMEOUT_SECONDS = 2.0  # cds_service.config's default, used unless --fhir-timeout


@dataclass(frozen=True)
class Sizes:
    observations: int = 400
    load_requests: int = 3000
    load_seconds: float = 20.0
    warmup_requests: int = 200
    scaling: tuple[int, ...] = (100, 1000, 10000)
    scaling_calls: tuple[int, ...] = (100, 60, 20)
    memory_calls: int = 10000
    memory_step: int = 1000
    fhir_calls: int = 20
    fhir_latency_seconds: float = 0.1
    hang_calls: int = 3


QUICK = Sizes(
    observations=30, load_requests=30, load_seconds=5, warmup_requests=5, scaling=(10, 20, 40),
    scaling_calls=(3, 3, 3), memory_calls=40, memory_step=20, fhir_calls=3, fhir_latency_seconds=0.02, hang_calls=1,
)


@dataclass
class Report:
    command: str
    machine: dict[str, str] = field(default_factory=dict)
    sections: list[str] = field(default_factory=list)
    targets: list[tuple[str, str, bool]] = field(default_factory=list)  # (target, measured, met)
    data: dict = field(default_factory=dict)

    def target(self, name: str, measured: str, met: bool) -> None:
        self.targets.append((name, measured, met))

    def markdown(self) -> str:
        lines = ["# Benchmark results", "", "Written by `python3 -m bench` (bench/run.py); see README, section Benchmark.", ""]
        lines += ["## Machine and command", "", "| | |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in self.machine.items()]
        lines += [f"| command | `{self.command}` |", ""]
        lines += ["## Targets", "", "| target | measured | met |", "| --- | --- | --- |"]
        lines += [f"| {name} | {measured} | {'yes' if met else '**no**'} |" for name, measured, met in self.targets]
        lines += [""]
        for section in self.sections:
            lines += [section, ""]
        return "\n".join(lines).rstrip() + "\n"


def machine_facts() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import gunicorn

        gunicorn_version = gunicorn.__version__
    except ImportError:  # pragma: no cover
        gunicorn_version = "?"
    mem_total = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "CPU": f"{cpu}, {os.cpu_count()} cores",
        "memory": mem_total,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "server": f"gunicorn {gunicorn_version}, {_server_shape()} (cds_service/cli.py, default [server] settings)",
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


def _check_answer(service, body: bytes) -> dict:
    status, data, _ = post_once(service.url(HOOK_PATH), body)
    if status != 200:
        raise RuntimeError(f"the service answered {status}: {data[:300]!r}")
    return json.loads(data)


def _topics(answer: dict) -> list[str]:
    return sorted(card.get("source", {}).get("topic", {}).get("code", "?") for card in answer.get("cards", []))


def _load_row(label: str, result: LoadResult) -> str:
    errors = f" ({result.errors} errors)" if result.errors else ""
    return (f"| {label} | {result.clients} | {result.count}{errors} | {_ms(result.p50)} | {_ms(result.p99)} "
            f"| {result.throughput:.0f}/s | {result.cpu_ms_per_request:.2f} ms |")


# --- scenarios -----------------------------------------------------------------------------------

def _measured_load(service, path: str, body: bytes, **load) -> LoadResult:
    """run_load, with the CPU time the workers spent on it."""
    cpu_before = service.worker_cpu_seconds()
    result = run_load(service.url(path), body, **load)
    result.worker_cpu_seconds = service.worker_cpu_seconds() - cpu_before
    return result


def heavy_load(service, report: Report, sizes: Sizes) -> None:
    heavy = heavy_patient(observations=sizes.observations)
    body = _body(order_select_request(heavy))
    answer = _check_answer(service, body)
    counts = heavy.counts()
    for url in (service.url(FLOOR_PATH), service.url(HOOK_PATH)):  # warm both before measuring
        run_load(url, body, clients=8, requests=sizes.warmup_requests, max_seconds=sizes.load_seconds)
    rows = []
    results: dict[tuple[str, int], LoadResult] = {}
    for clients in (8, 32):
        # Floor and service take turns, so that the machine's changing speed (other work on it)
        # weighs on both alike.
        for _turn in range(LOAD_TURNS):
            for label, path in (("floor", FLOOR_PATH), ("service", HOOK_PATH)):
                part = _measured_load(service, path, body, clients=clients, requests=sizes.load_requests // LOAD_TURNS,
                                      max_seconds=sizes.load_seconds / LOAD_TURNS)
                results[(label, clients)] = results[(label, clients)].merged(part) if (label, clients) in results else part
        rows += [_load_row(label, results[(label, clients)]) for label in ("floor", "service")]
    # The same patient, labs a month older: one card, so the card ledger writes (and commits) each call.
    carded_body = _body(order_select_request(heavy_patient(observations=sizes.observations, newest_labs_days_ago=45)))
    carded_answer = _check_answer(service, carded_body)
    carded = _measured_load(service, HOOK_PATH, carded_body, clients=8, requests=sizes.load_requests,
                            max_seconds=sizes.load_seconds)
    rows.append(_load_row(f"service, card issued ({', '.join(_topics(carded_answer)) or 'none'})", carded))
    ratio8 = results[("service", 8)].p50 / results[("floor", 8)].p50
    ratio32 = results[("service", 32)].p50 / results[("floor", 32)].p50
    p99_8 = results[("service", 8)].p99
    cpu_floor = results[("floor", 8)].merged(results[("floor", 32)]).cpu_ms_per_request
    cpu_service = results[("service", 8)].merged(results[("service", 32)]).cpu_ms_per_request
    cpu_ratio = cpu_service / cpu_floor
    report.data["heavy"] = {f"{k[0]}@{k[1]}": {"p50": v.p50, "p99": v.p99, "rps": v.throughput} for k, v in results.items()}
    report.target("1. heavy order-select: service p50 <= 1.5 x floor p50 (8 clients)",
                  f"{ratio8:.2f} x ({_ms(results[('service', 8)].p50)} vs {_ms(results[('floor', 8)].p50)})", ratio8 <= 1.5)
    report.target("1. heavy order-select: service p50 <= 1.5 x floor p50 (32 clients)",
                  f"{ratio32:.2f} x ({_ms(results[('service', 32)].p50)} vs {_ms(results[('floor', 32)].p50)})", ratio32 <= 1.5)
    report.target("1. heavy order-select: service p99 < 50 ms at 8 clients", _ms(p99_8), p99_8 < 50)
    report.sections.append("\n".join([
        "## 1. Heavy patient, full prefetch, order-select",
        "",
        f"Request: {len(body) / 1024:.0f} KiB of compact JSON; prefetch holds "
        + ", ".join(f"{n} {k}" for k, n in counts.items())
        + f". Same body to both routes. Cards answered: {', '.join(_topics(answer)) or 'none'}.",
        f"Each row: up to {sizes.load_requests} requests or {sizes.load_seconds:.0f} s in {LOAD_TURNS} turns taken alternately with the other "
        f"route, after {sizes.warmup_requests} warm-up requests per route.",
        "",
        "| route | clients | requests | p50 | p99 | throughput | worker CPU per request |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        f"Service / floor p50: {ratio8:.2f} x at 8 clients, {ratio32:.2f} x at 32 clients. "
        f"Service / floor worker CPU per request: {cpu_ratio:.2f} x ({cpu_service:.2f} ms vs {cpu_floor:.2f} ms, "
        "both client counts): on two cores shared with the load client, latency is mostly queueing "
        "behind that CPU time, so this ratio is the steadier measure of the same thing.",
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


def no_prefetch(service, fhir: FhirServer, report: Report, sizes: Sizes, fhir_timeout: float) -> None:
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
    report.target("2. no prefetch: hook p50 <= 1.3 x slowest single FHIR query",
                  f"{ratio:.2f} x ({_ms(hook_p50)} vs {_ms(slowest)}, {slowest_key})", ratio <= 1.3)
    report.target(f"2. one FHIR query hangs: answer within the deadline ({fhir_timeout:.1f} s + 100 ms)",
                  f"worst {_ms(worst_hang)}, status {sorted({s for s, _, _ in hang_answers})}", hang_ok)
    query_rows = [f"| {key} | {pages[key]} | {_ms(ms)} |" for key, ms in query_ms.items()]
    report.sections.append("\n".join([
        "## 2. No prefetch: the service fetches from a FHIR server on loopback",
        "",
        f"bench/fhir_server.py, {fhir.latency_seconds * 1000:.0f} ms added per request, pages of {fhir.page_size}, "
        f"same patient. Each query below fetched alone by the benchmark (median of 3, all pages):",
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


def scaling(service, report: Report, sizes: Sizes) -> None:
    rows, per_call, floor_per_call, own = [], {}, {}, {}
    rss_before = service.worker_rss_kib()
    for count, calls in zip(sizes.scaling, sizes.scaling_calls):
        heavy = heavy_patient(observations=count)
        body = _body(order_select_request(heavy))
        _check_answer(service, body)
        routes = (("floor", FLOOR_PATH), ("service", HOOK_PATH))
        samples: dict[str, list[float]] = {label: [] for label, _ in routes}
        for label, path in routes:
            post_once(service.url(path), body)
        for _ in range(calls):  # call by call in turn, so that the machine's drifting speed weighs on both
            for label, path in routes:
                samples[label].append(post_once(service.url(path), body)[2])
        timings = {label: statistics.median(values) for label, values in samples.items()}
        per_call[count] = timings["service"]
        floor_per_call[count] = timings["floor"]
        # Each service call against the floor call just before it: the median of these differences
        # is steadier than the difference of two medians when the machine's speed drifts.
        own[count] = max(statistics.median(s - f for f, s in zip(samples["floor"], samples["service"])), 0.001)
        rows.append(f"| {count:,} | {len(body) / 1024:,.0f} KiB | {_ms(timings['floor'])} | {_ms(timings['service'])} "
                    f"| {_ms(own[count])} | {timings['service'] / timings['floor']:.2f} x | {calls} |")
    small, middle, large = sizes.scaling
    # Judged on what the service adds to the framework's own work (reading and parsing the body),
    # which on this machine grows faster than the body once the parsed body outgrows the CPU caches.
    growth_ok = own[middle] / own[small] <= middle / small and own[large] / own[middle] <= large / middle
    report.data["scaling"] = per_call
    report.target("3. scaling: the service's own time per call (service - floor) grows no worse than linearly "
                  "with Observations",
                  " / ".join(f"{n:,}: {_ms(own[n])}" for n in sizes.scaling)
                  + f" (x {own[middle] / own[small]:.1f}, x {own[large] / own[middle]:.1f}; whole call "
                  + " / ".join(_ms(per_call[n]) for n in sizes.scaling) + ", the floor alone "
                  + " / ".join(_ms(floor_per_call[n]) for n in sizes.scaling) + ")", growth_ok)
    report.target(f"3. scaling: {large:,} Observations under 250 ms", _ms(per_call[large]), per_call[large] < 250)
    report.sections.append("\n".join([
        "## 3. Scaling with the number of Observations (full prefetch, one client, floor and service calls in turn, p50)",
        "",
        "| Observations | body | floor | service | service - floor (median of call pairs) | service / floor | calls |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "Bodies above 5 MiB are over the service's default `server.max_body_bytes`; the benchmark's configuration raises it to 64 MiB.",
        "Worker RSS before these calls: " + ", ".join(f"{kib / 1024:.1f} MiB" for _, kib in sorted(rss_before.items()))
        + "; after: " + ", ".join(f"{kib / 1024:.1f} MiB" for _, kib in sorted(service.worker_rss_kib().items()))
        + " (the largest body is parsed into a few hundred MiB of objects; the allocator keeps part of it).",
    ]))


def memory(service, report: Report, sizes: Sizes, startup: dict) -> None:
    body = _body(order_select_request(heavy_patient(observations=sizes.observations)))
    samples: list[tuple[int, dict[int, int]]] = [(0, service.worker_rss_kib())]
    done = 0
    started = time.perf_counter()
    errors = 0
    while done < sizes.memory_calls:
        result = run_load(service.url(HOOK_PATH), body, clients=8, requests=sizes.memory_step, max_seconds=120)
        errors += result.errors
        done += result.count + result.errors
        samples.append((done, service.worker_rss_kib()))
        if result.count + result.errors == 0:
            break
    elapsed = time.perf_counter() - started
    halfway = min(samples, key=lambda s: abs(s[0] - sizes.memory_calls / 2))
    final = samples[-1]
    peak_mib = max(max(rss.values(), default=0) for _, rss in samples) / 1024
    final_mib = max(final[1].values(), default=0) / 1024
    # Growth = a new high-water mark in the second half; single samples move by an allocator page
    # or two either way, a leak raises the high-water mark at every step.
    first_half = [rss for calls, rss in samples if 0 < calls <= halfway[0]]
    second_half = [rss for calls, rss in samples if calls > halfway[0]]
    growth = {
        pid: (max((rss.get(pid, 0) for rss in second_half), default=0) - max((rss.get(pid, 0) for rss in first_half), default=0)) / 1024
        for pid in final[1]
    }
    worst_growth = max(growth.values(), default=0.0)
    rows = [f"| {calls:,} | " + " | ".join(f"{rss[pid] / 1024:.1f} MiB" for pid in sorted(rss)) + " |" for calls, rss in samples]
    worker_columns = len(samples[0][1]) or 1
    report.data["memory"] = {"peak_mib": peak_mib, "final_mib": final_mib, "growth_mib": growth}
    report.target(f"4. worker RSS after {final[0]:,} calls under 150 MB",
                  f"largest worker {final_mib:.1f} MiB (peak during the run {peak_mib:.1f} MiB)", final_mib * 1.048576 < 150)
    report.target(f"4. no RSS growth between call {halfway[0]:,} and call {final[0]:,} (highest RSS after call {halfway[0]:,} "
                  f"vs up to it, within 1 MiB)",
                  ", ".join(f"worker {pid}: {delta:+.2f} MiB" for pid, delta in sorted(growth.items())), worst_growth <= 1.0)
    report.target("4. start-up to the first answer under 3 s", _ms(startup["first_answer_s"] * 1000), startup["first_answer_s"] < 3)
    report.sections.append("\n".join([
        "## 4. Memory and start-up",
        "",
        f"Start-up: spawn to discovery answering {_ms(startup['ready_s'] * 1000)}; spawn to the first heavy "
        f"order-select answer {_ms(startup['first_answer_s'] * 1000)} (that first call alone: {_ms(startup['first_call_ms'])}).",
        "",
        f"RSS of each gunicorn worker (/proc/<pid>/status VmRSS) while {final[0]:,} heavy order-select calls ran "
        f"at 8 clients ({elapsed:.0f} s, {errors} errors):",
        "",
        "| calls | " + " | ".join(f"worker {pid}" for pid in sorted(samples[0][1])) + " |",
        "| --- |" + " --- |" * worker_columns,
        *rows,
    ]))


def _measure(service, fhir: FhirServer, report: Report, sizes: Sizes, deadline: float) -> None:
    with service:
        ready = service.wait_ready()
        first_body = _body(order_select_request(heavy_patient(observations=sizes.observations)))
        _, _, first_call_ms = post_once(service.url(HOOK_PATH), first_body)
        startup = {"ready_s": ready, "first_answer_s": time.perf_counter() - service.started_at,
                   "first_call_ms": first_call_ms}
        for step in (lambda: heavy_load(service, report, sizes),
                     lambda: no_prefetch(service, fhir, report, sizes, deadline),
                     lambda: memory(service, report, sizes, startup),
                     lambda: scaling(service, report, sizes)):
            step()
            print(report.sections[-1], "\n", flush=True)


def run(sizes: Sizes, *, out: Path | None, command: str, fhir_timeout: float | None = None) -> Report:
    report = Report(command=command, machine=machine_facts())
    report.machine["load average at start"] = _load_average()
    deadline = fhir_timeout or DEFAULT_FHIR_TIMEOUT_SECONDS
    with FhirServer(heavy_patient(observations=sizes.observations), latency_seconds=sizes.fhir_latency_seconds) as fhir:
        service = start_service(workers=2, fhir_base=fhir.base_url, fhir_timeout_seconds=fhir_timeout)
        try:
            _measure(service, fhir, report, sizes, deadline)
        except BaseException:
            print(f"the service's log is kept: {service.log_path}", file=sys.stderr)
            raise
        shutil.rmtree(service.log_path.parent, ignore_errors=True)  # its config, log and ledger
    report.machine["load average at end"] = _load_average()
    if out is not None:
        notes = ""
        if out.exists():
            previous = out.read_text(encoding="utf-8")
            if NOTES_HEADING in previous:  # hand-written notes (profiles, fixes) survive a re-run
                notes = previous[previous.index(NOTES_HEADING):]
        out.write_text(report.markdown() + ("\n" + notes if notes else ""), encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a check of the harness, not a measurement")
    parser.add_argument("--out", type=Path, help=f"where to write the report (default {RESULTS.relative_to(ROOT)}; "
                                                 "--quick writes nothing unless given)")
    parser.add_argument("--fhir-timeout", type=float, help="the service's fhir.timeout_seconds (default: its own default)")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="first wait up to this long for the 1-minute load average to fall below 1")
    args = parser.parse_args(argv)
    out = args.out or (None if args.quick else RESULTS)
    waited_until = time.monotonic() + args.wait_quiet
    while time.monotonic() < waited_until and _one_minute_load() >= 1.0:
        time.sleep(5)
    report = run(QUICK if args.quick else Sizes(), out=out, command="python3 -m bench" + (" --quick" if args.quick else ""),
                 fhir_timeout=args.fhir_timeout)
    print("| target | measured | met |")
    for name, measured, met in report.targets:
        print(f"| {name} | {measured} | {'yes' if met else 'NO'} |")
    if out is not None:
        print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
