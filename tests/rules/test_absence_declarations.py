"""Cards that say something is *not* recorded are not issued when that part of the record did not
arrive whole (card catalog v2, Incomplete data): the data-unavailable card lists the check
instead. Through the HTTP API, with the prefetch page cut (a next link and no server to ask)."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.conftest import SCENARIOS, load_scenario


def _cut(request: dict, key: str) -> None:
    """The EHR's page of `key` says there is more, and the service has no FHIR server to ask."""
    request["prefetch"][key]["link"] = [{"relation": "next", "url": f"https://ehr.example.org/fhir/r4/{key}?page=2"}]


def _cards(make_app, scenario: dict, request: dict) -> dict:
    client = make_app(as_of=datetime.fromisoformat(scenario["asOf"])).test_client()
    response = client.post(f"/cds-services/{scenario['service']}", json=request)
    assert response.status_code == 200, response.get_data(as_text=True)
    return {c["source"]["topic"]["code"]: c for c in response.get_json()["cards"]}


@pytest.mark.parametrize("fixture, topic, category, check", [
    ("dose-indication-mismatch/fires-prolia-60mg-for-bone-metastases-c79-51.json", "dose-indication-mismatch",
     "conditions", "an osteoporosis, osteopenia or treatment-induced bone loss diagnosis"),
    ("dosing-regimen/info-gctb-initiation-without-day-8-and-15-loading-doses.json", "dosing-regimen",
     "medicationRequests", "a loading-dose order of the 120 mg regimen"),
])
def test_a_card_resting_on_what_is_not_recorded_waits_for_the_whole_record(make_app, fixture, topic, category, check):
    scenario = load_scenario(SCENARIOS / fixture)
    assert topic in _cards(make_app, scenario, scenario["request"])  # whole record: the card
    _cut(scenario["request"], category)
    cards = _cards(make_app, scenario, scenario["request"])
    assert topic not in cards
    assert check in cards["data-unavailable"]["detail"]
