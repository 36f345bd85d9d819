"""Reads from the EHR's FHIR server: allow-listed bases only, pooled connections, no redirects,
queries in parallel under one deadline. A slow or failing server costs data, never the call.

Searches ask newest first (`_sort` by the resource's date, `_count` per page), so that the page
limit costs old history, not the newest results; whatever did not arrive is reported with its
cause (timed out, server error, page limit, a next link leaving the server), and the pages that
did arrive are kept."""

from __future__ import annotations

import logging
import re
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlencode, urljoin, urlsplit, urlunsplit

import requests

from cds_service.config import DEFAULT_FHIR_MAX_RESPONSE_BYTES
from cds_service.ops.metrics import record_fhir_queries
from cds_service.protocol.bundles import bundle_resources, next_link
from cds_service.protocol.http_read import DeadlinePassed, ReadBudget, bounded_session, read_json_response

logger = logging.getLogger(__name__)
FHIR_JSON = "application/fhir+json"
_AMBIGUOUS_URL_CHARS = re.compile(r"[\\\s\x00-\x1f\x7f]")
# The date search parameter each searched resource type is sorted by, newest first (FHIR R4).
SORT_PARAMETER = {
    "Observation": "date",
    "MedicationRequest": "authoredon",
    "MedicationAdministration": "effective-time",
    "MedicationDispense": "whenhandedover",
    "MedicationStatement": "effective",
    "Condition": "recorded-date",
    "Procedure": "date",
}
# Entries per page: with the default page limit (10) the newest 1,000 of a kind are read, more
# than five years of any history the rules look at.
PAGE_SIZE = 100


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


def newest_first(url: str) -> str:
    """`url` (a search) asking for the newest entries first and a page size, unless it already
    says how; unchanged for reads and for types without a date to sort by."""
    parts = urlsplit(url)
    resource_type = parts.path.rstrip("/").rsplit("/", 1)[-1]
    if resource_type not in SORT_PARAMETER:
        return url
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = {name for name, _ in query}
    if "_sort" not in names:
        query.append(("_sort", "-" + SORT_PARAMETER[resource_type]))
    if "_count" not in names:
        query.append(("_count", str(PAGE_SIZE)))
    return urlunsplit(parts._replace(query=urlencode(query, safe=",|:/")))


def asks_newest_first(url: str) -> bool:
    """True when a search URL asks `_sort` by its resource's date, newest first."""
    parts = urlsplit(url)
    resource_type = parts.path.rstrip("/").rsplit("/", 1)[-1]
    wanted = "-" + SORT_PARAMETER.get(resource_type, "\0")
    return any(name == "_sort" and value.split(",")[0] == wanted for name, value in parse_qsl(parts.query))


@dataclass
class FetchResult:
    resources: list = field(default_factory=list)  # everything that arrived, also when the rest did not
    error: str | None = None  # why not everything arrived, in words; None when it all came
    cause: str | None = None  # the same as a gap cause (cds_service.record.model.GAP_CAUSES)
    requests_made: int = 0
    truncated: bool = False  # paging stopped at the page limit

    def fail(self, cause: str, error: str) -> None:
        self.cause, self.error = cause, error


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

    def _fetch(self, url: str, token: str | None, base: str, deadline: float, budget: ReadBudget | None = None,
               result: FetchResult | None = None) -> FetchResult:
        """Page through one search into `result` (shared with `fetch_all`, which keeps what arrived
        when the deadline passes); pages that arrived are kept whatever happens to the next."""
        result = result if result is not None else FetchResult()
        try:
            if not is_allowed_base(url, (base,)):
                result.fail("link-not-followed", "link leaves the FHIR server")  # e.g. a prefetch Bundle's next link elsewhere
                return result
            while url:
                result.requests_made += 1
                body = self._get(url, token, base, deadline, budget)
                if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
                    result.fail("server-error", "server answered with an OperationOutcome")
                    return result
                resources, _problems = bundle_resources(body)
                result.resources.extend(resources)
                url = next_link(body)
                if url and not is_allowed_base(url, (base,)):
                    result.fail("link-not-followed", "next link leaves the FHIR server")
                    return result
                if url and result.requests_made >= self.max_pages:
                    result.truncated = True
                    result.fail("page-limit", f"stopped at the page limit ({self.max_pages} pages)")
                    return result
        except (requests.Timeout, TimeoutError, DeadlinePassed):
            result.fail("timed-out", "no answer before the deadline")
        except (requests.RequestException, IOError, ValueError) as exc:
            # Our own messages only: a requests error quotes the URL, which holds the patient id.
            safe = isinstance(exc, OSError) and not isinstance(exc, requests.RequestException) and str(exc)
            result.fail("server-error", str(exc)[:120] if safe else type(exc).__name__)
        return result

    def fetch_all(
        self, urls: dict[str, str], *, base: str, token: str | None, timeout_seconds: float
    ) -> dict[str, FetchResult]:
        """Run every query in parallel; whatever has not answered when the deadline passes is
        reported as timed out, with the pages that had arrived (its thread finishes in the
        background, bounded by the timeout)."""
        deadline = time.monotonic() + timeout_seconds
        budget = ReadBudget(int(CALL_BUDGET_RESPONSES * self.max_response_bytes))
        executor = ThreadPoolExecutor(max_workers=max(1, min(len(urls), self.max_workers)), thread_name_prefix="fhir-fetch")
        partial = {key: FetchResult() for key in urls}
        futures: dict[Future, str] = {
            executor.submit(self._fetch, url, token, base, deadline, budget, partial[key]): key for key, url in urls.items()
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
            arrived = partial[futures[future]]
            results[futures[future]] = FetchResult(
                resources=list(arrived.resources), error="no answer before the deadline", cause="timed-out",
                requests_made=max(arrived.requests_made, 1),
            )
        record_fhir_queries(results.values())
        return results


def resolve_url(base: str, relative: str) -> str:
    return urljoin(base.rstrip("/") + "/", relative)
