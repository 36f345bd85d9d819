"""Closed-loop load: N client threads, each with its own connection, POSTing one body (or the
next of a `Bodies` callable's, e.g. a bench.patient.PatientRotation: one body for many patients).

A connection is kept alive while the server keeps it open; when the server closes it after an
answer (gunicorn's sync workers do), the next request opens a new one, as an EHR's client would.

Every run is bounded twice, by a request count and by a duration, and stops by itself. Only
loopback addresses are accepted as targets.
"""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
Bodies = Callable[[], bytes]  # each call: the body of the next request


@dataclass
class LoadResult:
    clients: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    wall_seconds: float = 0.0
    worker_cpu_seconds: float = 0.0  # the server's workers, when the caller measured it

    @property
    def count(self) -> int:
        return len(self.latencies_ms)

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))  # nearest rank
        return ordered[index]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")

    @property
    def p99(self) -> float:
        return self.percentile(99)

    def merged(self, other: "LoadResult") -> "LoadResult":
        """Two runs of the same load as one (latencies pooled, wall time added)."""
        statuses = dict(self.statuses)
        for status, count in other.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
        return LoadResult(self.clients, self.latencies_ms + other.latencies_ms, self.errors + other.errors,
                          statuses, self.wall_seconds + other.wall_seconds,
                          self.worker_cpu_seconds + other.worker_cpu_seconds)

    @property
    def cpu_ms_per_request(self) -> float:
        return self.worker_cpu_seconds * 1000 / self.count if self.count else float("nan")

    @property
    def throughput(self) -> float:
        return self.count / self.wall_seconds if self.wall_seconds else 0.0


def _connection(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    if parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(f"the benchmark only sends traffic to loopback, not {parts.hostname}")
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout), parts.path or "/"


def post_once(url: str, body: bytes, *, timeout: float = 30.0) -> tuple[int, bytes, float]:
    """One POST on a fresh connection: (status, body, milliseconds)."""
    conn, path = _connection(url, timeout)
    try:
        started = time.perf_counter()
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        return response.status, data, (time.perf_counter() - started) * 1000
    finally:
        conn.close()


def get_once(url: str, *, timeout: float = 30.0) -> tuple[int, bytes, float]:
    """One GET on a fresh connection: (status, body, milliseconds)."""
    conn, path = _connection(url, timeout)
    try:
        started = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        data = response.read()
        return response.status, data, (time.perf_counter() - started) * 1000
    finally:
        conn.close()


def run_load(
    url: str, body: bytes | Bodies, *, clients: int, requests: int, max_seconds: float, timeout: float = 30.0,
) -> LoadResult:
    """`clients` threads POST `body` (or `body()`, the next body each time) back to back until
    `requests` answers or `max_seconds`."""
    result = LoadResult(clients)
    lock = threading.Lock()
    issued = 0
    deadline = time.monotonic() + max_seconds
    next_body = body if callable(body) else lambda: body

    def take_ticket() -> bool:
        nonlocal issued
        with lock:
            if issued >= requests or time.monotonic() >= deadline:
                return False
            issued += 1
            return True

    def client() -> None:
        conn, path = _connection(url, timeout)
        try:
            while take_ticket():
                data = next_body()  # made before the clock starts: only the server's answer is timed
                headers = {"Content-Type": "application/json", "Content-Length": str(len(data))}
                started = time.perf_counter()
                try:
                    conn.request("POST", path, body=data, headers=headers)
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn, path = _connection(url, timeout)
                    status = 0
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    result.statuses[status] = result.statuses.get(status, 0) + 1
                    if status == 200:
                        result.latencies_ms.append(elapsed)
                    else:
                        result.errors += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=client, name=f"bench-client-{i}", daemon=True) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max_seconds + timeout + 5)
    result.wall_seconds = time.perf_counter() - started
    return result
