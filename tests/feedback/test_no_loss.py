"""Nothing acknowledged is lost: 8 EHR clients send 2,400 feedback entries to `denosumab-cds
serve` (several workers); the whole server is killed with SIGKILL part-way and restarted; the
clients retry what did not get an answer, as EHRs do. Afterwards every entry that got a 200 is in
the store, and none is there twice (clients also resend some acknowledged batches)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests
from sqlalchemy import select

from cds_service.config import Settings
from cds_service.store.ledger import IssuedCard, open_store
from cds_service.store.schema import feedback

CLIENTS = 8
CARDS = 300
ENTRIES_PER_CARD = 8  # 2,400 entries: each card accepted and overridden at different moments
WORKERS = 3
DEADLINE_SECONDS = 100
START = datetime(2026, 11, 25, 15, 0, tzinfo=timezone.utc)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`denosumab-cds serve` in its own process group, so that one SIGKILL takes every worker."""

    def __init__(self, port: int, store_url: str, log_path):
        self.port, self.store_url, self.log_path = port, store_url, log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "DENOSUMAB_CDS_STORE_URL": self.store_url}
        env.pop("DENOSUMAB_CDS_CONFIG", None)  # trial mode: 127.0.0.1, no JWT
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cds_service.cli", "serve", "--port", str(self.port), "--workers", str(WORKERS)],
                env=env, stdout=log, stderr=log, start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the server exited; see {self.log_path}"
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/cds-services", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the server did not come up in 30 s; see {self.log_path}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=10)
        if self.process is not None:
            try:  # workers orphaned by the master's death die with the group too
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def seed_cards(store_url: str) -> list[IssuedCard]:
    """Cards as the service issues them (the ledger is what makes feedback acceptable)."""
    ledger = open_store(Settings(store_url=store_url)).ledger
    cards = [
        IssuedCard(str(uuid.uuid4()), "calcium-monitoring", "warning", ((str(uuid.uuid4()), "Order serum calcium"),))
        for _ in range(CARDS)
    ]
    for start in range(0, CARDS, 50):
        ledger.record(
            cards[start:start + 50], service_id="order-sign", hook="order-sign", hook_instance=str(uuid.uuid4()),
            patient_hash=ledger.patient_hash(None, f"pat-{start}"), issued_at=START,
        )
    ledger.engine.dispose()
    return cards


def entries_for(cards: list[IssuedCard]) -> list[dict]:
    entries = []
    for card in cards:
        suggestion = card.suggestions[0][0]
        for n in range(ENTRIES_PER_CARD):
            at = (START + timedelta(minutes=1, seconds=n)).isoformat().replace("+00:00", "Z")
            if n % 2:
                entries.append({"card": card.card_uuid, "outcome": "overridden", "outcomeTimestamp": at})
            else:
                entries.append({"card": card.card_uuid, "outcome": "accepted", "acceptedSuggestions": [{"id": suggestion}], "outcomeTimestamp": at})
    return entries


def entry_key(card_uuid: str, outcome_at) -> tuple[str, str]:
    if isinstance(outcome_at, str):
        outcome_at = datetime.fromisoformat(outcome_at)
    return card_uuid, outcome_at.astimezone(timezone.utc).isoformat()


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_no_acknowledged_feedback_is_lost_when_the_server_is_killed(backend_url, tmp_path):
    cards = seed_cards(backend_url)
    entries = entries_for(cards)
    assert len(entries) >= 2000
    server = Server(free_port(), backend_url, tmp_path / "server.log")
    acknowledged: set[tuple[str, str]] = set()
    lock = threading.Lock()
    failures = []
    unanswered = [0]
    deadline = time.monotonic() + DEADLINE_SECONDS

    def client(number: int) -> None:
        mine = entries[number::CLIENTS]
        session = [requests.Session()]

        def send_until_acknowledged(batch: list[dict]) -> dict:
            while True:  # an EHR retries a batch until it is acknowledged
                assert time.monotonic() < deadline, "clients ran out of time"
                try:
                    response = session[0].post(
                        f"http://127.0.0.1:{server.port}/cds-services/order-sign/feedback",
                        json={"feedback": batch}, timeout=10,
                    )
                except requests.RequestException:
                    with lock:
                        unanswered[0] += 1
                    session[0] = requests.Session()
                    time.sleep(0.05)
                    continue
                if response.status_code == 200:
                    return response.json()
                assert response.status_code >= 500, response.text  # a 4xx would be our bug
                time.sleep(0.05)

        position, size, sent = 0, 1, 0
        try:
            while position < len(mine):
                batch = mine[position:position + size]
                send_until_acknowledged(batch)
                with lock:
                    acknowledged.update(entry_key(e["card"], e["outcomeTimestamp"]) for e in batch)
                sent += 1
                if sent % 4 == 0:  # EHRs do send the same feedback again: it must count once
                    assert send_until_acknowledged(batch)["alreadyRecorded"] == len(batch)
                position += size
                size = size % 5 + 1  # batches of 1 to 5 entries
        except BaseException as error:  # reported by the main thread
            failures.append(error)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
    try:
        server.start()
        for thread in threads:
            thread.start()
        while len(acknowledged) < len(entries) * 0.4 and not failures and time.monotonic() < deadline:
            time.sleep(0.01)
        with lock:
            acknowledged_before_kill = set(acknowledged)
        server.kill()
        time.sleep(0.3)  # clients meet a dead server for a moment
        server.start()
        for thread in threads:
            thread.join(timeout=max(1.0, deadline - time.monotonic()))
        assert not failures, failures
        assert not any(thread.is_alive() for thread in threads), "clients did not finish in time"
    finally:
        server.kill()

    assert 0 < len(acknowledged_before_kill) < len(entries)  # killed part-way
    assert unanswered[0] > 0  # some requests really did hit the dead server
    engine = open_store(Settings(store_url=backend_url)).engine
    with engine.connect() as connection:
        stored = [entry_key(row.card_uuid, row.outcome_at) for row in connection.execute(select(feedback))]
    engine.dispose()
    assert len(stored) == len(set(stored)), "an entry was stored twice"
    assert acknowledged_before_kill <= set(stored), "an entry acknowledged before the kill was lost"
    assert set(stored) == acknowledged == {entry_key(e["card"], e["outcomeTimestamp"]) for e in entries}
