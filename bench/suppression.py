"""The suppression look-up's cost: `CardLedger.recent_overrides`, the one query a hook call with
cards makes before it answers (cds_service/suppression.py), on a ledger of realistic size.

    python3 -m bench.suppression                           # SQLite in a temporary folder
    python3 -m bench.suppression --postgres postgresql://cds@127.0.0.1:5432/bench   # and PostgreSQL

The ledger: 5,000 patients with 24 cards each (two years of monthly 120 mg doses, a card or two
per dose) = 120,000 cards, every second card overridden (a reason with a period on one in four):
far more override feedback than a real ledger has, so the look-up reads more than it would. Each
timed call asks for one random patient's cards of 3 topics, as a call with 3 cards does; the
plan the database chose is printed (it must use ix_issued_card_patient_topic).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from cds_service.store.ledger import CardLedger, open_engine
from cds_service.store.schema import feedback, issued_card, metadata, migrate

PATIENTS = 5_000
CARDS_PER_PATIENT = 24
TOPICS = ("hypocalcemia-risk", "calcium-monitoring", "dental-clearance", "overdue-dose")
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=timezone.utc)
CALLS = 2_000


def fill(engine, ledger: CardLedger) -> list[str]:
    rng = random.Random(15)
    hashes = [ledger.patient_hash("https://ehr.example.org/fhir/r4", f"pat-{n}") for n in range(PATIENTS)]
    cards, answers = [], []
    for patient_hash in hashes:
        for n in range(CARDS_PER_PATIENT):
            issued_at = NOW - timedelta(days=28 * n, hours=rng.random())
            card_uuid = str(uuid.UUID(int=rng.getrandbits(128)))
            cards.append({
                "card_uuid": card_uuid, "service_id": "order-sign", "hook": "order-sign", "hook_instance": card_uuid,
                "topic": TOPICS[n % len(TOPICS)], "indicator": "warning", "issued_at": issued_at, "patient_hash": patient_hash,
                "status": "issued", "knowledge_version": "bench", "order_keys": uuid.uuid4().hex,
            })
            if n % 2 == 0:
                answers.append({
                    "dedup_key": card_uuid, "card_uuid": card_uuid, "outcome": "overridden",
                    "outcome_at": issued_at + timedelta(minutes=2), "accepted_suggestions": "[]",
                    "override_reason_system": "https://denosumab-cds.org/fhir/CodeSystem/override-reason",
                    "override_reason_code": "nephrology-supervised" if n % 4 == 0 else "benefit-outweighs-risk",
                    "has_user_comment": False, "received_at": issued_at + timedelta(minutes=3),
                })
    with engine.begin() as connection:
        for start in range(0, len(cards), 10_000):
            connection.execute(issued_card.insert(), cards[start:start + 10_000])
        for start in range(0, len(answers), 10_000):
            connection.execute(feedback.insert(), answers[start:start + 10_000])
        connection.execute(text("ANALYZE"))  # both back-ends: plan with real row counts
    return hashes


def plan(engine, patient_hash: str) -> str:
    sql = (
        "SELECT issued_card.card_uuid FROM issued_card JOIN feedback ON feedback.card_uuid = issued_card.card_uuid "
        "WHERE issued_card.patient_hash = :h AND issued_card.topic IN ('a', 'b', 'c') AND feedback.outcome_at >= :since"
    )
    prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    with engine.connect() as connection:
        rows = connection.execute(text(prefix + sql), {"h": patient_hash, "since": NOW - timedelta(days=365)}).all()
    return "; ".join(str(row[-1]).strip() for row in rows)


def measure(url: str) -> dict:
    engine = open_engine(url)
    migrate(engine)
    ledger = CardLedger(engine, b"k" * 32)
    hashes = fill(engine, ledger)
    rng = random.Random(16)
    topics = set(TOPICS[:3])
    for patient_hash in rng.sample(hashes, 50):  # warm the pool and the caches
        ledger.recent_overrides(patient_hash, topics, NOW - timedelta(days=365))
    times, found = [], []
    for _ in range(CALLS):
        patient_hash = rng.choice(hashes)
        started = time.perf_counter()
        overrides = ledger.recent_overrides(patient_hash, topics, NOW - timedelta(days=365))
        times.append((time.perf_counter() - started) * 1000)
        found.append(len(overrides))
    times.sort()
    floor = []  # the same connection checkout with a trivial query: what any store round trip costs
    for _ in range(CALLS):
        started = time.perf_counter()
        with engine.connect() as connection:
            connection.execute(text("SELECT 1")).scalar_one()
        floor.append((time.perf_counter() - started) * 1000)
    result = {
        "floor_p50_ms": statistics.median(floor),
        "backend": engine.dialect.name,
        "p50_ms": statistics.median(times),
        "p99_ms": times[int(len(times) * 0.99)],
        "overrides_per_call": statistics.mean(found),
        "plan": plan(engine, hashes[0]),
    }
    engine.dispose()
    return result


def _reset_postgres(url: str) -> None:
    engine = open_engine(url)
    with engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(text(f"DROP TABLE IF EXISTS {table.name} CASCADE"))
    engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.suppression", description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="an EMPTY PostgreSQL database to fill (its ledger tables are dropped first)")
    args = parser.parse_args(argv)
    urls = []
    with tempfile.TemporaryDirectory() as folder:
        urls.append(f"sqlite:///{folder}/bench-ledger.sqlite3")
        if args.postgres:
            _reset_postgres(args.postgres)
            urls.append(args.postgres)
        print(f"ledger: {PATIENTS * CARDS_PER_PATIENT:,} cards of {PATIENTS:,} patients; {CALLS:,} look-ups of 3 topics")
        for url in urls:
            r = measure(url)
            print(f"{r['backend']:>10}: p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms "
                  f"(SELECT 1 on a pooled connection: p50 {r['floor_p50_ms']:.2f} ms), "
                  f"{r['overrides_per_call']:.1f} overrides found per look-up; plan: {r['plan']}")
        if args.postgres:
            _reset_postgres(args.postgres)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
