"""Wording of every card the fixtures produce (card catalog v2 and the team's card standards):
suggestion labels under 80 characters (EHRs wrap or truncate longer ones), summaries under 140,
intervals in words ("every 6 months", "weekly", never "every 183 days" or "1 days"), and every card
cites its source with a URL."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from tests.conftest import load_scenario, scenario_paths

LABEL_MAX = 80
SUMMARY_MAX = 140
# An interval in days where a calendar word fits ("every 183 days", "every 1 days", "every 7 days").
# An interval in days followed by its calendar words ("every 149 days (about 5 months)") is fine.
EVERY_N_DAYS = re.compile(r"\bevery (\d+) days?\b(?! \(about)|\b(1) days\b", re.IGNORECASE)


def wants_words(days: int) -> bool:
    months = days / 30.4375
    return days == 1 or days % 7 == 0 or (days >= 28 and abs(months - round(months)) <= 0.03 * round(months) + 0.05)

PATHS = scenario_paths()


@pytest.fixture(scope="module")
def responses():
    """Each fixture's response (the cards a user would read), computed once for the module."""
    from cds_service.app import create_app
    from cds_service.config import Settings

    found = {}
    for path in PATHS:
        scenario = load_scenario(path)
        as_of = datetime.fromisoformat(scenario["asOf"])
        app = create_app(Settings(), clock=lambda as_of=as_of: as_of)
        response = app.test_client().post(f"/cds-services/{scenario['service']}", json=scenario["request"])
        if response.status_code == 200:
            found[path.relative_to(path.parents[1]).as_posix()] = response.get_json()["cards"]
    return found


def _cards(responses):
    return [(name, card) for name, cards in responses.items() for card in cards]


def test_the_fixtures_produce_cards_with_suggestions(responses):
    cards = _cards(responses)
    assert len(cards) > 60 and sum(bool(c.get("suggestions")) for _, c in cards) > 30


def test_suggestion_labels_are_under_80_characters(responses):
    long = [(name, s["label"]) for name, card in _cards(responses) for s in card.get("suggestions", [])
            if len(s["label"]) >= LABEL_MAX]
    assert not long, long


def test_summaries_are_under_140_characters(responses):
    long = [(name, card["summary"]) for name, card in _cards(responses) if len(card["summary"]) >= SUMMARY_MAX]
    assert not long, long


def test_intervals_are_in_words(responses):
    found = []
    for name, card in _cards(responses):
        texts = [card["summary"], card["detail"]] + [s["label"] for s in card.get("suggestions", [])]
        found += [(name, m.group(0)) for text in texts for m in EVERY_N_DAYS.finditer(text)
                  if wants_words(int(m.group(1) or m.group(2)))]
    assert not found, found


def test_every_card_cites_its_source_with_a_url(responses):
    for name, card in _cards(responses):
        assert card["source"].get("url", "").startswith("https://"), name
        assert "*Source:*" in card["detail"], name


@pytest.mark.parametrize("days, words", [
    (1, "daily"), (7, "weekly"), (14, "every 2 weeks"), (28, "every 4 weeks"), (30, "monthly"),
    (30.4375, "monthly"), (91, "every 3 months"), (84, "every 12 weeks"), (182.6, "every 6 months"), (183, "every 6 months"),
    (180, "every 6 months"), (365, "yearly"), (10, "every 10 days"), (45, "every 45 days"),
    (149, "every 149 days (about 5 months)"), (0.5, "twice daily"),
])
def test_intervals_are_written_in_calendar_words(days, words):
    from cds_service.rules.concepts.regimen import interval_in_words

    assert interval_in_words(days) == words


STANDARD_SYSTEMS = {
    "http://loinc.org", "http://snomed.info/sct", "http://www.nlm.nih.gov/research/umls/rxnorm",
    "http://www.ama-assn.org/go/cpt",
}


def _created(responses):
    for name, card in _cards(responses):
        for suggestion in card.get("suggestions", []):
            for action in suggestion.get("actions", []):
                if action["type"] in ("create", "update"):
                    yield name, card["source"]["topic"]["code"], action["resource"]


def test_every_suggested_order_validates_as_fhir_r4_and_carries_a_standard_code(responses):
    from fhir.resources.R4B import get_fhir_model_class

    created = list(_created(responses))
    assert {"pregnancy", "atypical-femoral-fracture", "dental-clearance"} <= {topic for _, topic, _ in created}
    for name, topic, resource in created:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)  # raises when not valid R4
        concept = resource.get("code") or resource.get("medicationCodeableConcept") or {}
        systems = {coding.get("system") for coding in concept.get("coding", []) if coding.get("code")}
        assert systems & STANDARD_SYSTEMS, (name, topic, concept)
