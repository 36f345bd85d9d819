"""POST /cds-services/{id}/feedback as an EHR uses it: valid batches stored once, bad ones
refused whole with an OperationOutcome that points at the bad entry."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from cds_service.feedback import FeedbackReceiver
from cds_service.store.schema import feedback
from tests.feedback.conftest import accepted, card_by_topic, issue_cards, overridden

FEEDBACK = "/cds-services/order-sign/feedback"


def stored_feedback(app) -> list:
    engine = app.extensions["denosumab_cds_feedback"].engine
    with engine.connect() as connection:
        return connection.execute(select(feedback).order_by(feedback.c.id)).all()


def expressions(response) -> list[str]:
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    return [e for issue in body["issue"] for e in issue.get("expression", [])]


def test_accepted_and_overridden_feedback_is_stored(card_app, card_client):
    cards = issue_cards(card_client)
    monitoring, dental = card_by_topic(cards, "calcium-monitoring"), card_by_topic(cards, "dental-clearance")
    response = card_client.post(
        FEEDBACK,
        json={"feedback": [accepted(monitoring, 0), overridden(dental, reason=1, comment="Seen by her dentist in Oslo last month")]},
    )
    assert response.status_code == 200
    assert response.get_json() == {"received": 2, "recorded": 2, "alreadyRecorded": 0}
    rows = stored_feedback(card_app)
    assert [(r.card_uuid, r.outcome) for r in rows] == [(monitoring["uuid"], "accepted"), (dental["uuid"], "overridden")]
    assert rows[0].accepted_suggestions == f'["{monitoring["suggestions"][0]["uuid"]}"]'
    assert rows[1].override_reason_code == dental["overrideReasons"][1]["code"]
    assert rows[1].has_user_comment is True
    # The free-text comment may name the patient: it is not kept anywhere.
    assert "Oslo" not in repr(rows)


def test_the_same_feedback_sent_twice_counts_once(card_app, card_client):
    card = issue_cards(card_client)[0]
    batch = {"feedback": [accepted(card, 0, 1)]}
    assert card_client.post(FEEDBACK, json=batch).get_json()["recorded"] == 1
    again = card_client.post(FEEDBACK, json=batch)
    assert again.status_code == 200
    assert again.get_json() == {"received": 1, "recorded": 0, "alreadyRecorded": 1}
    # The same instant written another way, suggestions in another order: still the same feedback.
    same = accepted(card, 1, 0, at="2026-11-25t16:01:00+01:00")
    assert card_client.post(FEEDBACK, json={"feedback": [same, same]}).get_json()["recorded"] == 0
    assert len(stored_feedback(card_app)) == 1


def test_a_later_different_outcome_for_the_same_card_is_kept(card_app, card_client):
    card = card_by_topic(issue_cards(card_client), "dental-clearance")
    card_client.post(FEEDBACK, json={"feedback": [overridden(card, reason=0, at="2026-11-25T15:01:00Z")]})
    response = card_client.post(FEEDBACK, json={"feedback": [accepted(card, 0, at="2026-11-25T15:20:00Z")]})
    assert response.get_json()["recorded"] == 1
    assert [r.outcome for r in stored_feedback(card_app)] == ["overridden", "accepted"]


def test_feedback_for_a_card_never_issued_is_rejected_and_nothing_is_stored(card_app, card_client):
    card = issue_cards(card_client)[0]
    unknown = str(uuid.uuid4())
    batch = {"feedback": [accepted(card, 0), {**overridden(card), "card": unknown}]}
    response = card_client.post(FEEDBACK, json=batch)
    assert response.status_code == 400
    issue = response.get_json()["issue"][0]
    assert issue["code"] == "not-found"
    assert issue["expression"] == ["feedback[1].card"]
    assert unknown in issue["diagnostics"] and "no card" in issue["diagnostics"]
    assert stored_feedback(card_app) == []  # the valid first entry was not stored either


def test_feedback_must_go_to_the_service_that_issued_the_card(card_app, card_client):
    card = issue_cards(card_client, service_id="order-select")[0]
    response = card_client.post(FEEDBACK, json={"feedback": [accepted(card, 0)]})
    assert response.status_code == 400
    assert "/cds-services/order-select/feedback" in response.get_json()["issue"][0]["diagnostics"]
    assert card_client.post("/cds-services/order-select/feedback", json={"feedback": [accepted(card, 0)]}).status_code == 200


def test_an_accepted_suggestion_must_belong_to_the_card(card_client):
    cards = issue_cards(card_client)
    monitoring, dental = card_by_topic(cards, "calcium-monitoring"), card_by_topic(cards, "dental-clearance")
    entry = accepted(monitoring, 0)
    entry["acceptedSuggestions"] = [{"id": dental["suggestions"][0]["uuid"]}]
    response = card_client.post(FEEDBACK, json={"feedback": [entry]})
    assert response.status_code == 400
    assert expressions(response) == ["feedback[0].acceptedSuggestions"]


@pytest.mark.parametrize(
    ("change", "expression"),
    [
        (lambda e: e.update(outcome="dismissed"), "feedback[2].outcome"),
        (lambda e: e.pop("outcome"), "feedback[2].outcome"),
        (lambda e: e.update(card="not-a-uuid"), "feedback[2].card"),
        (lambda e: e.pop("card"), "feedback[2].card"),
        (lambda e: e.pop("outcomeTimestamp"), "feedback[2].outcomeTimestamp"),
        (lambda e: e.update(outcomeTimestamp="2026-11-25T15:01:00"), "feedback[2].outcomeTimestamp"),  # no zone
        (lambda e: e.update(outcomeTimestamp="25/11/2026"), "feedback[2].outcomeTimestamp"),
        (lambda e: e.update(outcomeTimestamp="2026-11-25"), "feedback[2].outcomeTimestamp"),
        (lambda e: e.update(outcomeTimestamp=1764082860), "feedback[2].outcomeTimestamp"),
        (lambda e: e.pop("acceptedSuggestions"), "feedback[2].acceptedSuggestions"),
        (lambda e: e.update(acceptedSuggestions=[]), "feedback[2].acceptedSuggestions"),
        (lambda e: e.update(acceptedSuggestions=[{"id": 7}]), "feedback[2].acceptedSuggestions[0].id"),
        (lambda e: e.update(acceptedSuggestions=["x"]), "feedback[2].acceptedSuggestions[0]"),
        (lambda e: e.update(overrideReason={"reason": {"system": "urn:x", "code": "y"}}), "feedback[2].overrideReason"),
    ],
)
def test_a_bad_entry_is_named_in_the_operation_outcome(card_app, card_client, change, expression):
    card = issue_cards(card_client)[0]
    entries = [accepted(card, 0), overridden(card, at="2026-11-25T15:05:00Z"), accepted(card, 1, at="2026-11-25T15:09:00Z")]
    change(entries[2])
    response = card_client.post(FEEDBACK, json={"feedback": entries})
    assert response.status_code == 400
    assert expressions(response) == [expression]
    assert stored_feedback(card_app) == []


@pytest.mark.parametrize(
    ("override_reason", "expression"),
    [
        ("no reason", "feedback[0].overrideReason"),
        ({"reason": "calcium-ordered"}, "feedback[0].overrideReason.reason"),
        ({"reason": {"system": "urn:x"}}, "feedback[0].overrideReason.reason.code"),
        ({"reason": {"system": "urn:x", "code": ""}}, "feedback[0].overrideReason.reason.code"),
        ({"userComment": 12}, "feedback[0].overrideReason.userComment"),
    ],
)
def test_a_malformed_override_reason_is_named(card_client, override_reason, expression):
    card = issue_cards(card_client)[0]
    entry = {**overridden(card), "overrideReason": override_reason}
    response = card_client.post(FEEDBACK, json={"feedback": [entry]})
    assert response.status_code == 400
    assert expressions(response) == [expression]


def test_an_override_with_accepted_suggestions_is_contradictory(card_client):
    card = issue_cards(card_client)[0]
    entry = {**overridden(card), "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}]}
    response = card_client.post(FEEDBACK, json={"feedback": [entry]})
    assert response.status_code == 400
    assert expressions(response) == ["feedback[0].acceptedSuggestions"]


def test_an_override_from_the_ehrs_own_reason_list_is_accepted(card_app, card_client):
    # CDS Hooks lets the client offer its own reasons, not only the card's.
    card = issue_cards(card_client)[0]
    entry = {**overridden(card), "overrideReason": {"reason": {"system": "urn:oid:1.2.840.114350.1", "code": "17"}}}
    assert card_client.post(FEEDBACK, json={"feedback": [entry]}).status_code == 200
    assert stored_feedback(card_app)[0].override_reason_code == "17"


def test_every_bad_entry_is_listed_at_once(card_client):
    card = issue_cards(card_client)[0]
    entries = [{**accepted(card, 0), "outcome": "maybe"}, accepted(card, 0), {"card": card["uuid"]}]
    response = card_client.post(FEEDBACK, json={"feedback": entries})
    found = expressions(response)
    assert "feedback[0].outcome" in found
    assert {"feedback[2].outcome", "feedback[2].outcomeTimestamp"} <= set(found)
    assert not any(e.startswith("feedback[1]") for e in found)


@pytest.mark.parametrize(
    "body",
    [{}, {"feedback": {}}, {"feedback": []}, [], {"feedback": [None]}, {"feedback": ["x"]}],
    ids=["no-feedback", "feedback-object", "empty", "array-body", "null-entry", "string-entry"],
)
def test_malformed_bodies_are_400(card_client, body):
    response = card_client.post(FEEDBACK, json=body)
    assert response.status_code == 400
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_invalid_json_unknown_service_and_oversized_batches(card_client):
    assert card_client.post(FEEDBACK, data="{nope", content_type="application/json").status_code == 400
    assert card_client.post("/cds-services/no-such-service/feedback", json={"feedback": []}).status_code == 404
    card = issue_cards(card_client)[0]
    entries = [accepted(card, 0, at=f"2026-11-25T15:{i // 60:02d}:{i % 60:02d}Z") for i in range(1001)]
    response = card_client.post(FEEDBACK, json={"feedback": entries})
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["code"] == "too-costly"


def test_a_large_batch_is_stored_in_one_go(card_app, card_client):
    cards = [card for _ in range(20) for card in issue_cards(card_client)]
    entries = [accepted(card, 0) if i % 2 else overridden(card, reason=0) for i, card in enumerate(cards)]
    response = card_client.post(FEEDBACK, json={"feedback": entries})
    assert response.get_json() == {"received": 40, "recorded": 40, "alreadyRecorded": 0}
    engine = card_app.extensions["denosumab_cds_feedback"].engine
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(feedback)).scalar_one() == 40


def test_a_store_that_is_down_answers_503_so_the_ehr_retries(card_client, monkeypatch):
    card = issue_cards(card_client)[0]

    def store_down(*_args):
        raise OperationalError("SELECT", {}, Exception("database is locked"))

    with monkeypatch.context() as patch:
        patch.setattr(FeedbackReceiver, "_check_against_ledger", staticmethod(store_down))
        response = card_client.post(FEEDBACK, json={"feedback": [accepted(card, 0)]})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.get_json()["issue"][0]["code"] == "transient"
    assert card_client.post(FEEDBACK, json={"feedback": [accepted(card, 0)]}).get_json()["recorded"] == 1
