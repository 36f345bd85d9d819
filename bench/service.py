"""Start the benchmark's two gunicorn servers (real worker processes), and watch them.

`start_service`: `denosumab-cds serve` from the checkout that holds this bench/ (the same code as
the console script, started as `python -m cds_service.cli serve`), with a configuration that
allows the loopback FHIR server, no JWT, a body limit large enough for the scaling runs, a
private SQLite card ledger, and the in-app floor route switched on (DENOSUMAB_CDS_BENCH_FLOOR=1).

`start_bare_floor`: bench/floor_app.py, a Flask app that imports nothing but Flask, under gunicorn
with the service's worker count and worker class (`bare_floor_options`): the bare framework.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOOR_ENV_VAR = "DENOSUMAB_CDS_BENCH_FLOOR"
FLOOR_PATH = "/bench/floor"  # the in-app floor: a route of the service itself
BARE_FLOOR_PATH = "/cds-services/order-select"  # bench/floor_app.py: the hook's own path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kib(pid: int) -> int | None:
    """Resident set size of a process from /proc/<pid>/status (VmRSS), in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used, from /proc/<pid>/stat (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


@dataclass
class Served:
    """A gunicorn server the benchmark started: its master process, port and log, and its workers."""

    process: subprocess.Popen
    port: int
    workers: int
    log_path: Path
    started_at: float  # time.perf_counter() when the process was spawned
    ready_path: str = "/cds-services"  # GET; answered with `ready_status` once a worker serves
    ready_status: int = 200

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def worker_pids(self) -> list[int]:
        return children_of(self.process.pid)

    def worker_cpu_seconds(self) -> float:
        """CPU time used by all workers so far: per request, steadier than latency on a busy machine."""
        return sum(cpu_seconds(pid) for pid in self.worker_pids())

    def worker_rss_kib(self) -> dict[int, int]:
        return {pid: rss for pid in self.worker_pids() if (rss := rss_kib(pid)) is not None}

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Seconds from spawn until `ready_path` answers and every worker is forked."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.log_path.name}: the server exited with {self.process.returncode}; see {self.log_path}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", self.ready_path)
                answered = conn.getresponse().status == self.ready_status
                conn.close()
                if answered and len(self.worker_pids()) >= self.workers:
                    return time.perf_counter() - self.started_at
            except OSError:
                pass
            time.sleep(0.01)
        raise RuntimeError(f"the server did not answer within {timeout} s; see {self.log_path}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # gunicorn: graceful stop of master and workers
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


@dataclass
class Service(Served):
    """`denosumab-cds serve`; its configuration, log and card ledger are in `log_path.parent`."""

    config_path: Path | None = None


def write_config(directory: Path, *, port: int, workers: int, fhir_base: str | None, max_body_bytes: int,
                 fhir_timeout_seconds: float | None) -> Path:
    lines = [
        f'public_base_url = "http://127.0.0.1:{port}"',
        "[auth]",
        "require_jwt = false",
        "[fhir]",
        f"allowed_servers = [{f'{chr(34)}{fhir_base}{chr(34)}' if fhir_base else ''}]",
    ]
    if fhir_timeout_seconds is not None:
        lines.append(f"timeout_seconds = {fhir_timeout_seconds}")
    lines += [
        "[server]",
        'host = "127.0.0.1"',
        f"port = {port}",
        f"workers = {workers}",
        f"max_body_bytes = {max_body_bytes}",
    ]
    lines += [
        "[store]",  # the card ledger: a private SQLite file, not ./var of the checkout
        f'url = "sqlite:///{directory / "bench-store.sqlite3"}"',
        'patient_hash_key = "benchmark-only-key-0123456789abcdef"',
    ]
    path = directory / "bench-service.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def start_service(
    *, workers: int = 2, fhir_base: str | None = None, max_body_bytes: int = 64 * 1024 * 1024,
    fhir_timeout_seconds: float | None = None, work_dir: Path | None = None,
) -> Service:
    work_dir = work_dir or Path(tempfile.mkdtemp(prefix="denosumab-bench-"))
    port = free_port()
    config = write_config(work_dir, port=port, workers=workers, fhir_base=fhir_base,
                          max_body_bytes=max_body_bytes, fhir_timeout_seconds=fhir_timeout_seconds)
    log_path = work_dir / "service.log"
    env = dict(os.environ, **{FLOOR_ENV_VAR: "1", "PYTHONPATH": str(ROOT)})
    env.pop("DENOSUMAB_CDS_CONFIG", None)
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "cds_service.cli", "serve", "--config", str(config)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    return Service(process=process, port=port, workers=workers, log_path=log_path, started_at=started, config_path=config)


def bare_floor_options(workers: int = 2) -> list[str]:
    """The service's gunicorn worker settings (cds_service.cli.gunicorn_options, default [server]
    settings but `workers`) as gunicorn command-line options, for the bare floor: the same number
    of workers, the same kind (gunicorn's own `sync` or `gthread`; the service's classes only
    subclass them to word malformed-HTTP answers), threads, timeout, recycling and no control socket."""
    from cds_service.cli import gunicorn_options
    from cds_service.config import Settings
    from cds_service.workers import WORKER_CLASSES

    options = gunicorn_options(Settings(workers=workers))
    kind = next(name for name, worker_class in WORKER_CLASSES.items() if worker_class == options["worker_class"])
    args = ["--workers", str(options["workers"]), "--worker-class", kind, "--timeout", str(options["timeout"])]
    if kind == "gthread":
        args += ["--threads", str(options["threads"])]
    if options["max_requests"]:
        args += ["--max-requests", str(options["max_requests"]), "--max-requests-jitter", str(options["max_requests_jitter"])]
    if options.get("control_socket_disable"):
        args.append("--no-control-socket")  # as the service: no second server takes a gunicorn's control socket
    return args


def start_bare_floor(*, workers: int = 2, work_dir: Path | None = None) -> Served:
    """bench/floor_app.py under gunicorn, with the service's worker settings (`bare_floor_options`)."""
    work_dir = work_dir or Path(tempfile.mkdtemp(prefix="denosumab-bench-floor-"))
    port = free_port()
    log_path = work_dir / "bare-floor.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [sys.executable, "-m", "gunicorn", *bare_floor_options(workers), "--bind", f"127.0.0.1:{port}", "bench.floor_app:app"]
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    # It has no GET route: GET on the hook's path answers 405 once a worker serves.
    return Served(process=process, port=port, workers=workers, log_path=log_path, started_at=started,
                  ready_path=BARE_FLOOR_PATH, ready_status=405)
