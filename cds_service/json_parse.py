"""The service's one JSON parser (msgspec), for everything that arrives from outside: hook and
feedback bodies, FHIR server responses, the JWKS file and the request files `check` reads.

What it accepts is decided here, on purpose (tests/test_json_parse.py holds the answers):
- JSON as RFC 8259 defines it. NaN, Infinity and -Infinity are not JSON and are refused (Python's
  json read them as floats); so is a number out of a double's range (1e400) where it is read.
- An escaped lone surrogate ("\\ud800") is refused: such a string is not Unicode text, and could
  be neither stored, hashed, logged nor answered.
- Duplicate names in one object: the last wins, as in Python's json and most parsers. FHIR JSON
  forbids them and no EHR is known to send them; finding them would cost a second look at every
  object of every body.
- A UTF-8 byte order mark before the document is ignored (RFC 8259 8.1 allows that); text in
  another encoding (UTF-16, Latin-1) is refused.
- Nesting deeper than the interpreter's recursion limit (about 1,000 levels) is refused.

A hook body is read in outline (`HookBodyParser`): a prefetch Bundle whose every entry is of the
outlined kind (a history of Observations: most of a large request) holds each resource as a
`ResourceOutline` of the elements the record reads. Those read of every resource are decoded;
those read only when a rule reads that resource stay JSON text (`Deferred`) until then; the rest
is skipped over, checked as JSON syntax but not decoded (an element nothing reads cannot cost a
resource). Any other prefetch value, and a Bundle that does not fit the outline, is decoded whole."""

from __future__ import annotations

import functools
import re
from typing import Any, Literal, TypedDict

import msgspec

Deferred = msgspec.Raw  # an element kept as its JSON text until it is read
UTF8_BOM = b"\xef\xbb\xbf"
_LONE_SURROGATE = re.compile(  # a high surrogate escape without its low one, or a low one alone
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)
_ANY = msgspec.json.Decoder()


class InvalidJson(ValueError):
    """The text is not JSON this service accepts; the message says what and where."""


def parse_json(data: bytes | bytearray | memoryview | str) -> object:
    """The whole document as dicts, lists, strings, numbers, booleans and None."""
    return _decode(_ANY, data)


def decode_deferred(text: Deferred) -> object:
    """A `Deferred` element, decoded (InvalidJson when its text cannot be)."""
    return _decode(_ANY, text)


def _decode(decoder: msgspec.json.Decoder, data):
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")  # a lone surrogate then fails as invalid UTF-8
    elif isinstance(data, (bytes, bytearray)) and data.startswith(UTF8_BOM):
        data = data[3:]
    try:
        return decoder.decode(data)
    except RecursionError:
        raise InvalidJson("JSON nested too deeply") from None
    except msgspec.ValidationError as exc:
        if decoder is not _ANY:
            raise  # the text does not fit the caller's outline: it decodes the text whole instead
        raise InvalidJson(str(exc).replace(" - at `$[...]`", "")) from None  # a number out of range
    except msgspec.DecodeError as exc:
        raise InvalidJson(_described(exc, data)) from None


def _described(exc: msgspec.DecodeError, data) -> str:
    """msgspec's message, made plain where it misleads (a lone high surrogate reads 'truncated' or
'unexpected end of hex escape')."""
    found = _LONE_SURROGATE.search(bytes(data))
    if found is not None and any(word in str(exc) for word in ("surrogate", "escape", "truncated")):
        return f"a string holds a lone surrogate escape ({found.group().decode()} at byte {found.start()}), which is not Unicode text"
    message = str(exc).removeprefix("JSON is malformed: ")
    if message == "Input data was truncated":
        return "the JSON text ends before the document does"
    return message


class ResourceOutline(msgspec.Struct, tag_field="resourceType", gc=False):
    """A resource read in outline. A subclass names its kind (`tag`) and its elements: decoded
    ones typed as they are read, `Deferred` ones kept as text; every element absent is UNSET.
    Cheaper than a dict to make and to free, and never tracked by the garbage collector."""

    @classmethod
    def kind(cls) -> str:
        """Its resourceType."""
        return cls.__struct_config__.tag

    def resource(self) -> dict:
        """The outline as the JSON object of its elements (deferred ones decoded; InvalidJson
        when one cannot be)."""
        resource = {"resourceType": self.kind()}
        for attribute, name in _element_names(type(self)):
            value = getattr(self, attribute)
            if value is msgspec.UNSET:
                continue
            if isinstance(value, Deferred):
                value = decode_deferred(value)
            elif isinstance(value, msgspec.Struct):
                value = msgspec.to_builtins(value)
            resource[name] = value
        return resource


@functools.cache
def _element_names(outline: type) -> tuple[tuple[str, str], ...]:
    """(attribute, JSON name) of each element of an outline type (`_status` is `status_extension`)."""
    return tuple(zip(outline.__struct_fields__, outline.__struct_encode_fields__))


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
                body = _decode(self._one_pass, data)
            except msgspec.ValidationError:
                pass  # read in two passes below
            else:
                return body
        try:
            body = _decode(self._ENVELOPE, data)
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
            return _decode(self._bundle, text)
        except msgspec.ValidationError:  # a resource, an OperationOutcome, a Bundle of other kinds
            return decode_deferred(text)
