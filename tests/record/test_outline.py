"""The Observation outline (cds_service/record/outline.py) holds exactly what the record reads."""

from __future__ import annotations

import json

import pytest

from cds_service.protocol.hook_body import HookBodyParser
from cds_service.knowledge import load_knowledge
from cds_service.record.build import _READ_ELEMENTS, _SUBJECT_ELEMENTS, RecordInputs, _subject_reference, build_record
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


def _labs_read(request: dict, *, outlined: bool):
    """The record's lab results and skipped resources from the request's labResults, its
    Observations read in outline (as a hook body is) or whole."""
    body = json.dumps(request).encode()
    parsed = HookBodyParser(ObservationOutline).parse(body) if outlined else json.loads(body)
    resources = [entry["resource"] for entry in parsed["prefetch"]["labResults"]["entry"]]
    assert all(isinstance(r, ObservationOutline) for r in resources) == outlined
    record = build_record(RecordInputs(patient_id=request["context"]["patientId"],
                                       resource_groups=[("labResults", resources)]), load_knowledge())
    labs = sorted((lab.analyte, lab.id, lab.value, lab.codings) for lab in record.labs)
    return labs, [(s.where, s.description, s.reference) for s in record.skipped]


@pytest.mark.parametrize("code", [
    {"coding": {"system": "http://loinc.org", "code": "17861-6"}},  # coding not an array
    {"coding": [{"system": "http://loinc.org", "code": 17861}]},  # the code a number
    {"coding": [None, "17861-6", {"system": "http://loinc.org"}]},
    "17861-6",
    {"text": "Calcium"},
    {"coding": [{"system": "http://loinc.org", "code": "17861-6", "display": "Calcium [Mass/volume] in Serum or Plasma"}]},
    {"coding": [{"code": "17861-6", "system": "http://loinc.org"}], "text": "Ca"},  # same test, other text
])
def test_a_code_in_outline_is_read_as_the_whole_resource_is(code):
    request = baseline_request()
    entries = request["prefetch"]["labResults"]["entry"]
    entries[0]["resource"]["code"] = code
    entries.append(json.loads(json.dumps(entries[0])))  # a second result with the same code text
    entries[-1]["resource"]["id"] += "-again"
    assert _labs_read(request, outlined=True) == _labs_read(request, outlined=False)


def test_a_code_that_cannot_be_decoded_skips_that_result_and_says_so():
    request = baseline_request()
    resource = request["prefetch"]["labResults"]["entry"][0]["resource"]
    body = json.dumps(request).replace(json.dumps(resource["code"]), '{"coding":[{"system":"http://loinc.org","code":"17861-6","version":1e400}]}', 1)
    parsed = HookBodyParser(ObservationOutline).parse(body.encode())
    resources = [entry["resource"] for entry in parsed["prefetch"]["labResults"]["entry"]]
    record = build_record(RecordInputs(patient_id=request["context"]["patientId"],
                                       resource_groups=[("labResults", resources)]), load_knowledge())
    assert resource["id"] not in {lab.id for lab in record.labs}
    assert [(s.where, s.reference) for s in record.skipped] == [("labResults", f"Observation/{resource['id']}")]
    assert "out of range" in record.skipped[0].description
