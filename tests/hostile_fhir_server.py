"""A real HTTP server on 127.0.0.1 that misbehaves the way some FHIR servers (and JWKS endpoints)
do: bodies that drip a byte a second, headers that drip, gzip bombs, deep nesting, huge pages.
`responses` cannot stand in for it: it never touches a socket, so it cannot be slow on one.

Every behaviour is bounded (a dripping body stops after `max_drip_seconds`; the bomb is generated
as a stream and stops when the client hangs up), so a broken service under test cannot hang the
test run."""

from __future__ import annotations

import json
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

BOMB_COMPRESSED_STEP = 1024 * 1024  # bytes of spaces compressed per step (~1 KiB compressed each)


def gzip_bomb_chunks(expanded_bytes: int):
    """A gzip stream of `expanded_bytes` of JSON whitespace, generated step by step: ~1 MiB of
    compressed data per GiB, never held in memory whole."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    yield compressor.compress(b'{"resourceType":"Bundle","type":"searchset","entry":[')
    block = b" " * BOMB_COMPRESSED_STEP
    for _ in range(expanded_bytes // BOMB_COMPRESSED_STEP):
        data = compressor.compress(block)
        if data:
            yield data
    yield compressor.compress(b"]}") + compressor.flush()


class HostileFhirServer:
    """Modes are chosen per path prefix: /drip-body/, /drip-headers/, /bomb/, /deep/, /big-page/,
    /ok/ (a small valid empty searchset), /jwks/ (the `jwks` document, dripped while `drip_jwks` is true)."""

    def __init__(self, *, max_drip_seconds: float = 20.0, big_page_entries: int = 150_000):
        self.max_drip_seconds = max_drip_seconds
        self.big_page_entries = big_page_entries
        self.jwks: dict = {"keys": []}
        self.drip_jwks = False
        self.requests: list[str] = []
        self.bomb_bytes_sent = 0
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_exc):
        self.server.shutdown()
        self.server.server_close()

    def count(self, prefix: str) -> int:
        with self._lock:
            return sum(1 for path in self.requests if path.startswith(prefix))

    def _handler(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args):
                pass

            def do_GET(self):
                path = urlsplit(self.path).path
                with owner._lock:
                    owner.requests.append(path)
                try:
                    self._answer(path)
                except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                    pass  # the service hung up, as it should

            def _head(self, length: int | None = None, encoding: str | None = None):
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                if encoding:
                    self.send_header("Content-Encoding", encoding)
                if length is not None:
                    self.send_header("Content-Length", str(length))
                else:
                    self.send_header("Connection", "close")
                self.end_headers()

            def _drip(self, data: bytes):
                until = time.monotonic() + owner.max_drip_seconds
                for byte in data:
                    if time.monotonic() > until:
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(1.0)

            def _answer(self, path: str):
                empty = json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": []}).encode()
                if path.startswith("/drip-body/"):
                    self._head(len(empty))
                    self._drip(empty)
                elif path.startswith("/drip-headers/"):
                    self._drip(b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n" + b"X-Slow: 1\r\n" * 30)
                elif path.startswith("/bomb/"):
                    self._head(encoding="gzip")
                    for chunk in gzip_bomb_chunks(1024 ** 3):
                        self.wfile.write(chunk)
                        with owner._lock:
                            owner.bomb_bytes_sent += len(chunk)
                    self.close_connection = True
                elif path.startswith("/deep/"):
                    body = b"[" * 1100
                    self._head(len(body))
                    self.wfile.write(body)
                elif path.startswith("/big-page/"):
                    self._head()
                    self.wfile.write(b'{"resourceType":"Bundle","type":"searchset","entry":[')
                    entry = b'{"resource":{"resourceType":"Observation","id":"o","status":"final"}}'
                    step = 5000
                    for start in range(0, owner.big_page_entries, step):
                        count = min(step, owner.big_page_entries - start)
                        self.wfile.write((b"," if start else b"") + b",".join([entry] * count))
                    self.wfile.write(b"]}")
                    self.close_connection = True
                elif path.startswith("/jwks/"):
                    body = json.dumps(owner.jwks).encode()
                    self._head(len(body))
                    if owner.drip_jwks:
                        self._drip(body)
                    else:
                        self.wfile.write(body)
                else:  # /ok/ and anything else: a valid empty searchset
                    self._head(len(empty))
                    self.wfile.write(empty)

        return Handler
