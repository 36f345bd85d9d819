"""Through a real `denosumab-cds serve` (gunicorn, two worker processes, 127.0.0.1): the probes, the
metrics of both workers added up in every scrape, and a stderr of JSON lines only, gunicorn's own
(start, signals, worker exits) included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.requests_for_tests import baseline_request
from tests.test_serve import _free_port

pytestmark = pytest.mark.slow
START_SECONDS = 60
CALLS = 12


def _wait(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def _get(url: str, **kwargs) -> requests.Response:
    # A new connection each time, so that the calls spread over the two workers.
    return requests.get(url, headers={"Connection": "close"}, timeout=10, **kwargs)


def _order_sign_total(base: str) -> float:
    text = _get(f"{base}/metrics").text
    for family in text_string_to_metric_families(text):
        if family.name == "denosumab_cds_requests":
            return sum(s.value for s in family.samples
                       if s.name.endswith("_total") and s.labels == {"service": "order-sign", "status": "200"})
    raise AssertionError("no denosumab_cds_requests family")


def _booted_workers(log: Path) -> list[int]:
    pids = []
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("logger") == "gunicorn.error" and entry["message"].startswith("Booting worker with pid: "):
            pids.append(int(entry["message"].rsplit(" ", 1)[1]))
    return pids


def test_probes_metrics_across_two_workers_and_json_only_stderr(monkeypatch, tmp_path):
    monkeypatch.delenv("DENOSUMAB_CDS_CONFIG", raising=False)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "stale"))  # never reused: serve makes its own
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "cds_service.cli", "serve", "--port", str(port), "--workers", "2"],
            stdout=subprocess.DEVNULL, stderr=stderr,
        )
    try:
        _wait(lambda: process.poll() is not None or _answers(f"{base}/healthz"), START_SECONDS, "the service")
        assert process.poll() is None, log.read_text()
        (metrics_dir,) = (tmp_path / "tmp").glob("denosumab-cds-metrics-*")  # a fresh folder of its own
        assert not (tmp_path / "stale").exists()

        health = _get(f"{base}/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok" and health.json()["version"]
        assert _get(f"{base}/readyz").json() == {"status": "ready"}

        # Every family is there before any call.
        first = {f.name for f in text_string_to_metric_families(_get(f"{base}/metrics").text)}
        assert {"denosumab_cds_requests", "denosumab_cds_request_duration_seconds", "denosumab_cds_cards",
                "denosumab_cds_cards_suppressed", "denosumab_cds_fhir_queries", "denosumab_cds_jwt_rejected",
                "denosumab_cds_store_errors"} <= first
        assert _order_sign_total(base) == 0

        answered_by = set()

        def call(_):
            return requests.post(f"{base}/cds-services/order-sign", json=baseline_request(),
                                 headers={"Connection": "close"}, timeout=15).status_code

        # Four at a time: one after another, a busy machine can hand every call to the same worker.
        with ThreadPoolExecutor(max_workers=4) as pool:
            assert set(pool.map(call, range(CALLS))) == {200}
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("logger") == "cds_service.access" and entry.get("service") == "order-sign":
                answered_by.add(entry["pid"])
        assert len(answered_by) == 2, "both workers should have answered some of the calls"
        # Whichever worker answers a scrape, it shows the calls of both.
        assert {_order_sign_total(base) for _ in range(6)} == {CALLS}

        # A worker that exits (here: killed) leaves its counts in the totals; gunicorn starts another.
        victim = _booted_workers(log)[0]
        os.kill(victim, signal.SIGKILL)
        _wait(lambda: len(_booted_workers(log)) >= 3, 30, "a replacement worker")
        _wait(lambda: _answers(f"{base}/healthz"), 30, "the replacement worker")
        assert {_order_sign_total(base) for _ in range(6)} == {CALLS}
        # Its files were folded into the archive: the folder does not grow with recycled workers.
        assert not list(metrics_dir.glob(f"*_{victim}.db"))
        assert (metrics_dir / "counter_archive.db").exists()

        # gunicorn's own lines for a reload (HUP) are JSON too.
        os.kill(process.pid, signal.SIGHUP)
        _wait(lambda: "Hang up: Master" in log.read_text(), 30, "the reload")
        _wait(lambda: _answers(f"{base}/healthz"), 30, "the service after the reload")
    finally:
        process.terminate()
        process.wait(timeout=30)

    lines = log.read_text().splitlines()
    entries = [json.loads(line) for line in lines]  # every line on stderr is one JSON object
    assert all(isinstance(entry, dict) and entry["message"] for entry in entries)
    messages = [e["message"] for e in entries if e["logger"].startswith("gunicorn.")]
    assert any(m.startswith("Starting gunicorn") for m in messages)
    assert any(m.startswith(f"Worker (pid:{victim}) was sent SIGKILL") for m in messages)
    assert "Shutting down: Master" in messages
    assert not metrics_dir.exists(), "serve removes its metrics folder when it stops"
