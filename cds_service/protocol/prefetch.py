"""Getting the data a service needs: what the EHR prefetched, the rest fetched from `fhirServer`.

Per CDS Hooks 2.0, for each prefetch key of the service:
- present: used (a Bundle with a `next` link is paged on from the FHIR server when possible);
- `null`: the EHR knows there is nothing; not fetched;
- an OperationOutcome: the EHR failed; fetched if possible, else that data is incomplete;
- absent: fetched from `fhirServer`, but only when the EHR also sent `fhirAuthorization` (CDS
  Hooks 2.0: fetch "only when both are given") and the server is one this service may read;
  otherwise 412 Precondition Failed, naming the keys that would let the call through.
What arrived is always kept; what did not is a *gap* of its data category, with its cause (the
record's `completeness`): rules run on what arrived, and a conclusion from an absence in an
incomplete category is replaced by the data-unavailable card (rules/engine.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote

from cds_service.errors import CdsError, Issue, bad_request, precondition_failed
from cds_service.protocol.bundles import bundle_entries, bundle_resources, holds_fewer_than_its_total, next_link
from cds_service.protocol.fhir_client import FhirClient, asks_newest_first, is_allowed_base, newest_first, resolve_url
from cds_service.protocol.request import HookRequest
from cds_service.record.model import DATA_CATEGORIES, Gap, SkippedResource

_TOKEN = re.compile(r"\{\{\s*([^}\s]+)\s*\}\}")


@dataclass
class ResolvedData:
    # (prefetch key, its raw resources): one group per key, no per-resource pair to allocate
    resource_groups: list[tuple[str, list]] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)  # what did not arrive, per key, with its cause
    newest_first_keys: set[str] = field(default_factory=set)  # keys whose query asked newest first
    skipped: list[SkippedResource] = field(default_factory=list)
    fhir_requests: int = 0
    fetched_keys: list[str] = field(default_factory=list)

    @property
    def unavailable(self) -> set[str]:
        return {gap.category for gap in self.gaps if gap.cause != "not-requested"}


def can_read_fhir_server(request: HookRequest, allowed_bases: tuple[str, ...]) -> bool:
    """True when the service may query the request's FHIR server: it sent fhirServer with
    fhirAuthorization (CDS Hooks 2.0), and the server is allow-listed."""
    return (
        request.fhir_server is not None and request.access_token is not None
        and is_allowed_base(request.fhir_server, allowed_bases)
    )


def request_resources(request: HookRequest) -> list[tuple[str | None, dict]]:
    """(fullUrl, resource) of every entry in the draft orders and the prefetch Bundles: where a
    referenced Medication or this patient's Patient (by its urn:uuid fullUrl) may be found."""
    values = [request.context.get("medications" if request.hook == "medication-prescribe" else "draftOrders"), *request.prefetch.values()]
    return [(full_url, raw) for value in values for full_url, raw in bundle_entries(value, of_types=("Medication", "Patient"))]


def read_medications(
    request: HookRequest, references: tuple[str, ...], *, client: FhirClient, allowed_bases: tuple[str, ...],
    timeout_seconds: float,
) -> tuple[list[tuple[str | None, dict]], list[SkippedResource], int]:
    """Read referenced Medications from the FHIR server (allow-listed, within the deadline):
    (fullUrl, Medication) found, problems, requests made. A reference that is not on that
    server (a urn:uuid, another server) is not read."""
    if not references or timeout_seconds <= 0 or not can_read_fhir_server(request, allowed_bases):
        return [], [], 0
    urls = {}
    for reference in references:
        url = reference if reference.startswith(("http://", "https://")) else resolve_url(request.fhir_server, reference)
        if reference.startswith("urn:") or not reference.split("/")[-2:-1] == ["Medication"]:
            continue
        if is_allowed_base(url, (request.fhir_server,)):
            urls[reference] = url
    results = client.fetch_all(urls, base=request.fhir_server, token=request.access_token, timeout_seconds=timeout_seconds)
    found, problems, made = [], [], 0
    for reference, result in results.items():
        made += result.requests_made
        medications = [r for r in result.resources if isinstance(r, dict) and r.get("resourceType") == "Medication"]
        if result.error is None and medications:
            found.append((reference, medications[0]))
        else:
            problems.append(SkippedResource("Medication", f"referenced Medication not read: {result.error or 'not a Medication'}"))
    return found, problems, made


def render_template(template: str, request: HookRequest) -> str:
    def value_of(token: str) -> str:
        if token.startswith("context."):
            value = request.context.get(token.removeprefix("context."))
        else:  # userPractitionerId etc.: the id part of context.userId when its type matches
            wanted = token.removeprefix("user").removesuffix("Id")
            kind, _, ident = (request.user_id or "").partition("/")
            value = ident if kind == wanted else None
        if not isinstance(value, str):
            raise bad_request(f"prefetch token {{{{{token}}}}} has no value in this request")
        return quote(value, safe="")

    return _TOKEN.sub(lambda m: value_of(m.group(1)), template)


def resolve_data(
    request: HookRequest,
    *,
    client: FhirClient,
    allowed_bases: tuple[str, ...],
    timeout_seconds: float,
) -> ResolvedData:
    data = ResolvedData()
    to_fetch: dict[str, str] = {}  # key -> URL
    causes: dict[str, str] = {}  # key -> the cause if it cannot be fetched
    categories = {t.key: t.category for t in request.service.prefetch}
    absent: list[str] = []
    prefetched: dict[str, list] = {}
    for template in request.service.prefetch:
        key = template.key
        if asks_newest_first(template.template):
            data.newest_first_keys.add(key)
        if key not in request.prefetch:
            absent.append(key)
            to_fetch[key] = template.template
            continue
        value = request.prefetch[key]
        if value is None:
            continue
        if isinstance(value, dict) and value.get("resourceType") == "OperationOutcome":
            to_fetch[key], causes[key] = template.template, "operation-outcome"
            continue
        resources, problems = bundle_resources(value)
        data.resource_groups.append((key, resources))
        prefetched[key] = resources
        data.skipped.extend(SkippedResource(key, p) for p in problems)
        more = next_link(value)
        if more:
            to_fetch[key], causes[key] = more, "no-server"  # page on from where the EHR stopped
        elif holds_fewer_than_its_total(value):
            data.gaps.append(Gap(categories[key], "cut-by-ehr", key))
    # Categories the service does not ask for on this hook are not complete-and-empty.
    asked = set(categories.values())
    data.gaps.extend(Gap(c, "not-requested") for c in DATA_CATEGORIES if c not in asked)

    if to_fetch:
        if request.fhir_server is None or request.access_token is None:
            if absent:
                raise precondition_failed(
                    "Prefetch data is missing and the request has no fhirServer with fhirAuthorization "
                    "to fetch it from; send these prefetch keys: "
                    + ", ".join(sorted(absent)),
                    expression=tuple(f"prefetch.{k}" for k in sorted(absent)),
                )
            data.gaps.extend(Gap(categories[k], causes[k], k) for k in to_fetch)
            return data
        if not is_allowed_base(request.fhir_server, allowed_bases):
            if absent:
                # CDS Hooks 2.0: a service that cannot obtain required data because it cannot
                # access the FHIR server SHALL answer 412; the server is never contacted.
                keys = sorted(absent)
                raise CdsError(412, (
                    Issue(
                        "fhirServer is not a FHIR server this service is allowed to read from (the service's "
                        "configuration lists the allowed servers), and prefetch data is missing",
                        code="security", expression=("fhirServer",),
                    ),
                    Issue("Send these prefetch keys to have the call answered: " + ", ".join(keys),
                          code="incomplete", expression=tuple(f"prefetch.{k}" for k in keys)),
                ))
            data.gaps.extend(
                Gap(categories[k], "server-not-allowed" if causes[k] == "no-server" else causes[k], k) for k in to_fetch
            )
            return data
        urls = {
            key: (target if target.startswith(("http://", "https://")) else
                  resolve_url(request.fhir_server, newest_first(render_template(target, request))))
            for key, target in to_fetch.items()
        }
        results = client.fetch_all(
            urls, base=request.fhir_server, token=request.access_token, timeout_seconds=timeout_seconds
        )
        for key, result in results.items():
            data.fhir_requests += result.requests_made
            data.fetched_keys.append(key)
            if causes.get(key) == "no-server":
                prefetched[key].extend(result.resources)  # the next pages, after the EHR's first
            else:
                data.resource_groups.append((key, result.resources))  # fetched instead of the prefetch
                if asks_newest_first(urls[key]):
                    data.newest_first_keys.add(key)
            if result.error is not None:
                data.gaps.append(Gap(categories[key], result.cause or "server-error", key))
                data.skipped.append(SkippedResource(key, f"not all fetched: {result.error}"))
    return data
