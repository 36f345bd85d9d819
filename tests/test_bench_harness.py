"""The benchmark harness itself (bench/), on tiny sizes: its patient, its FHIR server, one real run.

The measurements are `python3 -m bench`; these tests only check that the harness measures what
it says (same data on every route, paging that the service can follow, a floor route that exists
only when asked for)."""

from __future__ import annotations

import json
import math
import urllib.request
from datetime import datetime, timezone

import pytest

from bench.fhir_server import FhirServer
from bench.patient import PATIENT_ID, heavy_patient, order_select_request
from bench.run import QUICK, run
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


def test_heavy_patient_order_select_gets_no_cards(make_app):
    """The benchmark's patient is well managed: the measured calls are the common, quiet path."""
    heavy = heavy_patient(as_of=AS_OF)
    client = make_app(as_of=AS_OF.replace(hour=15)).test_client()
    response = client.post("/cds-services/order-select", json=order_select_request(heavy))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["cards"] == []
    assert "X-Skipped-Resources" not in response.headers


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
    assert len(report.targets) == 10
    for name, measured, _met in report.targets:
        assert "nan" not in measured, name
    # The hanging query costs data, never the call.
    assert report.data["no_prefetch"]["hang_worst"] < 300 + 1000
    text = out.read_text(encoding="utf-8")
    for heading in ("## 1.", "## 2.", "## 3.", "## 4.", "| floor | 8 |", "| service | 32 |"):
        assert heading in text
