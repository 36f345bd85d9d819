"""A fixture's request moved in time gives the cards it was written for on any day: what the
README's "Try it" relies on (`denosumab-cds fixture-request`), for every fixture."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta

import pytest

from cds_service.dated_request import request_dated, shift_dates
from tests.conftest import SCENARIOS, load_scenario, scenario_paths

PATHS = scenario_paths()


def _cards(body: dict) -> list[tuple[str, str]]:
    return sorted((c["source"]["topic"]["code"], c["indicator"]) for c in body["cards"])


README_FIXTURE = SCENARIOS / "hypocalcemia" / "fires-critical-corrected-calcium-7.84-raw-7.2-albumin-3.2.json"


def _moved_cards_are_the_expected(path, later: timedelta, make_app):
    scenario = load_scenario(path)
    moment = datetime.fromisoformat(scenario["asOf"]) + later
    client = make_app(as_of=moment).test_client()
    response = client.post(f"/cds-services/{scenario['service']}", json=request_dated(scenario, moment))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert _cards(response.get_json()) == sorted((c["topic"], c["indicator"]) for c in scenario["expect"]["cards"])


@pytest.mark.parametrize("path", [p for p in PATHS if load_scenario(p).get("expectStatus", 200) == 200],
                         ids=lambda p: str(p.relative_to(p.parents[1])))
def test_a_fixture_moved_13_months_on_at_another_hour_gives_its_cards(path, make_app):
    _moved_cards_are_the_expected(path, timedelta(days=400, hours=-9, minutes=17), make_app)


def test_the_readme_example_gives_its_card_30_days_later(make_app):
    _moved_cards_are_the_expected(README_FIXTURE, timedelta(days=30), make_app)


def test_dates_and_date_times_move_codes_and_ids_do_not():
    document = {
        "birthDate": "1951-03-02",
        "effectiveDateTime": "2026-11-10T08:30:00-05:00",
        "issued": "2026-11-10T14:02:11.250Z",
        "onsetDateTime": "2026-11",
        "recordedDate": "2019",
        "code": {"coding": [{"code": "2026"}, {"code": "2026-11"}]},
        "id": "obs-2026-11-10",
        "valueString": "2026-02-30",
    }
    moved = shift_dates(document, timedelta(days=31, hours=2))
    assert moved["birthDate"] == "1951-04-02"
    assert moved["effectiveDateTime"] == "2026-12-11T10:30:00-05:00"
    assert moved["issued"] == "2026-12-11T16:02:11.250Z"
    assert moved["onsetDateTime"] == "2026-12"
    assert moved["recordedDate"] == "2019"  # 31 days do not move a bare year
    assert moved["code"] == document["code"] and moved["id"] == document["id"]
    assert moved["valueString"] == "2026-02-30"  # not a real day: left as sent


def _fixture_request(*args: str) -> dict:
    printed = subprocess.run(
        [sys.executable, "-m", "cds_service.cli", "fixture-request", *args],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    return json.loads(printed)


def test_the_command_prints_the_request_moved_to_the_moment_given():
    original = load_scenario(README_FIXTURE)
    request = _fixture_request(str(README_FIXTURE), "--as-of", "2027-06-01T12:00:00Z")
    as_of, moment = datetime.fromisoformat(original["asOf"]), datetime.fromisoformat("2027-06-01T12:00:00+00:00")
    # date-times move by the exact difference, dates by the calendar days between the two moments
    moved = shift_dates(original["request"], moment - as_of, (moment.date() - as_of.date()).days)
    assert request["hookInstance"] != original["request"]["hookInstance"]
    assert request == {**moved, "hookInstance": request["hookInstance"]}


def test_the_command_moves_the_request_to_now_by_default():
    original = load_scenario(README_FIXTURE)
    request = _fixture_request(str(README_FIXTURE))
    calcium_dates = {
        entry["resource"]["effectiveDateTime"] for entry in request["prefetch"]["labResults"]["entry"]
        if entry["resource"]["code"]["coding"][0]["code"] == "17861-6"
    }
    age_of_result = datetime.fromisoformat(original["asOf"]) - max(
        datetime.fromisoformat(e["resource"]["effectiveDateTime"]) for e in original["request"]["prefetch"]["labResults"]["entry"]
        if e["resource"]["code"]["coding"][0]["code"] == "17861-6")
    now = datetime.now().astimezone()
    assert abs((now - max(map(datetime.fromisoformat, calcium_dates))) - age_of_result) < timedelta(minutes=5)
