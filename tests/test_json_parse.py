"""The one JSON parser (cds_service/json_parse.py): what it accepts and refuses, on purpose, and
that reading a hook body in outline gives the same answers as reading it whole."""

from __future__ import annotations

import copy
import json
from datetime import datetime

import pytest

from cds_service.errors import CdsError
from cds_service.json_parse import InvalidJson, parse_json
from cds_service.protocol.auth import anonymous_caller
from cds_service.protocol.bundles import bundle_resources, holds_fewer_than_its_total
from cds_service.protocol.hook_body import HookBodyParser
from cds_service.record.build import _subject_reference
from cds_service.record.outline import ObservationOutline
from tests.conftest import load_scenario, scenario_paths
from tests.requests_for_tests import baseline_request

ORDER_SIGN = "/cds-services/order-sign"
OUTLINE = HookBodyParser(ObservationOutline)


def _post(client, body: bytes):
    return client.post(ORDER_SIGN, data=body, content_type="application/json")


def _labs(request: dict) -> list[dict]:
    return [entry["resource"] for entry in request["prefetch"]["labResults"]["entry"]]


def _calcium(request: dict) -> dict:
    return next(r for r in _labs(request) if r["code"]["coding"][0]["code"] == "17861-6")


# --- what is accepted ------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [b"NaN", b"[Infinity]", b'{"value": -Infinity}', b'{"v": nan}'])
def test_nan_and_infinity_are_not_json(text):
    with pytest.raises(InvalidJson, match="invalid character"):
        parse_json(text)


def test_a_number_beyond_a_double_is_refused_where_it_is_read():
    with pytest.raises(InvalidJson, match="out of range"):
        parse_json(b'{"value": 1e400}')
    assert parse_json(b"123456789012345678901234567890") == 123456789012345678901234567890  # an int stays exact


@pytest.mark.parametrize("escape", [b"\\ud800", b"x\\udfffy", b"\\ud83d"])
def test_a_lone_surrogate_escape_is_refused_saying_so(escape):
    with pytest.raises(InvalidJson, match=r"lone surrogate escape \(\\u[dD][0-9a-fA-F]{3} at byte \d+\)"):
        parse_json(b'{"id": "' + escape + b'"}')


def test_a_surrogate_pair_is_text():
    assert parse_json(b'{"a": "\\ud83e\\uddb4 bone"}') == {"a": "\U0001f9b4 bone"}


def test_duplicate_names_the_last_wins():
    assert parse_json(b'{"status": "preliminary", "status": "final"}') == {"status": "final"}


def test_a_utf8_byte_order_mark_is_ignored_other_encodings_refused():
    assert parse_json(b"\xef\xbb\xbf{\"a\": 1}") == {"a": 1}
    with pytest.raises(InvalidJson):
        parse_json('{"a": 1}'.encode("utf-16"))
    with pytest.raises(InvalidJson, match="UTF-8"):
        parse_json('{"a": "café"}'.encode("latin-1"))


def test_nesting_past_the_recursion_limit_is_refused():
    with pytest.raises(InvalidJson, match="nested too deeply"):
        parse_json(b"[" * 5000 + b"]" * 5000)


@pytest.mark.parametrize("text", [b"", b'{"a": 1', b'{"a": 1} x', b"{'a': 1}"])
def test_broken_text_says_what(text):
    with pytest.raises(InvalidJson) as refused:
        parse_json(text)
    assert str(refused.value) and "JSON is malformed" not in str(refused.value)


def test_the_service_answers_each_refusal_with_a_400_naming_it(client):
    body = json.dumps(baseline_request()).encode().replace(b'"final"', b'"fin\\ud800al"', 1)
    response = _post(client, body)
    assert response.status_code == 400
    issue = response.get_json()["issue"][0]
    assert issue["code"] == "structure" and "lone surrogate escape" in issue["diagnostics"]


# --- the outline ---------------------------------------------------------------------------------

def test_an_observation_keeps_only_what_the_record_reads():
    request = baseline_request()
    calcium = _calcium(request)
    calcium["performer"] = [{"reference": "Organization/lab", "display": "Central Lab"}]
    calcium["note"] = [{"text": "hemolysed?"}]
    parsed = OUTLINE.parse(json.dumps(request).encode())
    outlined = next(r for r in _labs(parsed) if r.id == calcium["id"])
    assert isinstance(outlined, ObservationOutline)
    resource = outlined.resource()
    assert "performer" not in resource and "note" not in resource and "meta" not in resource
    assert _subject_reference(outlined) == calcium["subject"]["reference"]
    assert resource["code"] == calcium["code"] and resource["valueQuantity"] == calcium["valueQuantity"]


def test_a_bundle_with_other_resources_is_read_whole():
    request = baseline_request()
    request["prefetch"]["labResults"]["entry"].append(
        {"resource": {"resourceType": "OperationOutcome", "issue": [{"severity": "warning", "code": "incomplete"}]},
         "search": {"mode": "outcome"}}
    )
    parsed = OUTLINE.parse(json.dumps(request).encode())
    assert parsed["prefetch"]["labResults"] == request["prefetch"]["labResults"]


@pytest.mark.parametrize("total_beyond_matches", [0, 1])
def test_an_outlined_bundle_s_search_modes_are_read_as_a_whole_one_s(total_beyond_matches):
    """Included and outcome entries do not count as matches (an EHR that capped its prefetch),
    and an outcome entry is left out, whether the Bundle is read in outline or whole."""
    request = baseline_request()
    bundle = request["prefetch"]["labResults"]
    entries = bundle["entry"]
    assert len(entries) >= 3
    entries[0]["search"] = {"mode": "include"}
    entries[1]["search"] = {"mode": "outcome"}
    entries[2].pop("search", None)
    bundle["total"] = len(entries) - 2 + total_beyond_matches  # the include and the outcome are not matches
    body = json.dumps(request).encode()
    outlined, whole = OUTLINE.parse(body)["prefetch"]["labResults"], json.loads(body)["prefetch"]["labResults"]
    assert all(isinstance(entry["resource"], ObservationOutline) for entry in outlined["entry"])
    assert holds_fewer_than_its_total(outlined) == holds_fewer_than_its_total(whole) == bool(total_beyond_matches)
    (outlined_resources, outlined_problems), (whole_resources, whole_problems) = bundle_resources(outlined), bundle_resources(whole)
    assert [r.id for r in outlined_resources] == [r["id"] for r in whole_resources]
    assert entries[1]["resource"]["id"] not in {r["id"] for r in whole_resources}
    assert outlined_problems == whole_problems == []


def test_an_unread_element_that_cannot_be_decoded_costs_nothing(client):
    """Invalid UTF-8 or an out-of-range number where nothing reads it (a vendor's note) is skipped
    over unread: the calcium result still counts."""
    request = baseline_request()
    marker = "NOTE-TO-BREAK"
    _calcium(request)["note"] = [{"text": marker, "authorString": 1}]
    body = json.dumps(request).encode().replace(marker.encode(), b"caf\xe9").replace(b'"authorString": 1', b'"authorString": 1e400')
    with pytest.raises(InvalidJson):
        parse_json(body)  # read whole, the body is refused
    outlined = _post(client, body)
    assert outlined.status_code == 200
    plain = _post(client, json.dumps(baseline_request()).encode())
    assert _without_uuids(outlined.get_json()) == _without_uuids(plain.get_json())
    assert outlined.headers.get("X-Skipped-Resources") == plain.headers.get("X-Skipped-Resources")


def test_a_read_element_that_cannot_be_decoded_skips_that_result_and_says_so(client):
    request = baseline_request()
    marker = 987654.321
    _calcium(request)["valueQuantity"]["value"] = marker
    body = json.dumps(request).encode().replace(str(marker).encode(), b"1e400")
    response = _post(client, body)
    assert response.status_code == 200  # one result skipped, not the request
    assert int(response.headers["X-Skipped-Resources"]) >= 1


@pytest.mark.parametrize("path", scenario_paths(), ids=lambda p: str(p.relative_to(p.parents[1])))
def test_outline_and_whole_give_the_same_answer(path, make_app):
    """Every fixture: the HTTP answer (body read in outline) equals the answer to the same request
    read whole (as `check` reads a file)."""
    scenario = load_scenario(path)
    app = make_app(as_of=datetime.fromisoformat(scenario["asOf"]))
    body = json.dumps(scenario["request"]).encode()
    outlined = app.test_client().post(f"/cds-services/{scenario['service']}", data=body, content_type="application/json")
    service = app.extensions["denosumab_cds"]
    try:
        whole = service.evaluate(scenario["service"], parse_json(body), anonymous_caller(service.settings)).response
    except CdsError as error:
        assert outlined.status_code == error.status
        return
    assert outlined.status_code == 200
    assert _without_uuids(outlined.get_json()) == _without_uuids(whole)


def _without_uuids(response: dict) -> dict:
    """The answer without what differs between two calls (card and suggestion uuids)."""
    found = copy.deepcopy(response)
    for card in found.get("cards", []):
        card.pop("uuid", None)
        for suggestion in card.get("suggestions", []):
            suggestion.pop("uuid", None)
    return found


def _same_documents(first, second) -> bool:
    """Equal once outlines are their elements (two outlines are equal only as the same object)."""
    def plain(value):
        if isinstance(value, ObservationOutline):
            return ("outline", json.dumps(value.resource(), sort_keys=True))
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value
    return plain(first) == plain(second)


@pytest.mark.parametrize("labs", ["bundle", "operation-outcome", "null", "outcome-entry"])
def test_one_pass_and_two_passes_read_a_body_alike(labs):
    request = baseline_request()
    if labs == "operation-outcome":
        request["prefetch"]["labResults"] = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}
    elif labs == "null":
        request["prefetch"]["labResults"] = None
    elif labs == "outcome-entry":
        request["prefetch"]["labResults"]["entry"].append(
            {"resource": {"resourceType": "OperationOutcome", "issue": [{"severity": "warning", "code": "incomplete"}]},
             "search": {"mode": "outcome"}})
    body = json.dumps(request).encode()
    keys = tuple(request["prefetch"])
    one_pass = HookBodyParser(ObservationOutline, prefetch_keys=keys, outlined_keys=frozenset({"labResults"}))
    assert _same_documents(one_pass.parse(body), OUTLINE.parse(body))
