"""`denosumab-cds serve` in local trial mode, as a newcomer starts it (real gunicorn process)."""

import json
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest
import requests

from tests.requests_for_tests import baseline_request

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(url: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise AssertionError(f"service did not answer at {url}")


@contextmanager
def _trial_server(monkeypatch):
    """`denosumab-cds serve` in trial mode with one worker, answering; yields its port and a list
    that holds its stderr once it has stopped."""
    monkeypatch.delenv("DENOSUMAB_CDS_CONFIG", raising=False)
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "cds_service.cli", "serve", "--port", str(port), "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    stderr: list[str] = []
    try:
        _wait_for(f"http://127.0.0.1:{port}/cds-services")
        yield port, stderr
    finally:
        process.terminate()
        stderr.append(process.communicate(timeout=20)[1])


def test_trial_mode_serves_discovery_and_hooks_on_loopback(monkeypatch):
    with _trial_server(monkeypatch) as (port, stderr):
        response = requests.post(f"http://127.0.0.1:{port}/cds-services/order-sign", json=baseline_request(), timeout=10)
        assert response.status_code == 200
        assert isinstance(response.json()["cards"], list)
    (err,) = stderr
    assert "LOCAL TRIAL MODE" in err
    # One JSON access line per call, parseable, without the patient's name or birth date.
    access = [json.loads(line) for line in err.splitlines() if '"logger":"cds_service.access"' in line]
    assert any(entry.get("service") == "order-sign" and entry["status"] == 200 for entry in access)
    assert "Halvorsen" not in err and "1958-03-14" not in err


def test_serve_opens_no_gunicorn_control_socket_another_instance_could_take(monkeypatch, tmp_path):
    """gunicorn 25.1+ opens a control socket at one path per user ($XDG_RUNTIME_DIR/gunicorn.ctl),
    taken over by the next gunicorn of that user: the service opens none."""
    runtime_dir = tmp_path / "runtime"
    runtime_dir.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime_dir))
    with _trial_server(monkeypatch) as (port, _stderr):
        assert requests.get(f"http://127.0.0.1:{port}/cds-services", timeout=10).status_code == 200
        assert list(runtime_dir.iterdir()) == []


def _raw_exchange(port: int, request: bytes) -> tuple[int, dict, bytes]:
    """Send `request` as is (no HTTP library would send it malformed) and read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in header_lines)}
    return int(status_line.split()[1]), headers, body


def test_malformed_http_gets_an_operation_outcome_and_the_log_never_quotes_it(monkeypatch):
    # gunicorn rejects these before the application sees them; its own answer would be an HTML
    # page, and its log would quote the header line (here a bearer token on a line of its own).
    token = "eyJhbGciOiJFUzM4NCJ9.c2VjcmV0LWNsYWltcw.c2lnbmF0dXJl"
    malformed = {
        431: b"GET /cds-services HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 9000 + b"\r\n\r\n",
        400: b"GET /cds-services HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\r\n" + token.encode() + b"\r\n\r\n",
        414: b"GET /cds-services/" + b"x" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    }
    with _trial_server(monkeypatch) as (port, stderr):
        for expected_status, request in malformed.items():
            status, headers, body = _raw_exchange(port, request)
            assert status == expected_status
            assert headers["content-type"] == "application/json"
            outcome = json.loads(body)
            assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["severity"] == "error"
        # The worker is still serving after them.
        assert requests.get(f"http://127.0.0.1:{port}/cds-services", timeout=10).status_code == 200
    (err,) = stderr
    assert token not in err and "Bearer" not in err
    assert "malformed HTTP request answered 400: InvalidHeader" in err


def test_trial_mode_refuses_to_listen_beyond_loopback(monkeypatch):
    monkeypatch.delenv("DENOSUMAB_CDS_CONFIG", raising=False)
    result = subprocess.run(
        [sys.executable, "-m", "cds_service.cli", "serve", "--host", "0.0.0.0", "--port", str(_free_port())],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2
    assert "127.0.0.1" in result.stderr
