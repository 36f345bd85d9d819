"""Reads from the EHR's FHIR server: allow-listed bases only, pooled connections, no redirects,
queries in parallel under one deadline. A slow or failing server costs data, never the call."""

from __future__ import annotations

import logging
import re
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from urllib.parse import unquote, urljoin, urlsplit

import requests

from cds_service.config import DEFAULT_FHIR_MAX_RESPONSE_BYTES
from cds_service.ops.metrics import record_fhir_queries
from cds_service.protocol.bundles import bundle_resources, next_link
from cds_service.protocol.http_read import ReadBudget, bounded_session, read_json_response

logger = logging.getLogger(__name__)
FHIR_JSON = "application/fhir+json"
_AMBIGUOUS_URL_CHARS = re.compile(r"[\\\s\x00-\x1f\x7f]")


def _origin_and_path(url: str) -> tuple[str, str, int | None, str]:
    parts = urlsplit(url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    return parts.scheme.lower(), (parts.hostname or "").lower(), port, parts.path.rstrip("/")


def _is_unambiguous(url: str) -> bool:
    """False for URLs that URL parsers read differently (urlsplit here, urllib3 when sending):
    userinfo, backslashes, whitespace or control characters, and dot segments (raw or
    percent-encoded), which urllib3 or the server resolve to a path outside the base."""
    if _AMBIGUOUS_URL_CHARS.search(url) or "@" in urlsplit(url).netloc:
        return False
    return not any(segment in (".", "..") for segment in unquote(urlsplit(url).path).split("/"))


def is_allowed_base(url: str, allowed_bases: tuple[str, ...]) -> bool:
    """Scheme, host and port equal, and the path under the allowed base's path."""
    if not _is_unambiguous(url):
        return False
    try:
        scheme, host, port, path = _origin_and_path(url)
    except ValueError:  # e.g. a port out of range
        return False
    if not host or scheme not in ("https", "http"):
        return False
    for base in allowed_bases:
        b_scheme, b_host, b_port, b_path = _origin_and_path(base)
        if (scheme, host, port) == (b_scheme, b_host, b_port) and (path == b_path or path.startswith(b_path + "/")):
            return True
    return False


@dataclass
class FetchResult:
    resources: list = field(default_factory=list)
    error: str | None = None  # why the data is unavailable; None when it came
    requests_made: int = 0
    truncated: bool = False  # paging stopped at the page limit


CALL_BUDGET_RESPONSES = 1.5  # all the responses of one call together: this many times the per-response cap


class FhirClient:
    def __init__(self, *, max_pages: int = 10, max_workers: int = 8, max_response_bytes: int = DEFAULT_FHIR_MAX_RESPONSE_BYTES):
        self.max_pages = max_pages
        self.max_workers = max_workers
        self.max_response_bytes = max_response_bytes
        # Pooled connections are shared; threads are not: each call gets its own executor, so a
        # call stuck on a slow server cannot take fetch capacity from another (http_read bounds
        # every read by the call's deadline, so no thread outlives it by more than a moment).
        self.session = bounded_session(pool_maxsize=max_workers)

    def _get(self, url: str, token: str | None, base: str, deadline: float, budget: ReadBudget | None = None) -> dict:
        headers = {"Accept": FHIR_JSON}
        if token and is_allowed_base(url, (base,)):
            headers["Authorization"] = f"Bearer {token}"  # only to the server the token was issued for
        return read_json_response(
            self.session, url, headers=headers, deadline=deadline, max_bytes=self.max_response_bytes, budget=budget
        )

    def _fetch(self, url: str, token: str | None, base: str, deadline: float, budget: ReadBudget | None = None) -> FetchResult:
        result = FetchResult()
        try:
            if not is_allowed_base(url, (base,)):
                raise IOError("link leaves the FHIR server")  # e.g. a prefetch Bundle's next link elsewhere
            while url:
                result.requests_made += 1
                body = self._get(url, token, base, deadline, budget)
                if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
                    raise IOError("server answered with an OperationOutcome")
                resources, _problems = bundle_resources(body)
                result.resources.extend(resources)
                url = next_link(body)
                if url and not is_allowed_base(url, (base,)):
                    raise IOError("next link leaves the FHIR server")
                if url and result.requests_made >= self.max_pages:
                    result.truncated = True
                    break
        except (requests.RequestException, IOError, TimeoutError, ValueError) as exc:
            # Our own messages only: a requests error quotes the URL, which holds the patient id.
            safe = isinstance(exc, OSError) and not isinstance(exc, requests.RequestException) and str(exc)
            result.error = str(exc)[:120] if safe else type(exc).__name__
        return result

    def fetch_all(
        self, urls: dict[str, str], *, base: str, token: str | None, timeout_seconds: float
    ) -> dict[str, FetchResult]:
        """Run every query in parallel; whatever has not answered when the deadline passes is
        reported as unavailable (its thread finishes in the background, bounded by the timeout)."""
        deadline = time.monotonic() + timeout_seconds
        budget = ReadBudget(int(CALL_BUDGET_RESPONSES * self.max_response_bytes))
        executor = ThreadPoolExecutor(max_workers=max(1, min(len(urls), self.max_workers)), thread_name_prefix="fhir-fetch")
        futures: dict[Future, str] = {
            executor.submit(self._fetch, url, token, base, deadline, budget): key for key, url in urls.items()
        }
        executor.shutdown(wait=False)  # its threads end with their reads, by the deadline
        results: dict[str, FetchResult] = {}
        pending = set(futures)
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            done, pending = wait(pending, timeout=remaining, return_when=FIRST_COMPLETED)
            for future in done:
                results[futures[future]] = future.result()
        for future in pending:
            future.cancel()
            results[futures[future]] = FetchResult(error="no answer before the deadline", requests_made=1)
        record_fhir_queries(results.values())
        return results


def resolve_url(base: str, relative: str) -> str:
    return urljoin(base.rstrip("/") + "/", relative)
