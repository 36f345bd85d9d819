"""The committee report on the fixtures' feedback: real scenarios issue real cards through the
API, the feedback in fixtures/feedback/*.json is posted as an EHR would, and `denosumab-cds
report` must show exactly the counts each fixture expects.

A fixture names cards by call and topic, suggestions by label and override reasons by code; the
test turns them into the uuids and Codings of the cards actually issued."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import pytest

from cds_service.cli import main
from tests.conftest import FIXTURES, SCENARIOS, load_scenario

PATHS = sorted((FIXTURES / "feedback").glob("*.json"))


def issue(make_app, call: dict) -> tuple[str, dict[str, dict]]:
    scenario = load_scenario(SCENARIOS / call["scenario"])
    request = {**scenario["request"], "hookInstance": str(uuid.uuid4())}
    client = make_app(as_of=datetime.fromisoformat(scenario["asOf"])).test_client()
    response = client.post(f"/cds-services/{scenario['service']}", json=request)
    assert response.status_code == 200, response.get_data(as_text=True)
    return scenario["service"], {card["source"]["topic"]["code"]: card for card in response.get_json()["cards"]}


def wire_entry(entry: dict, cards: dict[str, dict]) -> dict:
    card = cards.get(entry["topic"])
    assert card is not None, f"call {entry['call']!r} issued no {entry['topic']} card (it issued {sorted(cards)})"
    wire = {"card": card["uuid"], "outcome": entry["outcome"], "outcomeTimestamp": entry["outcomeTimestamp"]}
    if "acceptedSuggestions" in entry:
        by_label = {s["label"]: s["uuid"] for s in card.get("suggestions", [])}
        missing = set(entry["acceptedSuggestions"]) - set(by_label)
        assert not missing, f"{entry['topic']} card has no suggestion {missing}; it has {sorted(by_label)}"
        wire["acceptedSuggestions"] = [{"id": by_label[label]} for label in entry["acceptedSuggestions"]]
    if "overrideReason" in entry or "userComment" in entry:
        wire["overrideReason"] = {}
        if "overrideReason" in entry:
            reasons = {r["code"]: r for r in card["overrideReasons"]}
            assert entry["overrideReason"] in reasons, f"{entry['topic']} card offers no reason {entry['overrideReason']!r}"
            wire["overrideReason"]["reason"] = reasons[entry["overrideReason"]]
        if "userComment" in entry:
            wire["overrideReason"]["userComment"] = entry["userComment"]
    return wire


def as_expected(topic: dict) -> dict:
    return {
        "issued": topic["issued"],
        "accepted": topic["accepted"],
        "overridden": topic["overridden"],
        "noResponse": topic["no_response"],
        "acceptanceRate": topic["acceptance"],
        "overrideReasons": {r.get("code", r["label"]): r["count"] for r in topic["override_reasons"]},
        "acceptedSuggestions": {s["label"]: s["count"] for s in topic["accepted_suggestions"]},
    }


def test_there_are_feedback_fixtures():
    assert len(PATHS) >= 2


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_the_report_on_the_fixture_feedback(path, make_app, capsys):
    fixture = json.loads(path.read_text(encoding="utf-8"))
    issued = {call["name"]: issue(make_app, call) for call in fixture["calls"]}
    client = make_app().test_client()
    for number, post in enumerate(fixture["posts"]):
        services = {issued[entry["call"]][0] for entry in post["feedback"]}
        assert len(services) == 1, f"posts[{number}] mixes services {services}"
        entries = [wire_entry(entry, issued[entry["call"]][1]) for entry in post["feedback"]]
        response = client.post(f"/cds-services/{services.pop()}/feedback", json={"feedback": entries})
        assert response.status_code == 200, f"posts[{number}]: {response.get_data(as_text=True)}"
        if "expectRecorded" in post:
            assert response.get_json()["recorded"] == post["expectRecorded"], f"posts[{number}]"

    assert main(["report", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {t["topic"]: as_expected(t) for t in report["topics"]} == fixture["expectReport"]
    total = report["total"]
    assert {"issued": total["issued"], "accepted": total["accepted"], "overridden": total["overridden"],
            "noResponse": total["no_response"]} == fixture["expectTotal"]
