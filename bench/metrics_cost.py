"""What the Prometheus metrics cost per hook call, and what a scrape costs:

    python3 -m bench.metrics_cost

Times, in a fresh process per mode, the recording one hook call does (cds_service.ops.metrics:
one request counter and duration histogram, two cards, eight FHIR queries) as the median of
batches of 10,000 calls' worth: in-process values (tests, `check`) and multiprocess mode (files
in $PROMETHEUS_MULTIPROC_DIR, as under `serve`). In multiprocess mode it also times one scrape
of the folder after two worker processes wrote to it (every series of the service declared).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

CALLS_PER_BATCH = 10_000
BATCHES = 7
CARDS = {"cards": [
    {"source": {"topic": {"code": "hypocalcemia"}}, "indicator": "critical"},
    {"source": {"topic": {"code": "calcium-monitoring"}}, "indicator": "warning"},
]}
FHIR_RESULTS = [SimpleNamespace(error=None, truncated=False)] * 8


def _measure() -> dict:
    from cds_service.knowledge import load_knowledge
    from cds_service.ops import metrics
    from cds_service.protocol.services import load_services

    metrics.declare_label_values(load_services(), load_knowledge().topics)

    def one_call():
        metrics.record_request("/cds-services/order-sign", 200, 0.012)
        metrics.record_cards(None, CARDS)
        metrics.record_fhir_queries(FHIR_RESULTS)

    batches = []
    for _ in range(BATCHES):
        started = time.perf_counter()
        for _ in range(CALLS_PER_BATCH):
            one_call()
        batches.append((time.perf_counter() - started) / CALLS_PER_BATCH * 1e6)
    result = {"per_call_us": statistics.median(batches)}
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # A second process writes too, as a second worker would; then time scrapes of both.
        pid = os.fork()
        if pid == 0:
            for _ in range(100):
                one_call()
            os._exit(0)
        os.waitpid(pid, 0)
        scrapes = []
        for _ in range(20):
            started = time.perf_counter()
            body, _ = metrics.exposition(None)
            scrapes.append((time.perf_counter() - started) * 1000)
        result.update(scrape_ms=statistics.median(scrapes), scrape_bytes=len(body))
    return result


def main() -> int:
    if "--child" in sys.argv:
        print(json.dumps(_measure()))
        return 0
    rows = []
    for mode in ("in-process", "multiprocess"):
        env = dict(os.environ)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with tempfile.TemporaryDirectory(prefix="denosumab-cds-metrics-bench-") as folder:
            if mode == "multiprocess":
                env["PROMETHEUS_MULTIPROC_DIR"] = folder
            out = subprocess.run([sys.executable, "-m", "bench.metrics_cost", "--child"], env=env,
                                 capture_output=True, text=True, check=True).stdout
        rows.append((mode, json.loads(out.strip().splitlines()[-1])))
    print("| values | recording per hook call | one scrape (2 workers) |")
    print("| --- | --- | --- |")
    for mode, result in rows:
        scrape = f"{result['scrape_ms']:.1f} ms ({result['scrape_bytes'] // 1024} KiB)" if "scrape_ms" in result else "-"
        print(f"| {mode} | {result['per_call_us']:.1f} us | {scrape} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
