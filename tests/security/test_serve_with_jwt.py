"""End to end through `denosumab-cds serve` (real gunicorn, two worker processes, 127.0.0.1):
a test acting as the EHR signs ES384 JWTs with a key it generated and registered as a JWKS file.

Accepted on discovery, hook call and feedback; refused without a token; a token replayed to the
other worker process, or to another instance sharing the store, is refused; hostile bodies never
take a worker down."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests.requests_for_tests import baseline_request, searchset
from tests.security.ehr import EHR_ISS, EhrKey, claims_for, write_jwks

pytestmark = pytest.mark.slow

# The URL the EHR calls (a load balancer in front of the instances): the JWT audience.
PUBLIC_BASE_URL = "https://cds.hospital.example/denosumab"
START_SECONDS = 60
CONFIG = """\
public_base_url = "{public_base_url}"

[auth]
require_jwt = true

[[clients]]
iss = "{iss}"
jwks_file = "ehr-jwks.json"
fhir_servers = ["{fhir_base}"]

[server]
host = "127.0.0.1"

[store]
url = "sqlite:///{store}"
patient_hash_key = "test-only-key-0123456789abcdef0123456789"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_command() -> list[str]:
    script = shutil.which("denosumab-cds")
    return [script] if script else [sys.executable, "-m", "cds_service.cli"]


class Server:
    """One `denosumab-cds serve` process; its stderr (the JSON log) goes to a file."""

    def __init__(self, config: Path, workers: int, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._log = log.open("w")
        self.process = subprocess.Popen(
            [*serve_command(), "serve", "--config", str(config), "--port", str(self.port), "--workers", str(workers)],
            stdout=subprocess.DEVNULL, stderr=self._log,
        )
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            assert self.process.poll() is None, log.read_text()
            try:
                if requests.get(f"{self.url}/openapi.json", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        else:
            self.stop()
            raise AssertionError(f"serve did not answer within {START_SECONDS}s:\n{log.read_text()}")

    def log_lines(self) -> list[dict]:
        lines = []
        for line in self.log_path.read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                pass  # none should be (test_the_log_names_the_ehr_... counts them)
        return lines

    def access_lines(self) -> list[dict]:
        return [line for line in self.log_lines() if line.get("logger") == "cds_service.access"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()


class FhirStub(BaseHTTPRequestHandler):
    """The EHR's FHIR server on 127.0.0.1: every search finds nothing; requests are recorded."""

    received: list[tuple[str, str | None]] = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.received.append((self.path, self.headers.get("Authorization")))
        body = json.dumps(searchset([])).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args):
        pass


@pytest.fixture(scope="module")
def fhir_base():
    stub = ThreadingHTTPServer(("127.0.0.1", 0), FhirStub)
    thread = threading.Thread(target=stub.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{stub.server_address[1]}/fhir/r4"
    stub.shutdown()
    stub.server_close()


@pytest.fixture(scope="module")
def ehr(tmp_path_factory, fhir_base):
    """The EHR's key and the service's configuration for it."""
    folder = tmp_path_factory.mktemp("serve-jwt")
    key = EhrKey("ES384")
    write_jwks(folder / "ehr-jwks.json", key)
    config = folder / "denosumab-cds.toml"
    config.write_text(CONFIG.format(public_base_url=PUBLIC_BASE_URL, iss=EHR_ISS, fhir_base=fhir_base,
                                    store=folder / "store.sqlite3"))
    return key, config, folder


@pytest.fixture(scope="module")
def server(ehr):
    key, config, folder = ehr
    instance = Server(config, workers=2, log=folder / "serve.log")
    yield instance
    instance.stop()


def call(server: Server, key: EhrKey, method: str, path: str, token: str | None = None, **kwargs):
    token = token or key.sign(claims_for(PUBLIC_BASE_URL + path))
    # A new connection per call, so that calls spread over the worker processes.
    with requests.Session() as session:
        return session.request(method, server.url + path, headers={"Authorization": f"Bearer {token}", "Connection": "close"},
                               timeout=15, **kwargs)


def test_es384_jwt_is_accepted_end_to_end(server, ehr, fhir_base):
    key = ehr[0]
    discovery = call(server, key, "GET", "/cds-services")
    assert discovery.status_code == 200
    assert "order-sign" in {s["id"] for s in discovery.json()["services"]}

    # The EHR leaves the lab results to be fetched from its FHIR server, with an access token.
    request = baseline_request()
    del request["prefetch"]["labResults"]
    request["fhirServer"] = fhir_base
    request["fhirAuthorization"] = {"access_token": "access-token-e2e", "token_type": "Bearer", "expires_in": 300}
    FhirStub.received.clear()
    hook = call(server, key, "POST", "/cds-services/order-sign", json=request)
    assert hook.status_code == 200, hook.text
    assert [(path.split("?")[0], auth) for path, auth in FhirStub.received] == [
        ("/fhir/r4/Observation", "Bearer access-token-e2e")
    ]
    cards = hook.json()["cards"]
    assert cards, "no calcium on file: the service must say so"

    card = cards[0]
    feedback = {"feedback": [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-25T15:02:00Z",
                              "overrideReason": {"reason": card["overrideReasons"][0]}}]}
    answer = call(server, key, "POST", "/cds-services/order-sign/feedback", json=feedback)
    assert answer.status_code == 200, answer.text


def test_without_a_jwt_every_cds_route_is_401(server):
    for method, path in [("GET", "/cds-services"), ("POST", "/cds-services/order-sign"), ("POST", "/cds-services/order-sign/feedback")]:
        response = requests.request(method, server.url + path, json={}, timeout=10)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.json()["resourceType"] == "OperationOutcome"


def _start_request(server: Server, head: str) -> socket.socket:
    """A connection that has sent only the start of a request: the worker process that accepts
    it waits for the rest and takes no other call meanwhile (one call at a time per worker)."""
    connection = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    connection.sendall(head.encode())
    return connection


def _finish_request(connection: socket.socket, rest: str) -> int:
    with connection:
        connection.sendall(rest.encode())
        answer = b""
        while b"\r\n" not in answer:
            chunk = connection.recv(4096)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def test_a_token_replayed_to_the_other_worker_process_is_refused(server, ehr):
    key = ehr[0]
    token = key.sign(claims_for(PUBLIC_BASE_URL + "/cds-services"))
    before = len(server.access_lines())
    # Worker A takes this connection and waits for the rest of its request: the replay.
    replay = _start_request(server, "GET /cds-services HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    time.sleep(0.5)  # accepted by a worker before the next connection is made
    assert call(server, key, "GET", "/cds-services", token).status_code == 200  # worker B: first use
    # Keep worker B busy too, so that nothing but worker A can answer the replay.
    holder = _start_request(server, "GET /openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    time.sleep(0.5)
    assert _finish_request(replay, f"Authorization: Bearer {token}\r\nConnection: close\r\n\r\n") == 401
    assert _finish_request(holder, "Connection: close\r\n\r\n") == 200
    first_use, replayed = [line for line in server.access_lines()[before:] if line["path"] == "/cds-services"]
    assert (first_use["status"], replayed["status"]) == (200, 401)
    assert first_use["pid"] != replayed["pid"], "the replay did not reach the other worker process"


def test_a_token_replayed_to_another_instance_sharing_the_store_is_refused(server, ehr):
    key, config, folder = ehr
    second = Server(config, workers=1, log=folder / "serve-second.log")
    try:
        token = key.sign(claims_for(PUBLIC_BASE_URL + "/cds-services"))
        assert call(server, key, "GET", "/cds-services", token).status_code == 200
        assert call(second, key, "GET", "/cds-services", token).status_code == 401
        fresh = key.sign(claims_for(PUBLIC_BASE_URL + "/cds-services"))
        assert call(second, key, "GET", "/cds-services", fresh).status_code == 200
        assert call(server, key, "GET", "/cds-services", fresh).status_code == 401
    finally:
        second.stop()


def test_hostile_bodies_never_take_a_worker_down(server, ehr):
    key = ehr[0]
    path = "/cds-services/order-sign"
    hostile = [
        b"[" * 500_000,
        b'{"hook": "order-sign", "hookInstance": "\xc3\x28"}',
        json.dumps({**baseline_request(), "context": "x" * 1_000_000}).encode(),
        b'{"a": NaN, "b": Infinity}',
        b"{" + b'"a":' * 100_000 + b"1" + b"}" * 100_000,
    ]
    for body in hostile:
        response = requests.post(
            server.url + path, data=body, timeout=15,
            headers={"Authorization": f"Bearer {key.sign(claims_for(PUBLIC_BASE_URL + path))}", "Content-Type": "application/json"},
        )
        assert response.status_code == 400, response.text[:200]
        assert response.json()["resourceType"] == "OperationOutcome"
    too_big = requests.post(server.url + path, data=b"x" * (6 * 1024 * 1024), timeout=15,
                            headers={"Authorization": f"Bearer {key.sign(claims_for(PUBLIC_BASE_URL + path))}",
                                     "Content-Type": "application/json"})
    assert too_big.status_code == 413
    assert call(server, key, "POST", path, json=baseline_request()).status_code == 200
    log = server.log_path.read_text()
    assert log.count("Booting worker") == 2, "a worker was restarted"
    assert '"level":"ERROR"' not in log


def test_the_log_names_the_ehr_on_each_call_and_both_audiences_on_a_rejection(server, ehr):
    key = ehr[0]
    before = len(server.log_lines())
    assert call(server, key, "GET", "/cds-services").status_code == 200
    other = "https://cds.hospital.example/other/cds-services"
    assert call(server, key, "GET", "/cds-services", key.sign(claims_for(other))).status_code == 401
    scrape = requests.get(server.url + "/metrics", timeout=10)  # no JWT: [metrics] require_jwt is off by default
    assert scrape.status_code == 200 and 'denosumab_cds_jwt_rejected_total{reason="audience"}' in scrape.text
    lines = server.log_lines()[before:]
    accepted, refused = [line for line in lines if line.get("logger") == "cds_service.access"]
    assert (accepted["status"], accepted["iss"]) == (200, EHR_ISS)
    assert refused["status"] == 401 and "iss" not in refused  # an unverified caller is not named as one
    (rejection,) = [line for line in lines if line.get("message") == "JWT rejected"]
    assert (rejection["aud"], rejection["expected_aud"]) == (other, PUBLIC_BASE_URL + "/cds-services")
    # Every line is JSON, gunicorn's start-up lines included.
    assert len(server.log_lines()) == len(server.log_path.read_text().splitlines())
