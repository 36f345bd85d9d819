"""Every scenario in fixtures/scenarios through the HTTP API: the cards it must produce.

A scenario file holds a real hook request (as an EHR sends it), the time of the call and the
exact set of cards expected: topic code and indicator of each, nothing more, nothing less.
Optional checks per card: `detailContains` (strings the detail must show, e.g. a value with its
unit and date) and `actions` ("create ServiceRequest", "delete MedicationRequest/request-123").
"""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.conftest import assert_valid_cds_response, load_scenario, scenario_paths

PATHS = scenario_paths()


def _action_names(card: dict) -> set[str]:
    names = set()
    for suggestion in card.get("suggestions", []):
        for action in suggestion.get("actions", []):
            if action["type"] == "delete":
                names.add(f"delete {action['resourceId']}")
            else:
                names.add(f"{action['type']} {action['resource']['resourceType']}")
    return names


def test_there_are_scenarios():
    assert len(PATHS) >= 12


@pytest.mark.parametrize("path", PATHS, ids=[str(p.relative_to(p.parents[1])) for p in PATHS])
def test_scenario(path, make_app):
    scenario = load_scenario(path)
    as_of = datetime.fromisoformat(scenario["asOf"])
    client = make_app(as_of=as_of).test_client()
    response = client.post(f"/cds-services/{scenario['service']}", json=scenario["request"])
    assert response.status_code == scenario.get("expectStatus", 200), response.get_data(as_text=True)
    body = response.get_json()
    if response.status_code != 200:
        assert body["resourceType"] == "OperationOutcome"
        return
    assert_valid_cds_response(body)
    got = sorted((c["source"]["topic"]["code"], c["indicator"]) for c in body["cards"])
    expected = sorted((c["topic"], c["indicator"]) for c in scenario["expect"]["cards"])
    assert got == expected, f"{scenario['description']}\n{[c['summary'] for c in body['cards']]}"
    by_topic = {c["source"]["topic"]["code"]: c for c in body["cards"]}
    for wanted in scenario["expect"]["cards"]:
        card = by_topic[wanted["topic"]]
        for text in wanted.get("detailContains", []):
            assert text in card["detail"], f"{wanted['topic']}: {text!r} not in detail:\n{card['detail']}"
        missing_actions = set(wanted.get("actions", [])) - _action_names(card)
        assert not missing_actions, f"{wanted['topic']}: missing actions {missing_actions}"
