"""Resources out of a Bundle (or a bare list, as older clients send draft orders)."""

from __future__ import annotations

from cds_service.json_parse import ResourceOutline
from cds_service.protocol.hook_body import EntrySearch


def bundle_resources(value) -> tuple[list, list[str]]:
    """(resources, problems): every `entry.resource` of a Bundle, or the items of a list.

    A Bundle without `type` is accepted (the CDS Hooks sandbox sends one); entries without a
    resource are reported, not fatal. Search-result entries with `search.mode = outcome` (an
    OperationOutcome the server added) are left out.
    """
    if isinstance(value, list):
        return [item for item in value if isinstance(item, dict)], [
            f"item {i} is not a resource" for i, item in enumerate(value) if not isinstance(item, dict)
        ]
    if not isinstance(value, dict):
        return [], ["not a Bundle"]
    if value.get("resourceType") != "Bundle":
        return [value], []
    entries = value.get("entry", [])
    if not isinstance(entries, list):
        return [], ["Bundle.entry is not an array"]
    resources, problems = [], []
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, _RESOURCE_KINDS):
            problems.append(f"Bundle.entry[{index}] has no resource")
            continue
        if search_mode(entry) == "outcome":
            continue
        resources.append(resource)
    return resources, problems


_RESOURCE_KINDS = (dict, ResourceOutline)  # a resource read whole, or in outline (cds_service/json_parse.py)


def search_mode(entry: dict):
    """The entry's `search.mode`, read whole or in outline; None when it has none."""
    search = entry.get("search")
    if type(search) is EntrySearch:
        return search.mode
    return search.get("mode") if isinstance(search, dict) else None


def next_link(bundle) -> str | None:
    if not isinstance(bundle, dict) or not isinstance(bundle.get("link"), list):
        return None
    for link in bundle["link"]:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None


def bundle_entries(value, *, of_types: tuple[str, ...]) -> list[tuple[str | None, dict]]:
    """(fullUrl, resource) of every entry of a Bundle (fullUrl None when absent), or of the items
    of a list, whose resource is of one of `of_types`; nothing for anything else."""
    if isinstance(value, list):
        return [(None, item) for item in value if isinstance(item, dict) and item.get("resourceType") in of_types]
    if not isinstance(value, dict) or value.get("resourceType") != "Bundle" or not isinstance(value.get("entry"), list):
        return []
    found = []
    for entry in value["entry"]:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") in of_types:
            found.append((entry["fullUrl"] if isinstance(entry.get("fullUrl"), str) else None, resource))
    return found


def holds_fewer_than_its_total(bundle) -> bool:
    """True when a searchset Bundle says it matched more entries (`total`) than it carries and
    gives no next link to the rest: an EHR that capped its prefetch."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle" or next_link(bundle):
        return False
    total = bundle.get("total")
    if not isinstance(total, int) or isinstance(total, bool):
        return False
    entries = bundle.get("entry") if isinstance(bundle.get("entry"), list) else []
    # Counted one by one: `total` counts matches only, and included resources (a Medication
    # beside its orders) or an OperationOutcome can make up the difference.
    matches = sum(1 for e in entries if isinstance(e, dict) and search_mode(e) not in ("include", "outcome"))
    return total > matches
