"""The card ledger: every card issued is on record, joined to its rule, without the patient in clear."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select, text

from cds_service.config import ConfigError, Settings, settings_from_toml
from cds_service.store.schema import issued_card, issued_suggestion, metadata
from tests.conftest import DEFAULT_AS_OF
from tests.feedback.conftest import card_by_topic, issue_cards, make_card_app, order_sign_request

KEY = "k" * 40


def engine_of(app):
    return app.extensions["denosumab_cds_feedback"].engine


def ledger_rows(app) -> tuple[list, list]:
    with engine_of(app).connect() as connection:
        cards = connection.execute(select(issued_card).order_by(issued_card.c.topic)).all()
        suggestions = connection.execute(
            select(issued_suggestion).order_by(issued_suggestion.c.card_uuid, issued_suggestion.c.position)
        ).all()
    return cards, suggestions


def hash_of(app, **request_args) -> str:
    cards = issue_cards(app.test_client(), **request_args)
    with engine_of(app).connect() as connection:
        return connection.execute(
            select(issued_card.c.patient_hash).where(issued_card.c.card_uuid == cards[0]["uuid"])
        ).scalar_one()


def test_every_card_is_recorded_with_what_feedback_joins_on(card_app):
    request = order_sign_request()
    response = card_app.test_client().post("/cds-services/order-sign", json=request)
    cards = response.get_json()["cards"]
    rows, suggestions = ledger_rows(card_app)
    assert sorted((r.card_uuid, r.topic, r.indicator) for r in rows) == sorted(
        (c["uuid"], c["source"]["topic"]["code"], c["indicator"]) for c in cards
    )
    for row in rows:
        assert (row.service_id, row.hook, row.hook_instance) == ("order-sign", "order-sign", request["hookInstance"])
        assert row.issued_at == DEFAULT_AS_OF
    monitoring = card_by_topic(cards, "calcium-monitoring")
    recorded = [(s.suggestion_uuid, s.position, s.label) for s in suggestions if s.card_uuid == monitoring["uuid"]]
    assert recorded == [(s["uuid"], i, s["label"]) for i, s in enumerate(monitoring["suggestions"])]


def test_the_patient_is_never_stored_in_clear(card_app):
    issue_cards(card_app.test_client(), patient_id="pat-wm-0001")
    with engine_of(card_app).connect() as connection:
        everything = [
            value
            for table in metadata.sorted_tables
            for row in connection.execute(select(table))
            for value in row
        ]
    assert not any("pat-wm-0001" in str(value) for value in everything)
    patient_hash = ledger_rows(card_app)[0][0].patient_hash
    assert len(patient_hash) == 64 and int(patient_hash, 16) >= 0


def test_the_same_patient_hashes_alike_and_others_differently(card_app):
    first = hash_of(card_app, patient_id="pat-wm-0001")
    assert hash_of(card_app, patient_id="pat-wm-0001") == first
    assert hash_of(card_app, patient_id="pat-wm-0002") != first
    # Patient ids are only unique within one EHR's FHIR server.
    assert hash_of(card_app, patient_id="pat-wm-0001", fhir_server="https://other.example.org/fhir") != first


def test_trial_mode_generates_one_random_key_per_store(tmp_path, monkeypatch):
    first_store = make_card_app()
    same_store = make_card_app()
    assert hash_of(first_store) == hash_of(same_store)  # persisted, shared by every worker
    monkeypatch.setenv("DENOSUMAB_CDS_STORE_URL", f"sqlite:///{tmp_path / 'another.sqlite3'}")
    assert hash_of(make_card_app()) != hash_of(first_store)  # not a constant baked into the code


def test_a_configured_key_is_used_instead(tmp_path, monkeypatch):
    configured = hash_of(make_card_app(Settings(patient_hash_key=KEY)))
    monkeypatch.setenv("DENOSUMAB_CDS_STORE_URL", f"sqlite:///{tmp_path / 'another.sqlite3'}")
    assert hash_of(make_card_app(Settings(patient_hash_key=KEY))) == configured  # same key, another store
    monkeypatch.setenv("DENOSUMAB_CDS_PATIENT_HASH_KEY", KEY)
    assert hash_of(make_card_app()) == configured
    with engine_of(make_card_app()).connect() as connection:
        stored = connection.execute(text("SELECT name FROM store_meta")).scalars().all()
    assert "patient_hash_key" not in stored  # a configured key is never written to the store


def test_key_from_the_configuration_file_and_too_short_keys():
    settings = settings_from_toml(
        {"auth": {"require_jwt": False}, "store": {"patient_hash_key": KEY}}, base_dir=".", source_path=None
    )
    assert settings.patient_hash_key == KEY
    assert KEY not in repr(settings)
    with pytest.raises(ConfigError, match="at least 32"):
        make_card_app(Settings(patient_hash_key="short"))


def test_production_without_a_key_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="cds_service.store.ledger"):
        make_card_app(Settings(trial_mode=False))
    assert "patient_hash_key" in caplog.text


def test_no_cards_no_rows():
    app = make_card_app(findings=())
    response = app.test_client().post("/cds-services/order-sign", json=order_sign_request())
    assert response.get_json() == {"cards": []}
    assert ledger_rows(app) == ([], [])


def test_a_failing_store_does_not_stop_the_cards(card_app, caplog):
    with engine_of(card_app).begin() as connection:
        connection.execute(text("DROP TABLE issued_suggestion"))
    with caplog.at_level(logging.ERROR, logger="cds_service.store.ledger"):
        cards = issue_cards(card_app.test_client())
    assert len(cards) == 2
    assert "card ledger write failed" in caplog.text
    assert "pat-wm-0001" not in caplog.text
    with engine_of(card_app).connect() as connection:  # the cards' rows were rolled back with them
        assert connection.execute(select(issued_card)).all() == []
