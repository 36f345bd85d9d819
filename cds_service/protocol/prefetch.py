"""Getting the data a service needs: what the EHR prefetched, the rest fetched from `fhirServer`.

Per CDS Hooks 2.0, for each prefetch key of the service:
- present: used (a Bundle with a `next` link is paged on from the FHIR server when possible);
- `null`: the EHR knows there is nothing; not fetched;
- an OperationOutcome: the EHR failed; fetched if possible, else that data is unavailable;
- absent: fetched from `fhirServer`, but only when the EHR also sent `fhirAuthorization` (CDS
  Hooks 2.0: fetch "only when both are given"); otherwise 412 Precondition Failed.
Data that cannot be had in time is *unavailable*: the rules that need it are skipped and the
response says so, rather than reading "not retrieved" as "normal"."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote

from cds_service.errors import bad_request, precondition_failed
from cds_service.protocol.bundles import bundle_resources, next_link
from cds_service.protocol.fhir_client import FhirClient, is_allowed_base, resolve_url
from cds_service.protocol.request import HookRequest
from cds_service.record.model import SkippedResource

_TOKEN = re.compile(r"\{\{\s*([^}\s]+)\s*\}\}")


@dataclass
class ResolvedData:
    # (prefetch key, its raw resources): one group per key, no per-resource pair to allocate
    resource_groups: list[tuple[str, list]] = field(default_factory=list)
    unavailable: set[str] = field(default_factory=set)
    skipped: list[SkippedResource] = field(default_factory=list)
    fhir_requests: int = 0
    fetched_keys: list[str] = field(default_factory=list)


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
    categories = {t.key: t.category for t in request.service.prefetch}
    absent: list[str] = []
    for template in request.service.prefetch:
        key = template.key
        if key not in request.prefetch:
            absent.append(key)
            to_fetch[key] = template.template
            continue
        value = request.prefetch[key]
        if value is None:
            continue
        if isinstance(value, dict) and value.get("resourceType") == "OperationOutcome":
            to_fetch[key] = template.template
            continue
        resources, problems = bundle_resources(value)
        data.resource_groups.append((key, resources))
        data.skipped.extend(SkippedResource(key, p) for p in problems)
        more = next_link(value)
        if more:
            to_fetch[key] = more  # page on from where the EHR stopped

    if to_fetch:
        if request.fhir_server is None or request.access_token is None:
            if absent:
                raise precondition_failed(
                    "Prefetch data is missing and the request has no fhirServer with fhirAuthorization "
                    "to fetch it from: "
                    + ", ".join(sorted(absent)),
                    expression=tuple(f"prefetch.{k}" for k in sorted(absent)),
                )
            data.unavailable |= {categories[k] for k in to_fetch}
            return data
        if not is_allowed_base(request.fhir_server, allowed_bases):
            raise bad_request(
                "fhirServer is not a FHIR server this service is allowed to read from; "
                "the service's configuration lists the allowed servers",
                expression="fhirServer",
                code="security",
            )
        urls = {
            key: (target if target.startswith(("http://", "https://")) else
                  resolve_url(request.fhir_server, render_template(target, request)))
            for key, target in to_fetch.items()
        }
        results = client.fetch_all(
            urls, base=request.fhir_server, token=request.access_token, timeout_seconds=timeout_seconds
        )
        for key, result in results.items():
            data.fhir_requests += result.requests_made
            data.fetched_keys.append(key)
            if result.error is not None:
                data.unavailable.add(categories[key])
                data.skipped.append(SkippedResource(key, f"not fetched: {result.error}"))
            else:
                data.resource_groups.append((key, result.resources))
    return data
