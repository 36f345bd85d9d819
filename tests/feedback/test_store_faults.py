"""Store faults (issue 16, cases 10-12): the service recovers by itself when the store works
again, a SQLite file removed or replaced under it is never written to silently, and while the
store is down the safety cards still go out."""

from __future__ import annotations

import logging
import shutil
import socket
import threading
import time
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from cds_service.config import Settings
from cds_service.store import create_store_engine
from tests.feedback.conftest import _postgres_url, accepted, issue_cards, make_card_app, order_sign_request
from tests.security.ehr import PUBLIC_BASE_URL, bearer, claims_for, jwt_settings, write_jwks

RECOVERY_SECONDS = 8.0  # the reconnect pause (3 s) and a margin
FEEDBACK_PATH = "/cds-services/order-sign/feedback"


def _feedback_status(client, card) -> int:
    return client.post(FEEDBACK_PATH, json={"feedback": [accepted(card, 0)]}).status_code


def _until_answered(client, card, timeout: float = RECOVERY_SECONDS) -> int:
    """The feedback status once it is no longer 503, or 503 if it stays so for `timeout` seconds."""
    until = time.monotonic() + timeout
    while True:
        status = _feedback_status(client, card)
        if status != 503 or time.monotonic() > until:
            return status
        time.sleep(0.1)


@pytest.fixture
def store_dir(tmp_path):
    directory = tmp_path / "var"
    directory.mkdir()
    return directory


def test_sqlite_store_moved_away_is_refused_then_recovered_when_it_is_back(store_dir, caplog):
    app = make_card_app(Settings(store_url=f"sqlite:///{store_dir / 'cds.sqlite3'}"))
    client = app.test_client()
    before, during, after = (issue_cards(client) for _ in range(3))
    assert _feedback_status(client, before[0]) == 200

    aside = store_dir.with_name("var-aside")
    store_dir.rename(aside)  # the store is unusable (as when its volume is unmounted)
    with caplog.at_level(logging.ERROR):
        response = client.post(FEEDBACK_PATH, json={"feedback": [accepted(during[0], 0)]})
        assert response.status_code == 503
        assert response.headers["Retry-After"]
        # A hook call still answers with its cards; the ledger write is skipped and logged.
        cards = issue_cards(client)
    assert cards
    assert any("card ledger write failed" in r.getMessage() for r in caplog.records)

    aside.rename(store_dir)  # the store works again
    assert _until_answered(client, after[0]) == 200
    assert _feedback_status(client, during[0]) == 200


def test_sqlite_store_removed_is_never_acknowledged_nor_written_to_a_new_file(store_dir, caplog):
    app = make_card_app(Settings(store_url=f"sqlite:///{store_dir / 'cds.sqlite3'}"))
    client = app.test_client()
    cards = [issue_cards(client) for _ in range(3)]
    shutil.rmtree(store_dir)
    with caplog.at_level(logging.ERROR):
        assert [_feedback_status(client, issued[0]) for issued in cards] == [503, 503, 503]
    assert any("removed or replaced" in r.getMessage() for r in caplog.records)
    store_dir.mkdir()  # an empty directory again: a new file there would hold none of the ledger
    assert _feedback_status(client, cards[0][0]) == 503
    assert not (store_dir / "cds.sqlite3").exists() or (store_dir / "cds.sqlite3").stat().st_size == 0


def test_with_the_sqlite_store_gone_a_signed_hook_call_still_gets_its_cards(tmp_path, store_dir, caplog):
    from tests.security.ehr import EhrKey

    key = EhrKey("ES384")
    settings = jwt_settings(write_jwks(tmp_path / "jwks.json", key), store_url=f"sqlite:///{store_dir / 'cds.sqlite3'}")
    client = make_card_app(settings).test_client()
    hook = "/cds-services/order-sign"

    store_dir.rename(store_dir.with_name("gone"))
    token = key.sign(claims_for(PUBLIC_BASE_URL + hook))
    with caplog.at_level(logging.WARNING):
        response = client.post(hook, json=order_sign_request(), headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json()["cards"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("replay protection degraded" in m for m in messages)
    assert any("card ledger write failed" in m for m in messages)
    assert client.post(hook, json=order_sign_request(), headers=bearer(token)).status_code == 401  # replay, still refused
    feedback_path = hook + "/feedback"
    response = client.post(feedback_path, json={"feedback": [{"card": str(uuid.uuid4()), "outcome": "overridden",
                                                               "outcomeTimestamp": "2026-11-25T15:02:00Z"}]},
                           headers=bearer(key.sign(claims_for(PUBLIC_BASE_URL + feedback_path))))
    assert response.status_code == 503 and response.headers["Retry-After"]


@pytest.fixture
def closable_postgres_database():
    """A PostgreSQL database of its own for one test, and a switch that closes it to connections
    (cutting the open ones) and opens it again: the store going away and coming back."""
    base = _postgres_url()
    database = f"cds_fault_{uuid.uuid4().hex[:10]}"
    admin = create_store_engine(base).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        if not connection.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar():
            pytest.skip("needs a superuser to close a test database to connections")
        connection.execute(text(f'CREATE DATABASE "{database}"'))

    def available(yes: bool) -> None:
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(yes).lower()}'))
            if not yes:
                connection.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db"), {"db": database})

    try:
        yield base.rsplit("/", 1)[0] + f"/{database}", available
    finally:
        available(False)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{database}"'))
        admin.dispose()


@pytest.mark.postgres
def test_postgresql_store_unreachable_then_back_recovers_by_itself(closable_postgres_database):
    url, available = closable_postgres_database
    client = make_card_app(Settings(store_url=url)).test_client()
    before, during = issue_cards(client), issue_cards(client)
    assert _feedback_status(client, before[0]) == 200
    available(False)
    assert _feedback_status(client, during[0]) == 503
    assert issue_cards(client)  # cards still go out
    available(True)
    assert _until_answered(client, during[0]) == 200


@pytest.mark.postgres
def test_with_postgresql_down_a_signed_hook_call_still_gets_its_cards(tmp_path, closable_postgres_database, caplog):
    from tests.security.ehr import EhrKey

    url, available = closable_postgres_database
    key = EhrKey("ES384")
    client = make_card_app(jwt_settings(write_jwks(tmp_path / "jwks.json", key), store_url=url)).test_client()
    hook = "/cds-services/order-sign"
    available(False)
    token = key.sign(claims_for(PUBLIC_BASE_URL + hook))
    with caplog.at_level(logging.WARNING):
        response = client.post(hook, json=order_sign_request(), headers=bearer(token))
    assert response.status_code == 200 and response.get_json()["cards"]
    assert any("replay protection degraded" in r.getMessage() for r in caplog.records)
    assert client.post(hook, json=order_sign_request(), headers=bearer(token)).status_code == 401
    # A JWT whose exp overflows BIGINT is a 401 here too (it was a misleading 503 on PostgreSQL).
    available(True)
    huge = key.sign(claims_for(PUBLIC_BASE_URL + hook) | {"exp": 2**63})
    assert client.post(hook, json=order_sign_request(), headers=bearer(huge)).status_code == 401


def test_an_unreachable_database_host_costs_one_connect_timeout_then_fails_fast():
    """A database host that accepts TCP but never answers (as behind a dropped route): the first
    connect waits for its timeout, the next ones within the pause fail at once, so hook calls
    (replay check, ledger write) do not each wait for it."""
    pytest.importorskip("psycopg")
    silent = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_say_nothing():
        silent.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(silent.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept_and_say_nothing, daemon=True)
    thread.start()
    engine = create_store_engine(f"postgresql://cds@127.0.0.1:{silent.getsockname()[1]}/cds?connect_timeout=1")
    try:
        timings = []
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(OperationalError):
                with engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
            timings.append(time.monotonic() - started)
        assert timings[0] >= 0.9  # waited for the connect timeout once (libpq: 2 s at least)
        assert max(timings[1:]) < 0.2
        assert len(accepted) == 1
    finally:
        stop.set()
        thread.join(timeout=5)
        engine.dispose()
        for sock in accepted:
            sock.close()
        silent.close()
