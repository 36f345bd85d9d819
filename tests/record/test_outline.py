"""The Observation outline (cds_service/record/outline.py) holds exactly what the record reads."""

from __future__ import annotations

import json

import msgspec

from cds_service.json_parse import HookBodyParser
from cds_service.record.build import _READ_ELEMENTS, _SUBJECT_ELEMENTS, _subject_reference
from cds_service.record.outline import ObservationOutline
from tests.requests_for_tests import baseline_request

PRIMITIVE_READ_ELEMENTS = {"status", "effectiveDateTime", "effectiveInstant", "issued", "valueString"}


def test_the_outline_names_every_element_the_record_reads_and_no_other():
    names = set(ObservationOutline.__struct_encode_fields__)
    elements = {name for name in names if not name.startswith("_")}
    assert elements == set(_READ_ELEMENTS["Observation"]) | {"id"} | set(_SUBJECT_ELEMENTS)
    assert {name for name in names if name.startswith("_")} == {"_" + name for name in PRIMITIVE_READ_ELEMENTS}
    assert PRIMITIVE_READ_ELEMENTS <= set(_READ_ELEMENTS["Observation"])


def test_an_outline_gives_back_the_read_elements_as_sent():
    request = baseline_request()
    labs = request["prefetch"]["labResults"]["entry"]
    labs[0]["resource"]["_status"] = {"extension": [{"url": "https://example.org/x", "valueString": "y"}]}
    parsed = HookBodyParser(ObservationOutline).parse(json.dumps(request).encode())
    for sent, entry in zip(labs, parsed["prefetch"]["labResults"]["entry"]):
        outline = entry["resource"]
        resource = outline.resource()
        wanted = {name: value for name, value in sent["resource"].items()
                  if name in set(ObservationOutline.__struct_encode_fields__) | {"resourceType"}}
        # Of the subject only its reference is read (the patient match); all else as sent.
        assert resource.pop("subject") == {"reference": wanted.pop("subject")["reference"]}
        assert _subject_reference(outline) == sent["resource"]["subject"]["reference"]
        assert resource == wanted


def test_a_malformed_code_does_not_fit_and_the_bundle_is_read_whole():
    request = baseline_request()
    request["prefetch"]["labResults"]["entry"][0]["resource"]["code"] = {"coding": {"system": "http://loinc.org"}}
    parsed = HookBodyParser(ObservationOutline).parse(json.dumps(request).encode())
    assert parsed["prefetch"]["labResults"] == request["prefetch"]["labResults"]  # plain dicts, as sent
    assert not any(isinstance(e["resource"], msgspec.Struct) for e in parsed["prefetch"]["labResults"]["entry"])
