"""deploy/nginx.conf in front of `denosumab-cds serve` (issue 16, case 5): Debian's nginx started
with that file (only its SITE lines and paths changed for a test on 127.0.0.1), and 50 slow
clients dripping headers and bodies at 1 byte/s do not stop a normal signed call from being
answered in under 2 s. Without the proxy, two such clients stopped the service's sync workers.

Needs the nginx binary (.ci/run installs Debian's package); skipped, saying so, without it."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import ROOT
from tests.requests_for_tests import baseline_request
from tests.security.ehr import EHR_ISS, EhrKey, claims_for, write_jwks
from tests.security.test_serve_with_jwt import CONFIG, Server, free_port

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx; .ci/run installs it)"),
]

PUBLIC_BASE_URL = "https://cds.hospital.example"
SLOW_CLIENTS = 50
DRIP_SECONDS = 8.0  # how long each slow client keeps dripping: longer than the calls measured below
ANSWER_WITHIN_SECONDS = 2.0


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def site_config(folder: Path, *, listen_port: int, upstream_port: int, cert: Path, key: Path) -> str:
    """deploy/nginx.conf with this test's SITE values, and its paths under `folder`."""
    text = (ROOT / "deploy" / "nginx.conf").read_text(encoding="utf-8")
    replacements = {
        "server 127.0.0.1:8080;": f"server 127.0.0.1:{upstream_port};",
        "listen 443 ssl;": f"listen 127.0.0.1:{listen_port} ssl;",
        "/etc/ssl/certs/denosumab-cds.pem": str(cert),
        "/etc/ssl/private/denosumab-cds.key": str(key),
        "/var/lib/nginx/": f"{folder}/",
        "/var/log/nginx/": f"{folder}/",
        "user www-data;": "user root;" if os.geteuid() == 0 else "",
    }
    for old, new in replacements.items():
        assert old in text, f"deploy/nginx.conf no longer has {old!r}"
        text = text.replace(old, new)
    return text


class Nginx:
    """Debian's nginx on 127.0.0.1 with deploy/nginx.conf, in front of `upstream_port`."""

    def __init__(self, folder: Path, upstream_port: int):
        self.cert, key = _self_signed(folder)
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (folder / name).mkdir()
        conf = folder / "nginx.conf"
        conf.write_text(site_config(folder, listen_port=self.port, upstream_port=upstream_port, cert=self.cert, key=key))
        self.error_log = folder / "error.log"
        self.process = subprocess.Popen(
            [NGINX, "-p", str(folder), "-c", str(conf), "-e", str(self.error_log),
             "-g", f"daemon off; pid {folder / 'nginx.pid'};"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        until = time.monotonic() + 20
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"nginx stopped: {self.error_log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > until:
                    self.stop()
                    raise AssertionError("nginx did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nginx")
    ehr_key = EhrKey("ES384")
    write_jwks(folder / "ehr-jwks.json", ehr_key)
    config = folder / "denosumab-cds.toml"
    config.write_text(CONFIG.format(public_base_url=PUBLIC_BASE_URL, iss=EHR_ISS, fhir_base="https://ehr.example.org/fhir/r4",
                                    store=folder / "store.sqlite3"))
    service = Server(config, workers=2, log=folder / "serve.log")
    try:
        nginx = Nginx(folder, service.port)
    except BaseException:
        service.stop()
        raise
    yield {"url": nginx.url, "port": nginx.port, "cert": str(nginx.cert), "key": ehr_key, "service": service}
    nginx.stop()
    service.stop()


def signed_call(deployment, path: str, headers: dict | None = None, **kwargs) -> requests.Response:
    token = deployment["key"].sign(claims_for(PUBLIC_BASE_URL + path))
    return requests.post(deployment["url"] + path, headers={"Authorization": f"Bearer {token}", **(headers or {})},
                         verify=deployment["cert"], timeout=10, **kwargs)


def _slow_client(port: int, index: int, stop: threading.Event) -> None:
    """Opens a TLS connection and drips a request at 1 byte/s: half drip their headers, half
    send headers promising a body and drip that. Ends when `stop` is set or after DRIP_SECONDS."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, context.wrap_socket(raw) as sock:
            if index % 2:
                sock.sendall(b"POST /cds-services/order-sign HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
                drip = b"{" * 100
            else:
                drip = b"POST /cds-services/order-sign HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100
            until = time.monotonic() + DRIP_SECONDS
            for byte in drip:
                if stop.is_set() or time.monotonic() > until:
                    return
                sock.sendall(bytes([byte]))
                stop.wait(1.0)
    except OSError:
        pass  # nginx cut it off: that is its job


def test_fifty_slow_clients_do_not_stop_a_signed_call(deployment):
    stop = threading.Event()
    clients = [threading.Thread(target=_slow_client, args=(deployment["port"], i, stop), daemon=True) for i in range(SLOW_CLIENTS)]
    for client in clients:
        client.start()
    try:
        time.sleep(1.5)  # every slow client is connected and dripping
        for _ in range(5):
            started = time.monotonic()
            response = signed_call(deployment, "/cds-services/order-sign", json=baseline_request())
            elapsed = time.monotonic() - started
            assert response.status_code == 200, response.text
            assert "cards" in response.json()
            assert elapsed < ANSWER_WITHIN_SECONDS
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=10)


def test_a_body_over_the_service_limit_is_refused_by_nginx_as_an_operation_outcome(deployment):
    response = signed_call(deployment, "/cds-services/order-sign", data=b"x" * (5 * 1024 * 1024 + 1),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["issue"][0]["code"] == "too-costly"


class _EchoHeaders(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 - http.server's naming
        body = json.dumps({name.lower(): value for name, value in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args):
        pass


def test_forwarded_headers_a_client_sends_are_replaced_by_what_nginx_saw(tmp_path):
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHeaders)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        nginx = Nginx(tmp_path, upstream.server_address[1])
        try:
            seen = requests.get(nginx.url + "/anything", verify=str(nginx.cert), timeout=10, headers={
                "X-Forwarded-For": "10.9.9.9", "X-Forwarded-Proto": "gopher", "Forwarded": "for=10.9.9.9",
                "X-Real-IP": "10.9.9.9",
            }).json()
        finally:
            nginx.stop()
    finally:
        upstream.shutdown()
        upstream.server_close()
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-real-ip"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "https"
    assert "forwarded" not in seen
    assert seen.get("connection", "").lower() != "close"  # kept alive to the upstream
