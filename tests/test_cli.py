"""`denosumab-cds check` on saved requests, as an integrator or reviewer uses it."""

import json

from cds_service.cli import main
from tests.conftest import SCENARIOS, assert_valid_cds_response

BASELINE = SCENARIOS / "baseline" / "no-cards-well-managed-prolia-order-sign.json"


def test_check_prints_the_cds_hooks_response_for_a_fixture(capsys):
    assert main(["check", str(BASELINE), "--fixture-time"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert_valid_cds_response(body)
    assert body == {"cards": []}


def test_check_a_plain_hook_request(tmp_path, capsys):
    request = json.loads(BASELINE.read_text())["request"]
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    assert main(["check", str(path), "--as-of", "2026-11-25T15:00:00+00:00"]) == 0
    assert json.loads(capsys.readouterr().out) == {"cards": []}


def test_check_reports_a_bad_request_as_an_operation_outcome(tmp_path, capsys):
    request = json.loads(BASELINE.read_text())["request"]
    del request["prefetch"]["labResults"]
    request.pop("fhirServer")
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    assert main(["check", str(path)]) == 1
    assert json.loads(capsys.readouterr().out)["resourceType"] == "OperationOutcome"


def test_check_refuses_a_bad_as_of_with_a_message(capsys):
    assert main(["check", str(BASELINE), "--as-of", "next tuesday"]) == 2
    assert "next tuesday" in capsys.readouterr().err


def test_check_reads_a_day_as_its_midnight_utc(capsys):
    assert main(["check", str(BASELINE), "--as-of", "2026-11-25"]) == 0
    assert json.loads(capsys.readouterr().out) == {"cards": []}


def test_check_lists_every_unusable_resource_also_those_no_rule_reads(tmp_path, capsys):
    request = json.loads(BASELINE.read_text())["request"]
    years_old = {"resourceType": "Observation", "id": "lab-2019-broken", "status": "final",
                 "subject": {"reference": "Patient/pat-wm-0001"},
                 "code": {"coding": [{"system": "http://loinc.org", "code": "17861-6"}]},
                 "effectiveDateTime": "2019-02-01T08:00:00Z", "valueQuantity": {"value": "nine", "unit": "mg/dL"}}
    request["prefetch"]["labResults"]["entry"].append({"resource": years_old})
    osteopenia = {"resourceType": "Condition", "id": "cond-broken", "subject": {"reference": "Patient/pat-wm-0001"},
                  "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M85.8"}]},
                  "clinicalStatus": {"coding": [{"code": "active"}]}, "onsetDateTime": "last spring"}
    request["prefetch"]["conditions"].setdefault("entry", []).append({"resource": osteopenia})
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    assert main(["check", str(path), "--as-of", "2026-11-25T15:00:00+00:00"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"cards": []}
    assert "Observation/lab-2019-broken" in captured.err
    assert "Condition/cond-broken" in captured.err


def test_check_lists_each_bound_or_unitless_value_with_what_was_made_of_it(tmp_path, capsys):
    request = json.loads(BASELINE.read_text())["request"]
    for entry in request["prefetch"]["labResults"]["entry"]:
        resource = entry["resource"]
        code = resource["code"]["coding"][0]["code"]
        if code == "98979-8":  # eGFR as the lab printed it
            resource.pop("valueQuantity")
            resource["valueString"] = ">60"
        elif code == "17861-6":  # calcium without its unit
            resource["valueQuantity"] = {"value": 9.4}
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    assert main(["check", str(path), "--as-of", "2026-11-25T15:00:00+00:00"]) == 0
    err = capsys.readouterr().err
    assert "value (calcium-total) Observation/lab-ca-1: 9.4 (unit not reported, read as mg/dL)" in err
    assert "value (egfr) Observation/lab-egfr-1: >60 (unit not reported, read as mL/min/1.73m2) (a bound" in err
