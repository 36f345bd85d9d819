"""What each newer piece of a hook call costs, in-process (the worker's code, without HTTP):

    python3 -m bench.hot_path                  # a table; --calls N (default 300 of each kind)
    python3 -m bench.hot_path --json           # one JSON object: what `python3 -m bench` reads

One process set up as a worker of `serve` is: create_app with a card ledger in a temporary SQLite
file, metrics in multiprocess mode (a temporary $PROMETHEUS_MULTIPROC_DIR, set before
prometheus_client is imported), the JSON access log formatted (and written to /dev/null), then
gc.freeze() and the worker's young-generation threshold. Heavy order-select calls, with a card and
without, taken in turn, through Flask's test client, each for another patient
(bench.patient.PatientRotation). The service's own functions are wrapped in timing shims, so
what is timed is what the service runs:

- the card gate, all of it: `CardGate.apply` (cds_service/suppression.py; returns at once without cards)
- the suppression look-up: `CardLedger.recent_overrides` (one query per call with cards)
- the ledger write: `CardLedger.record` (every card of the response in one transaction)
- metrics: `ops.metrics.record_request` (after every request) and `record_cards` (a HookService listener)
- the knowledge-version stamp: the version is worked out once per worker (`knowledge_version`,
  timed here with its seeds digest not cached); per call it is one entry in each card
  (`cards.build.card_from_finding`), timed as `build_response` on the call's own findings with the
  version minus without it (median of pairs, run after the call so the whole call is not slowed)
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict

HOOK_PATH = "/cds-services/order-select"
GATE, LOOKUP, WRITE, METRICS, STAMP = ("card gate, all of it", "suppression look-up", "ledger write", "metrics",
                                       "knowledge-version stamp")
PIECES = (GATE, LOOKUP, WRITE, METRICS, STAMP)
WHERE = {
    GATE: "suppression.CardGate.apply",
    LOOKUP: "store.ledger.CardLedger.recent_overrides",
    WRITE: "store.ledger.CardLedger.record",
    METRICS: "ops.metrics.record_request + record_cards",
    STAMP: "cards.build_response with the version minus without",
}
STAMP_PAIRS = 5  # build_response with and without the version, per call
KINDS = ("card issued", "no card")


class Shims:
    """Timing shims around the service's functions: seconds spent in each piece during one call."""

    def __init__(self):
        self.current: dict[str, float] = defaultdict(float)
        self.called: dict[str, int] = defaultdict(int)

    def wrap(self, piece: str, function):
        @functools.wraps(function)
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.current[piece] += time.perf_counter() - started
                self.called[piece] += 1

        return timed

    def take(self) -> dict[str, float]:
        """The pieces' seconds in the call just made, and start afresh."""
        taken = dict(self.current)
        self.current.clear()
        return taken


def measure(calls: int, observations: int) -> dict:
    metrics_dir = tempfile.mkdtemp(prefix="denosumab-bench-metrics-")
    store_dir = tempfile.mkdtemp(prefix="denosumab-bench-hot-path-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # before prometheus_client is imported
    try:
        return _measure(calls, observations, f"sqlite:///{store_dir}/store.sqlite3")
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        shutil.rmtree(store_dir, ignore_errors=True)


def _measure(calls: int, observations: int, store_url: str) -> dict:
    from bench.patient import QUIET_LABS_DAYS_AGO, PatientRotation, heavy_patient, order_select_request
    from cds_service import evaluate, suppression
    from cds_service.app import create_app
    from cds_service.cli import GC_YOUNG_THRESHOLD
    from cds_service.config import Settings
    from cds_service.knowledge import version
    from cds_service.logs import configure_logging
    from cds_service.ops import metrics
    from cds_service.store.ledger import CardLedger

    configure_logging()  # the access line is formatted as in a worker, and thrown away
    logging.getLogger().handlers[0].setStream(open(os.devnull, "w"))  # noqa: SIM115 (for the process's life)
    settings = Settings(max_body_bytes=1 << 30, store_url=store_url, patient_hash_key="benchmark-only-key-0123456789abcdef")
    app = create_app(settings)
    service = app.extensions["denosumab_cds"]
    client = app.test_client()

    def encoded(heavy) -> bytes:
        return json.dumps(order_select_request(heavy), separators=(",", ":")).encode()

    bodies = {
        "card issued": PatientRotation(encoded(heavy_patient(observations=observations)), first=6000),
        "no card": PatientRotation(encoded(heavy_patient(observations=observations, newest_labs_days_ago=QUIET_LABS_DAYS_AGO)),
                                   first=6000),
    }

    shims = Shims()
    CardGate, real_record_cards = suppression.CardGate, metrics.record_cards
    CardGate.apply = shims.wrap(GATE, CardGate.apply)
    CardLedger.recent_overrides = shims.wrap(LOOKUP, CardLedger.recent_overrides)
    CardLedger.record = shims.wrap(WRITE, CardLedger.record)
    metrics.record_request = shims.wrap(METRICS, metrics.record_request)  # app.py looks it up at each call
    service.listeners[:] = [shims.wrap(METRICS, real_record_cards) if listener is real_record_cards else listener
                            for listener in service.listeners]
    built: list[tuple] = []  # build_response's arguments in the call just made
    real_build_response = evaluate.build_response

    def recording_build_response(findings, kb, knowledge_version=None):
        built.append((findings, kb, knowledge_version))
        return real_build_response(findings, kb, knowledge_version)

    evaluate.build_response = recording_build_response

    def stamp_seconds() -> float | None:
        """build_response on this call's findings with the version, minus without it (None: not called)."""
        differences = []
        for findings, kb, knowledge_version in built:
            for _ in range(STAMP_PAIRS):
                started = time.perf_counter()
                real_build_response(findings, kb, knowledge_version)
                stamped = time.perf_counter() - started
                started = time.perf_counter()
                real_build_response(findings, kb, None)
                differences.append(stamped - (time.perf_counter() - started))
        built.clear()
        return statistics.median(differences) * len(differences) / STAMP_PAIRS if differences else None

    topics: dict[str, list[str]] = {}

    def call(kind: str) -> float:
        body = bodies[kind]()
        started = time.perf_counter()
        response = client.post(HOOK_PATH, data=body, content_type="application/json")
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"order-select answered {response.status_code}: {response.get_data(as_text=True)[:300]}")
        topics[kind] = sorted(card["source"]["topic"]["code"] for card in response.get_json()["cards"])
        return elapsed

    for _ in range(5):  # lazy imports, caches, the ledger's first pages
        for kind in KINDS:
            call(kind)
            shims.take()
            built.clear()
    if not topics["card issued"] or topics["no card"]:
        raise RuntimeError(f"the carded request answered {topics['card issued']}, the quiet one {topics['no card']}")
    gc.freeze()  # as the worker does after fork (cds_service/cli.py)
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)
    shims.called.clear()
    samples = {kind: {"whole": [], **{piece: [] for piece in PIECES}} for kind in KINDS}
    called = {kind: defaultdict(int) for kind in KINDS}
    for _ in range(calls):
        for kind in KINDS:  # in turn, so that the machine's drifting speed weighs on both alike
            whole = call(kind)
            pieces = shims.take()
            if (stamp := stamp_seconds()) is not None:
                pieces[STAMP] = stamp
            samples[kind]["whole"].append(whole * 1000)
            for piece in PIECES:
                samples[kind][piece].append(pieces.get(piece, 0.0) * 1000)
                called[kind][piece] += piece in pieces
    version._seeds_digest.cache_clear()
    started = time.perf_counter()
    version.knowledge_version(service.kb, settings)
    version_once_ms = (time.perf_counter() - started) * 1000
    return {
        "calls": calls,
        "observations": observations,
        "body_kib": bodies["card issued"].size / 1024,
        "topics": topics,
        "version_once_ms": version_once_ms,
        "kinds": {
            kind: {
                "whole_ms": statistics.median(samples[kind]["whole"]),
                "pieces": {
                    piece: {"median_ms": statistics.median(samples[kind][piece]), "calls": called[kind][piece]}
                    for piece in PIECES
                },
            }
            for kind in KINDS
        },
    }


def table(result: dict) -> list[str]:
    """The markdown rows of `result`: each piece's median per call beside the whole call's."""
    kinds = result["kinds"]
    lines = ["| piece | what is timed | " + " | ".join(f"{kind}: median per call | share" for kind in KINDS) + " |",
             "| --- | --- |" + " --- | --- |" * len(KINDS),
             "| whole call | Flask test client, POST order-select | "
             + " | ".join(f"{kinds[kind]['whole_ms']:.2f} ms | 100 %" for kind in KINDS) + " |"]
    for piece in PIECES:
        cells = []
        for kind in KINDS:
            measured = kinds[kind]["pieces"][piece]
            if not measured["calls"]:
                cells.append("not called |")
                continue
            ms = measured["median_ms"]
            value = f"{ms * 1000:.1f} µs" if ms < 0.1 else f"{ms:.3f} ms"
            cells.append(f"{value} | {ms / kinds[kind]['whole_ms'] * 100:.1f} %")
        lines.append(f"| {piece} | `{WHERE[piece]}` | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.hot_path", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300, help="calls of each kind (default 300)")
    parser.add_argument("--observations", type=int, default=400)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before the metrics folder was set")
    result = measure(args.calls, args.observations)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.observations} Observations, {result['body_kib']:.0f} KiB, {args.calls} calls of each kind; "
          f"cards: {', '.join(result['topics']['card issued'])}; knowledge version worked out once: "
          f"{result['version_once_ms']:.1f} ms")
    print("\n".join(table(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
