"""A small FHIR R4 server on loopback that answers the service's prefetch queries (benchmark only).

It serves one patient's resources (bench/patient.py) for the searches in hooks/*.json:
`Patient/<id>` and `<Type>?patient=<id>[&category=...][&code=system|code,...]`, in pages of
`page_size` entries with a `next` link (`_count` and `_offset` as query parameters). Every
answer waits `latency_seconds` first, like an EHR's FHIR server across a network; the one
resource type named in `hang` waits `hang_seconds` instead (a query that never answers in time).

    python3 -m bench.fhir_server --port 8181 --latency-ms 100 --hang Procedure
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from bench.patient import HeavyPatient, heavy_patient, searchset

FHIR_JSON = "application/fhir+json"


def _token_matches(concept, wanted: set[tuple[str | None, str]]) -> bool:
    """FHIR token search on a CodeableConcept: `system|code` or a bare `code`."""
    for coding in (concept or {}).get("coding", []):
        if (coding.get("system"), coding.get("code")) in wanted or (None, coding.get("code")) in wanted:
            return True
    return False


def _tokens(values: list[str]) -> set[tuple[str | None, str]]:
    wanted = set()
    for value in values:
        for token in value.split(","):
            system, bar, code = token.rpartition("|")
            wanted.add((system if bar else None, code))
    return wanted


class PatientStore:
    """The resources the server answers from, by resource type."""

    def __init__(self, heavy: HeavyPatient):
        self.patient = heavy.patient
        self.by_type: dict[str, list[dict]] = {}
        for key, resources in heavy.by_key.items():
            for resource in resources:
                if key != "patient":
                    self.by_type.setdefault(resource["resourceType"], []).append(resource)

    def search(self, resource_type: str, params: dict[str, list[str]]) -> list[dict] | None:
        """Matching resources, or None for a search this server does not support."""
        patient = (params.get("patient") or params.get("subject") or [None])[0]
        if patient is None:
            return None
        patient = patient.removeprefix("Patient/")
        if patient != self.patient["id"]:
            return []
        found = self.by_type.get(resource_type, [])
        if "category" in params:
            wanted = _tokens(params["category"])
            found = [r for r in found if any(_token_matches(c, wanted) for c in r.get("category", []))]
        if "code" in params:
            wanted = _tokens(params["code"])
            found = [r for r in found if _token_matches(r.get("code"), wanted)]
        return found


class FhirServer:
    """The server, its options and its counters; `start()` runs it on a daemon thread."""

    def __init__(
        self, heavy: HeavyPatient, *, host: str = "127.0.0.1", port: int = 0, latency_seconds: float = 0.1,
        page_size: int = 50, hang: str | None = None, hang_seconds: float = 10.0,
    ):
        self.store = PatientStore(heavy)
        self.latency_seconds = latency_seconds
        self.page_size = page_size
        self.hang = hang
        self.hang_seconds = hang_seconds
        self.requests_served = 0
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self.httpd.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/fhir"

    def start(self) -> "FhirServer":
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="bench-fhir", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()  # releases hanging handlers at once
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def answer(self, path: str, query: str) -> tuple[int, dict]:
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] != "fhir" or len(parts) not in (2, 3):
            return 404, _outcome("not-found", f"no such endpoint {path}")
        resource_type = parts[1]
        if len(parts) == 3:
            if resource_type == "Patient" and parts[2] == self.store.patient["id"]:
                return 200, self.store.patient
            return 404, _outcome("not-found", f"{resource_type}/{parts[2]} is not known")
        params = parse_qs(query, keep_blank_values=False)
        found = self.store.search(resource_type, params)
        if found is None:
            return 400, _outcome("not-supported", "searches need a patient parameter")
        count = int((params.get("_count") or [self.page_size])[0])
        offset = int((params.get("_offset") or [0])[0])
        page = found[offset: offset + count]
        next_url = None
        if offset + count < len(found):
            following = {k: v[0] if len(v) == 1 else v for k, v in params.items()} | {"_count": count, "_offset": offset + count}
            next_url = f"{self.base_url}/{resource_type}?{urlencode(following, doseq=True)}"
        return 200, searchset(page, base=self.base_url, next_url=next_url, total=len(found))

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm and the
            # client's delayed ACK add ~40 ms to every answer on a kept-alive connection.
            disable_nagle_algorithm = True

            def do_GET(self):  # noqa: N802 (http.server's naming)
                started = time.monotonic()
                url = urlsplit(self.path)
                resource_type = next((p for p in url.path.split("/")[2:3]), "")
                wait = server.hang_seconds if server.hang and resource_type == server.hang else server.latency_seconds
                status, body = server.answer(url.path, url.query)
                payload = json.dumps(body, separators=(",", ":")).encode()
                remaining = wait - (time.monotonic() - started)
                if remaining > 0:
                    server.stopping.wait(remaining)
                with server._lock:
                    server.requests_served += 1
                self.send_response(status)
                self.send_header("Content-Type", FHIR_JSON)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its deadline passed): expected for the hanging query

            def log_message(self, *args):  # quiet: the benchmark prints its own summary
                pass

        return Handler


def _outcome(code: str, text: str) -> dict:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8181)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--page-size", type=int, default=50)
    parser.add_argument("--observations", type=int, default=400)
    parser.add_argument("--hang", help="resource type whose searches hang (e.g. Procedure)")
    parser.add_argument("--hang-seconds", type=float, default=10.0)
    parser.add_argument("--serve-seconds", type=float, default=600.0, help="stop by itself after this long")
    args = parser.parse_args(argv)
    server = FhirServer(
        heavy_patient(observations=args.observations), port=args.port, latency_seconds=args.latency_ms / 1000,
        page_size=args.page_size, hang=args.hang, hang_seconds=args.hang_seconds,
    ).start()
    print(f"FHIR server on {server.base_url} for {args.serve_seconds:.0f} s", flush=True)
    try:
        time.sleep(args.serve_seconds)
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
