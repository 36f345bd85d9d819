"""A hook request body, read in outline in one pass per service.

A prefetch Bundle whose every entry is of the outlined kind (a history of Observations: most of a
large request) holds each resource as a `ResourceOutline` of the elements the record reads
(cds_service/record/outline.py). Those read of every resource are decoded; those read only when a
rule reads that resource stay JSON text (`Deferred`) until then; the rest is skipped over,
checked as JSON syntax but not decoded (an element nothing reads cannot cost a resource). Any
other prefetch value, and a Bundle that does not fit the outline, is decoded whole. What JSON is
accepted at all is cds_service/json_parse.py's."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

import msgspec

from cds_service.json_parse import Deferred, decode_as, decode_deferred, parse_json


class EntrySearch(msgspec.Struct, gc=False):
    """An outlined Bundle entry's `search`: its mode (match, include, outcome) is all that is read."""

    mode: Any = None


def _outlined_bundle(resource_outline: type) -> type:
    # No fullUrl: only a Medication's or a Patient's is read (they are never outlined).
    entry = TypedDict("OutlinedEntry", {"search": EntrySearch, "resource": resource_outline}, total=False)
    return TypedDict("OutlinedBundle", {
        "resourceType": Literal["Bundle"], "type": Any, "total": Any, "link": Any, "entry": list[entry],
    }, total=False)


_BODY_FIELDS = {"hook": Any, "hookInstance": Any, "fhirServer": Any, "fhirAuthorization": Any, "context": Any, "extension": Any}


class HookBodyParser:
    """Reads the hook request bodies of one service, its prefetch Bundles of `resource_outline`'s
    kind in outline. With the service's prefetch keys, and those that search for that kind
    (`outlined_keys`), a body is read in one pass: those keys' Bundles in outline, the others
    whole; a key the service does not ask for is not read, in either pass. A body that does not
    fit (such a key holding an OperationOutcome, say) is read in two: each prefetch value tried
    in outline."""

    _ENVELOPE = msgspec.json.Decoder(TypedDict("HookBody", _BODY_FIELDS | {"prefetch": dict[str, Deferred] | None}, total=False))

    def __init__(self, resource_outline: type, *, prefetch_keys: tuple[str, ...] = (), outlined_keys: frozenset[str] = frozenset()):
        bundle = _outlined_bundle(resource_outline)
        self._bundle = msgspec.json.Decoder(bundle)
        self._one_pass = None
        self._keys = frozenset(prefetch_keys)  # none given: every key is read
        self._whole_keys = tuple(key for key in prefetch_keys if key not in outlined_keys)
        if outlined_keys:
            prefetch = TypedDict("Prefetch", {key: bundle | None for key in outlined_keys} | dict.fromkeys(self._whole_keys, Any), total=False)
            self._one_pass = msgspec.json.Decoder(TypedDict("OnePassHookBody", _BODY_FIELDS | {"prefetch": prefetch | None}, total=False))

    def parse(self, data: bytes | bytearray | memoryview) -> object:
        if self._one_pass is not None:
            try:
                body = decode_as(self._one_pass, data)
            except msgspec.ValidationError:
                pass  # read in two passes below
            else:
                return body
        try:
            body = decode_as(self._ENVELOPE, data)
        except msgspec.ValidationError:  # not an object, or prefetch not one: decoded whole, for
            return parse_json(data)      # the request's own validation to say what is wrong
        prefetch = body.get("prefetch")
        if prefetch:
            body["prefetch"] = {
                key: self._prefetch_value(text) for key, text in prefetch.items() if not self._keys or key in self._keys
            }
        return body

    def _prefetch_value(self, text: Deferred) -> object:
        try:
            return decode_as(self._bundle, text)
        except msgspec.ValidationError:  # a resource, an OperationOutcome, a Bundle of other kinds
            return decode_deferred(text)
