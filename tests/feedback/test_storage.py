"""The store on each back-end: schema set up at start-up by any number of processes at once,
batches all-or-nothing, and the same feedback from racing clients stored once."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select, update

from cds_service.config import ConfigError, Settings
from cds_service.store.ledger import open_store
from cds_service.store.schema import SCHEMA_VERSION, feedback, issued_card, store_meta
from tests.feedback.conftest import accepted, issue_cards, make_card_app, overridden

FEEDBACK = "/cds-services/order-sign/feedback"


def count(engine, table) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def test_instances_starting_together_set_up_one_schema(backend_url):
    with ThreadPoolExecutor(max_workers=4) as pool:
        stores = list(pool.map(lambda _: open_store(Settings(store_url=backend_url)), range(4)))
    keys = {store.ledger.patient_hash_key for store in stores}
    assert len(keys) == 1  # every instance hashes patients with the same generated key
    with stores[0].engine.connect() as connection:
        meta = dict(connection.execute(select(store_meta.c.name, store_meta.c.value)).all())
    assert meta["schema_version"] == str(SCHEMA_VERSION)
    assert open_store(Settings(store_url=backend_url)).ledger.patient_hash_key in keys  # and after a restart


def test_sqlite_files_opened_by_many_workers_at_once_all_open(tmp_path):
    # A new SQLite file is switched to WAL by whichever worker comes first; SQLite refuses the
    # others at once ("database is locked") instead of waiting, so one try per file is not enough
    # to show that every worker opens it: race on twenty new files.
    for attempt in range(20):
        url = f"sqlite:///{tmp_path / f'race-{attempt}.sqlite3'}"
        with ThreadPoolExecutor(max_workers=6) as pool:
            stores = list(pool.map(lambda _: open_store(Settings(store_url=url)), range(6)))
        assert len({store.ledger.patient_hash_key for store in stores}) == 1


def test_a_store_from_a_newer_release_is_refused(backend_url):
    store = open_store(Settings(store_url=backend_url))
    with store.engine.begin() as connection:
        connection.execute(update(store_meta).where(store_meta.c.name == "schema_version").values(value="99"))
    with pytest.raises(ConfigError, match="newer than this release"):
        open_store(Settings(store_url=backend_url))


def test_an_unreachable_store_stops_start_up_with_a_clear_message(tmp_path):
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    with pytest.raises(ConfigError, match="cannot open the store"):
        open_store(Settings(store_url=f"sqlite:///{blocked}/store.sqlite3"))


def test_a_rejected_batch_stores_nothing(backend_url):
    app = make_card_app(Settings(store_url=backend_url))
    client = app.test_client()
    cards = issue_cards(client)
    batch = [accepted(cards[0], 0), overridden(cards[1]), {**overridden(cards[1]), "card": str(uuid.uuid4())}]
    assert client.post(FEEDBACK, json={"feedback": batch}).status_code == 400
    engine = app.extensions["denosumab_cds_feedback"].engine
    assert count(engine, feedback) == 0
    assert client.post(FEEDBACK, json={"feedback": batch[:2]}).status_code == 200
    assert count(engine, feedback) == 2
    assert count(engine, issued_card) == 2


def test_the_same_feedback_from_racing_clients_is_stored_once(backend_url):
    app = make_card_app(Settings(store_url=backend_url))
    cards = [card for _ in range(5) for card in issue_cards(app.test_client())]
    batch = {"feedback": [accepted(card, 0) for card in cards]}

    def send(_):
        response = app.test_client().post(FEEDBACK, json=batch)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()["recorded"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        recorded = list(pool.map(send, range(16)))
    assert sum(recorded) == len(cards)
    assert count(app.extensions["denosumab_cds_feedback"].engine, feedback) == len(cards)
