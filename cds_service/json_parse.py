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

A typed decoder (`decode_as`) reads a document into the shape it is given: a `ResourceOutline`
decodes some elements, keeps others as JSON text (`Deferred`) and skips the rest, checked as JSON
syntax but not decoded (cds_service/protocol/hook_body.py reads hook bodies so)."""

from __future__ import annotations

import functools
import re

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
    return decode_as(_ANY, data)


def decode_deferred(text: Deferred) -> object:
    """A `Deferred` element, decoded (InvalidJson when its text cannot be)."""
    return decode_as(_ANY, text)


def decode_as(decoder: msgspec.json.Decoder, data):
    """`data` read by `decoder`, under this module's rules: InvalidJson when it is not JSON this
    service accepts; msgspec.ValidationError when a typed decoder's shape does not fit."""
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
