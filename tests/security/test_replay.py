"""A JWT id is accepted once: across threads, worker processes and instances sharing the store."""

from __future__ import annotations

import multiprocessing
import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from cds_service.protocol.replay import ReplayGuard, seen_tokens
from cds_service.store.engine import create_store_engine
from tests.security.replay_worker import claim_tokens

ISS = "https://ehr.example.org"
POSTGRES_URL = os.environ.get("DENOSUMAB_CDS_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'replay.sqlite3'}"
    if not POSTGRES_URL:
        pytest.skip("DENOSUMAB_CDS_TEST_POSTGRES_URL is not set")
    engine = create_store_engine(POSTGRES_URL)
    seen_tokens.drop(engine, checkfirst=True)
    engine.dispose()
    return POSTGRES_URL


class FakeTime:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_first_use_then_replay(store_url):
    guard = ReplayGuard.for_store(store_url)
    assert guard.first_use(ISS, "jti-1", 2_000_000_000)
    assert not guard.first_use(ISS, "jti-1", 2_000_000_000)
    assert guard.first_use("https://other-ehr.example.org", "jti-1", 2_000_000_000)  # ids are per issuer


def test_a_second_guard_on_the_same_store_sees_the_first_ones_tokens(store_url):
    assert ReplayGuard.for_store(store_url).first_use(ISS, "jti-shared", 2_000_000_000)
    assert not ReplayGuard.for_store(store_url).first_use(ISS, "jti-shared", 2_000_000_000)


def test_expired_ids_are_purged_and_may_come_back(store_url):
    clock = FakeTime(1_000_000)
    guard = ReplayGuard(create_store_engine(store_url), clock=clock)
    assert guard.first_use(ISS, "old", 1_000_100)
    assert guard.first_use(ISS, "fresh", 1_000_900)
    clock.now = 1_000_500  # "old" expired: its token is refused on exp anyway, the row may go
    assert guard.first_use(ISS, "old", 1_000_800)
    assert not guard.first_use(ISS, "fresh", 1_000_900)
    guard._next_purge = 0  # noqa: SLF001 - force the periodic purge now
    clock.now = 1_000_850
    guard.first_use(ISS, "trigger", 1_001_000)
    with guard.engine.connect() as connection:
        remaining = connection.execute(select(seen_tokens.c.jti).order_by(seen_tokens.c.jti)).scalars().all()
    assert remaining == ["fresh", "trigger"]


def test_threads_racing_with_one_token(store_url):
    guard = ReplayGuard.for_store(store_url)
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda _: guard.first_use(ISS, "raced", 2_000_000_000), range(32)))
    assert outcomes.count(True) == 1


def test_processes_racing_with_the_same_tokens_each_token_wins_once(store_url):
    jtis = [str(uuid.uuid4()) for _ in range(150)]
    ReplayGuard.for_store(store_url)  # table created once, as at service start-up
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(3), context.Queue()
    processes = [context.Process(target=claim_tokens, args=(store_url, jtis, start, results)) for _ in range(3)]
    for process in processes:
        process.start()
    try:
        accepted = [results.get(timeout=60) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    assert sorted(jti for batch in accepted for jti in batch) == sorted(jtis)
    engine = create_store_engine(store_url)
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(seen_tokens)).scalar_one() == len(jtis)
