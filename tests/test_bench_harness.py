"""The benchmark harness itself (bench/), on tiny sizes: its patient, its FHIR server, one real run.

The measurements are `python3 -m bench`; these tests only check that the harness measures what
it says (the default request gets a card and the quiet one none, the lean request the same cards,
same data on every route, paging that the service can follow, a bare floor that is Flask alone,
a floor route that exists only when asked for, a Runs table kept across runs). Nothing here is timed."""

from __future__ import annotations

import ast
import json
import math
import urllib.request
from datetime import datetime, timezone

import pytest

from bench.fhir_server import FhirServer
from bench.patient import PATIENT_ID, QUIET_LABS_DAYS_AGO, PatientRotation, heavy_patient, order_select_request
from bench.run import NOTES_HEADING, QUICK, RUNS_HEADING, Report, run, write_results
from cds_service.app import BENCH_FLOOR_ENV_VAR, create_app
from cds_service.config import Settings

AS_OF = datetime(2026, 11, 25, 0, 0, tzinfo=timezone.utc)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:  # loopback only
        return json.loads(response.read())


def test_heavy_patient_is_deterministic_and_as_large_as_asked():
    first = heavy_patient(seed=7, observations=450, as_of=AS_OF)
    again = heavy_patient(seed=7, observations=450, as_of=AS_OF)
    assert json.dumps(first.by_key) == json.dumps(again.by_key)
    counts = first.counts()
    assert counts["labResults"] == 450
    assert sum(counts[k] for k in counts if k.startswith("medication")) >= 60
    assert counts["conditions"] >= 40 and counts["procedures"] >= 30
    codes = {o["code"]["coding"][0]["code"] for o in first.by_key["labResults"]}
    assert {"17861-6", "2000-8", "1751-7", "98979-8"} <= codes  # calcium (both units), albumin, eGFR
    assert {"718-7", "2951-2"} <= codes  # and many results no rule reads (CBC, BMP)


def _order_select_topics(client, heavy) -> list[str]:
    response = client.post("/cds-services/order-select", json=order_select_request(heavy))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert "X-Skipped-Resources" not in response.headers
    return sorted(card["source"]["topic"]["code"] for card in response.get_json()["cards"])


def test_default_heavy_patient_gets_a_card_and_the_quiet_one_none(make_app):
    """The benchmark measures the carded call (ledger write, suppression look-up) by default."""
    client = make_app(as_of=AS_OF.replace(hour=15)).test_client()
    assert _order_select_topics(client, heavy_patient(as_of=AS_OF)) == ["calcium-monitoring"]
    assert _order_select_topics(client, heavy_patient(as_of=AS_OF, newest_labs_days_ago=QUIET_LABS_DAYS_AGO)) == []


def test_lean_request_has_the_same_resources_and_cards_in_about_half_the_bytes(make_app):
    client = make_app(as_of=AS_OF.replace(hour=15)).test_client()
    heavy, lean = heavy_patient(as_of=AS_OF), heavy_patient(as_of=AS_OF, lean=True)
    assert lean.counts() == heavy.counts()
    heavy_size, lean_size = (len(json.dumps(order_select_request(p), separators=(",", ":"))) for p in (heavy, lean))
    assert 0.45 < lean_size / heavy_size < 0.6
    assert _order_select_topics(client, lean) == _order_select_topics(client, heavy)
    quiet = heavy_patient(as_of=AS_OF, newest_labs_days_ago=QUIET_LABS_DAYS_AGO, lean=True)
    assert _order_select_topics(client, quiet) == []
    text = json.dumps(lean.by_key)
    assert '"display"' not in text and '"meta"' not in text


def test_patient_rotation_changes_only_the_patient_id():
    body = json.dumps(order_select_request(heavy_patient(observations=20, as_of=AS_OF)), separators=(",", ":")).encode()
    rotation = PatientRotation(body, patients=3, first=7)
    bodies = [rotation() for _ in range(4)]
    assert {len(b) for b in bodies} == {len(body)} == {rotation.size}
    assert [json.loads(b)["context"]["patientId"] for b in bodies] == ["pat-heavy-0007", "pat-heavy-0008", "pat-heavy-0009", "pat-heavy-0007"]
    assert PATIENT_ID.encode() not in bodies[0]
    assert bodies[0].replace(b"pat-heavy-0007", PATIENT_ID.encode()) == body


def test_bare_floor_app_is_flask_alone_and_reads_json_like_flask():
    from bench import floor_app

    tree = ast.parse(open(floor_app.__file__, encoding="utf-8").read())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"flask"}
    client = floor_app.app.test_client()
    body = order_select_request(heavy_patient(observations=5, as_of=AS_OF))
    response = client.post("/cds-services/order-select", json=body)
    assert response.status_code == 200 and response.get_json() == {"cards": []}
    assert client.post("/cds-services/order-select", data=b"{not json", content_type="application/json").status_code == 400


def _report(date: str, met: bool) -> Report:
    report = Report(command="python3 -m bench", machine={"date": date, "code": "abc1234+0000", "load average at start": "0.5 / 0.4 / 0.3"})
    report.target("1. something", "1.0 x", met)
    report.runs_cell("1. heavy", "p50 1.0 / 1.0 x", met)
    report.sections.append("## 1. A section")
    return report


def test_runs_table_grows_by_a_row_per_run_and_keeps_the_notes(tmp_path):
    out = tmp_path / "RESULTS.md"
    out.write_text(f"# old\n\n{NOTES_HEADING}\n\nhand-written\n", encoding="utf-8")
    write_results(out, _report("2026-12-01 10:00 UTC", True), new_series=False)
    write_results(out, _report("2026-12-02 10:00 UTC", False), new_series=False)
    text = out.read_text(encoding="utf-8")
    assert text.index("## 1. A section") < text.index(RUNS_HEADING) < text.index(NOTES_HEADING)
    assert text.endswith("hand-written\n") and "# old" not in text
    rows = [line for line in text[text.index(RUNS_HEADING):text.index(NOTES_HEADING)].splitlines() if line.startswith("| 2026")]
    assert [row.split(" | ")[0] for row in rows] == ["| 2026-12-01 10:00 UTC", "| 2026-12-02 10:00 UTC"]
    assert rows[0].endswith("| yes |") and rows[1].endswith("| **no** |")
    assert "Series since 2026-12-01 10:00 UTC" in text
    write_results(out, _report("2026-12-03 10:00 UTC", True), new_series=True)
    text = out.read_text(encoding="utf-8")
    assert "| 2026-12-01" not in text and "| 2026-12-03 10:00 UTC" in text and "Series since 2026-12-03" in text
    assert text.endswith("hand-written\n")


def test_fhir_server_filters_by_code_and_pages_with_next_links():
    heavy = heavy_patient(observations=200, as_of=AS_OF)
    calcium = [o for o in heavy.by_key["labResults"] if o["code"]["coding"][0]["code"] == "17861-6"]
    with FhirServer(heavy, latency_seconds=0, page_size=4) as server:
        url = f"{server.base_url}/Observation?patient={PATIENT_ID}&category=laboratory&code=http://loinc.org|17861-6"
        ids, pages = [], 0
        while url:
            bundle = _get(url)
            pages += 1
            assert bundle["total"] == len(calcium)
            ids += [entry["resource"]["id"] for entry in bundle["entry"]]
            url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
        assert ids == [o["id"] for o in calcium]
        assert pages == math.ceil(len(calcium) / 4)
        assert _get(f"{server.base_url}/Patient/{PATIENT_ID}")["id"] == PATIENT_ID
        assert _get(f"{server.base_url}/Condition?patient=someone-else")["total"] == 0


def test_floor_route_exists_only_when_asked_for(monkeypatch):
    body = order_select_request(heavy_patient(observations=5, as_of=AS_OF))
    monkeypatch.delenv(BENCH_FLOOR_ENV_VAR, raising=False)
    assert create_app(Settings()).test_client().post("/bench/floor", json=body).status_code == 404
    monkeypatch.setenv(BENCH_FLOOR_ENV_VAR, "1")
    client = create_app(Settings()).test_client()
    response = client.post("/bench/floor", json=body)
    assert response.status_code == 200 and response.get_json() == {"cards": []}
    assert client.post("/bench/floor", data=b"{not json", content_type="application/json").status_code == 400


@pytest.mark.slow
def test_quick_benchmark_run_measures_every_scenario(tmp_path):
    out = tmp_path / "RESULTS.md"
    report = run(QUICK, out=out, command="python3 -m bench --quick", fhir_timeout=0.3)
    assert len(report.targets) == 17
    for name, measured, _met in report.targets:
        assert "nan" not in measured, name
    # The hanging query costs data, never the call.
    assert report.data["no_prefetch"]["hang_worst"] < 300 + 1000
    # Every piece of section 5 was called on the carded call.
    assert all(piece["calls"] for piece in report.data["hot_path"]["kinds"]["card issued"]["pieces"].values())
    text = out.read_text(encoding="utf-8")
    for heading in ("## 1.", "## 2.", "## 3.", "## 4.", "## 5.", RUNS_HEADING, "| heavy | bare floor | 8 |",
                    "| lean | in-app floor | 32 |", "| heavy | service, card issued | 32 |", "| lean | service, no card | 8 |"):
        assert heading in text
