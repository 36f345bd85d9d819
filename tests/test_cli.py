"""`denosumab-cds check` on saved requests, as an integrator or reviewer uses it."""

import json

import pytest

from cds_service.cli import build_parser, main
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


# --------------------------------------------------------------------------- no tracebacks


def _one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err  # one line, never a traceback
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "file not found"),
        ('{"hook": "order-sign", ', "not valid JSON"),
        ("\xff\xfe not text", "not valid JSON"),
        ("[]", "a hook request is a JSON object, not an array"),
        ('"order-sign"', "a hook request is a JSON object, not a string"),
        ('{"request": [1, 2]}', 'the fixture\'s "request" must be a JSON object, not an array'),
        ('{"hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea", "context": {}}', 'the request has no "hook"'),
    ],
    ids=["missing file", "invalid JSON", "not UTF-8", "array", "string", "fixture request not an object", "no hook"],
)
def test_check_refuses_what_is_not_a_hook_request_in_one_line(tmp_path, capsys, content, expected):
    path = tmp_path / "request.json"
    if content is not None:
        path.write_bytes(content.encode("latin-1"))
    assert main(["check", str(path)]) == 2
    captured = capsys.readouterr()
    assert _one_line(captured.err).startswith(f"check: {path}: {expected}")
    assert captured.out == ""


def test_check_a_directory(tmp_path, capsys):
    assert main(["check", str(tmp_path)]) == 2
    assert _one_line(capsys.readouterr().err) == f"check: {tmp_path}: is a directory, not a JSON file"


def test_check_without_hook_but_with_service_answers_with_an_operation_outcome(tmp_path, capsys):
    request = json.loads(BASELINE.read_text())["request"]
    del request["hook"]
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    assert main(["check", str(path), "--service", "order-sign"]) == 1
    assert json.loads(capsys.readouterr().out)["resourceType"] == "OperationOutcome"


def test_report_into_a_missing_folder(tmp_path, capsys):
    plot = tmp_path / "no-such-folder" / "chart.html"
    assert main(["report", "--plot", str(plot)]) == 2
    captured = capsys.readouterr()
    assert _one_line(captured.err) == f"report: --plot {plot}: folder {plot.parent} does not exist"
    assert captured.out == ""  # refused before any report is printed


@pytest.mark.parametrize("name", ["chart.png", "chart.PNG", "chart.pdf", "chart"])
def test_report_refuses_a_chart_format_it_does_not_write(tmp_path, capsys, name):
    plot = tmp_path / name
    assert main(["report", "--plot", str(plot)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"report: --plot {plot}: the chart is written as an HTML page (.html) or SVG (.svg)")
    assert not plot.exists()  # never HTML under another name


def test_report_writes_a_chart_of_the_named_format(tmp_path, capsys):
    from tests.feedback.conftest import issue_cards, make_card_app

    issue_cards(make_card_app().test_client())
    for name, start in (("chart.svg", "<svg"), ("chart.html", "<!DOCTYPE html>"), ("chart.HTM", "<!DOCTYPE html>")):
        plot = tmp_path / name
        assert main(["report", "--plot", str(plot)]) == 0
        assert plot.read_text(encoding="utf-8").startswith(start)
        capsys.readouterr()


@pytest.mark.parametrize("since, until", [("2026-12-01", "2026-11-01"), ("2026-11-01", "2026-11-01"),
                                          ("2026-11-02T10:00:00Z", "2026-11-02")])
def test_report_since_after_until(capsys, since, until):
    assert main(["report", "--since", since, "--until", until]) == 2
    captured = capsys.readouterr()
    assert _one_line(captured.err) == f"report: --since {since} is not before --until {until} (the period would be empty)"
    assert captured.out == ""


def test_serve_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["serve", "--help"])
    assert stopped.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "$DENOSUMAB_CDS_CONFIG, else local trial mode" in text
    assert "127.0.0.1 in trial mode" in text and "0.0.0.0" in text
    assert "8080" in text
    assert "workers of the file, 2" in text


@pytest.mark.parametrize("option", [["--port", "70000"], ["--port", "0"], ["--workers", "0"], ["--port", "http"]])
def test_serve_refuses_impossible_options_before_starting(capsys, option):
    with pytest.raises(SystemExit) as stopped:
        main(["serve", *option])
    assert stopped.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_report_on_a_store_it_cannot_reach(monkeypatch, capsys):
    # nothing listens on port 1 of this machine: refused at once, without any network
    monkeypatch.setenv("DENOSUMAB_CDS_STORE_URL", "postgresql://cds:s3cret@127.0.0.1:1/cds")
    assert main(["report"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("report: cannot read the store at postgresql://cds:***@127.0.0.1:1/cds: ")
    assert "s3cret" not in line


@pytest.mark.parametrize("command", ["report", "serve"])
def test_a_store_url_of_another_database_from_the_environment(monkeypatch, capsys, command):
    monkeypatch.setenv("DENOSUMAB_CDS_STORE_URL", "mysql://cds:s3cret@db.example.org/cds")
    monkeypatch.delenv("DENOSUMAB_CDS_CONFIG", raising=False)
    assert main([command]) == 2  # serve stops while opening the store, before gunicorn starts
    assert _one_line(capsys.readouterr().err) == (
        "configuration error: store.url: mysql is not supported; use sqlite:///path or postgresql://user@host/db"
    )


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
