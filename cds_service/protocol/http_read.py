"""Reading ONE JSON response from a server the service does not control (a FHIR server, an EHR's
JWKS endpoint), with bounds a hostile or broken server cannot stretch:

- time: one deadline for the whole exchange (connect, TLS, headers, body). A per-read timeout is
  not enough (a server sending 1 byte a second never trips it), so a watchdog shuts the socket
  down at the deadline, which ends any read blocked on it;
- size: the body is decompressed here, in small steps, and reading stops past `max_bytes` of
  decompressed data (a 1 MiB gzip body can expand to 1 GiB); an optional `ReadBudget` caps the
  bytes of all the responses of one call together;
- shape: JSON nested deeper than json's recursion guard, and invalid JSON, are refused.

Any failure is a `ResponseUnreadable`, whose message is safe to log and to show (it never quotes
the URL, which may hold a patient id)."""

from __future__ import annotations

import socket
import threading
import time
import zlib
from collections.abc import Iterable, Iterator

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from cds_service.json_parse import InvalidJson
from cds_service.json_parse import parse_json as parse_any_json

READ_CHUNK_BYTES = 16 * 1024  # compressed bytes per read: at most ~16 MiB once decompressed
DECOMPRESS_STEP_BYTES = 1024 * 1024
ACCEPT_ENCODING = "gzip, deflate"
_DECOMPRESSED_ENCODINGS = {"gzip", "x-gzip", "deflate"}


class ResponseUnreadable(IOError):
    """The response cannot be used (too large, too slow, too deep, not JSON, wrong status)."""


class DeadlinePassed(ResponseUnreadable):
    """No (complete) answer before the deadline: the query timed out."""


class ReadBudget:
    """Decompressed bytes that the responses of one call may hold together, counted while they
    are read (thread-safe). When the budget runs out, the largest response being read is the one
    refused (its bytes come back to the others), so one huge answer does not cost the small ones."""

    def __init__(self, max_bytes: int):
        self.remaining = max_bytes
        self._reading: dict[int, int] = {}  # share id -> bytes it holds
        self._changed = threading.Condition()

    def share(self, deadline: float) -> "_BudgetShare":
        return _BudgetShare(self, deadline)

    def _take(self, share: "_BudgetShare", size: int) -> None:
        with self._changed:
            while size > self.remaining:
                held = self._reading.get(id(share), 0)
                largest = max(self._reading.values(), default=0)
                timeout = share.deadline - time.monotonic()
                if held >= largest or timeout <= 0 or not self._changed.wait(timeout):
                    raise ResponseUnreadable("the call's responses together are larger than allowed")
            self.remaining -= size
            self._reading[id(share)] = self._reading.get(id(share), 0) + size

    def _finish(self, share: "_BudgetShare", kept: bool) -> None:
        with self._changed:
            held = self._reading.pop(id(share), 0)
            if not kept:
                self.remaining += held
            self._changed.notify_all()


class _BudgetShare:
    """One response's part of a `ReadBudget`."""

    def __init__(self, budget: ReadBudget, deadline: float):
        self.budget = budget
        self.deadline = deadline

    def take(self, size: int) -> None:
        self.budget._take(self, size)

    def finish(self, *, kept: bool) -> None:
        self.budget._finish(self, kept)


class _Watchdog:
    """Shuts the watched sockets down at the deadline (ending any blocked read), unless disarmed."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.fired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(deadline - time.monotonic(), 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        try:
            # A second descriptor of the same connection: shutting it down ends reads on the
            # original (plain or TLS) socket, and it can be closed without closing that one.
            duplicate = socket.fromfd(sock.fileno(), sock.family, sock.type)
        except OSError:
            return
        with self._lock:
            if not self.fired:
                self._sockets.append(duplicate)
                return
        self._shutdown(duplicate)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def disarm(self) -> None:
        self._timer.cancel()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()


_current = threading.local()  # the watchdog of the response this thread is reading, if any


class _WatchedConnectionMixin:
    def _new_conn(self):
        sock = super()._new_conn()
        watchdog = getattr(_current, "watchdog", None)
        if watchdog is not None:
            watchdog.watch(sock)  # from before the TLS handshake on
        return sock

    def getresponse(self, *args, **kwargs):
        watchdog = getattr(_current, "watchdog", None)
        if watchdog is not None and getattr(self, "sock", None) is not None:
            watchdog.watch(self.sock)  # a pooled connection, reused
        return super().getresponse(*args, **kwargs)


class _WatchedHTTPConnection(_WatchedConnectionMixin, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedConnectionMixin, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class DeadlineAdapter(HTTPAdapter):
    """requests adapter whose connections honour the deadline of `read_json_response`."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


def bounded_session(*, pool_maxsize: int = 8) -> requests.Session:
    """A session for untrusted servers: deadline-aware connections, no retries, nothing taken
    from the host's environment (proxies, .netrc credentials)."""
    session = requests.Session()
    adapter = DeadlineAdapter(pool_connections=4, pool_maxsize=pool_maxsize, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.trust_env = False
    return session


class BodyTooLarge(ResponseUnreadable):
    """More decompressed bytes than allowed."""


def inflated(
    chunks: Iterable[bytes], content_encoding: str | None, max_bytes: int, budget: _BudgetShare | None = None
) -> Iterator[bytes]:
    """The decompressed bytes of `chunks` (gzip, deflate or none), in steps of at most 1 MiB,
    stopping with `BodyTooLarge` past `max_bytes`; other encodings are `ResponseUnreadable`."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding not in _DECOMPRESSED_ENCODINGS | {"identity", ""}:
        raise ResponseUnreadable(f"Content-Encoding {encoding[:20]!r} is not supported")
    decompressor = zlib.decompressobj(32 + zlib.MAX_WBITS) if encoding in _DECOMPRESSED_ENCODINGS else None
    total = 0

    def counted(data: bytes) -> bytes:
        nonlocal total
        total += len(data)
        if total > max_bytes:
            raise BodyTooLarge(f"response larger than {max_bytes} bytes")
        if budget is not None:
            budget.take(len(data))
        return data

    for chunk in chunks:
        if decompressor is None:
            yield counted(chunk)
            continue
        while chunk:
            try:
                data = decompressor.decompress(chunk, DECOMPRESS_STEP_BYTES)
            except zlib.error:
                raise ResponseUnreadable("response is not valid compressed data") from None
            yield counted(data)
            chunk = decompressor.unconsumed_tail
            if decompressor.eof and decompressor.unused_data:  # a gzip file of several members
                chunk = decompressor.unused_data
                decompressor = zlib.decompressobj(32 + zlib.MAX_WBITS)
    if decompressor is not None and not decompressor.eof:
        raise ResponseUnreadable("compressed data is truncated")


def parse_json(body: bytes | bytearray):
    """The document, read by the service's one parser (cds_service/json_parse.py: strict JSON,
    nesting bounded by the recursion limit), or `ResponseUnreadable` saying why not."""
    try:
        return parse_any_json(body)
    except InvalidJson as exc:
        raise ResponseUnreadable(f"response is not JSON: {exc}"[:200]) from None


def read_json_response(
    session: requests.Session,
    url: str,
    *,
    headers: dict[str, str],
    deadline: float,
    max_bytes: int,
    budget: ReadBudget | None = None,
    connect_timeout: float = 2.0,
):
    """GET `url` and parse its JSON body, all before `deadline` (time.monotonic()); redirects are
    not followed and any status but 200 is refused."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise DeadlinePassed("no answer before the deadline")
    watchdog = _Watchdog(deadline)
    _current.watchdog = watchdog
    share = budget.share(deadline) if budget is not None else None
    body = bytearray()
    kept = False
    try:
        with session.get(
            url,
            headers={**headers, "Accept-Encoding": ACCEPT_ENCODING},
            timeout=(min(remaining, connect_timeout), remaining),
            allow_redirects=False,
            stream=True,
        ) as response:
            if response.status_code != 200:
                raise ResponseUnreadable(f"HTTP {response.status_code}")
            chunks = response.raw.stream(READ_CHUNK_BYTES, decode_content=False)
            for data in inflated(chunks, response.headers.get("Content-Encoding"), max_bytes, share):
                body += data
                if time.monotonic() > deadline:
                    raise DeadlinePassed("no complete answer before the deadline")
        document = parse_json(body)
        kept = True
        return document
    except ResponseUnreadable:
        raise
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as error:
        if watchdog.fired or time.monotonic() >= deadline or isinstance(error, requests.Timeout):
            raise DeadlinePassed("no complete answer before the deadline") from None
        raise ResponseUnreadable(f"connection failed ({type(error).__name__})") from None
    finally:
        _current.watchdog = None
        watchdog.disarm()
        if share is not None:
            share.finish(kept=kept)
