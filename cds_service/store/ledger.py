"""The card ledger: every card the service issues, so that feedback joins to the rule behind it.

Each card is recorded with its suggestion uuids and labels, service, hook, hookInstance, topic
code, indicator, time, status (issued; suppressed or silent: evaluated but not shown), knowledge
version and the EHR client (JWT iss and tenant), and the patient only as HMAC-SHA256(key,
fhirServer + patientId): the same patient gives the same hash under one key, and nobody without
the key can go back to the id. Ordering sessions (encounter + draft order id) are kept the same way.

The write is synchronous, one transaction per response that has cards, made before the response
leaves: an EHR can send feedback the moment it has a card uuid. If the store fails, the cards
still go out (a safety alert matters more than its statistics) and the error is logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Engine, bindparam, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from cds_service.config import ConfigError, Settings, unsupported_store_url
from cds_service.store.engine import DEFAULT_STORE_URL, STORE_URL_ENV_VAR, create_store_engine
from cds_service.store.schema import (
    feedback,
    insert_if_absent,
    issued_card,
    issued_suggestion,
    migrate,
    store_meta,
)

logger = logging.getLogger(__name__)

PATIENT_HASH_KEY_ENV_VAR = "DENOSUMAB_CDS_PATIENT_HASH_KEY"
PATIENT_HASH_KEY_MIN_LENGTH = 32
_STORED_KEY_NAME = "patient_hash_key"


def store_url(settings: Settings) -> str:
    """`[store] url`, else $DENOSUMAB_CDS_STORE_URL, else the SQLite file under ./var."""
    return settings.store_url or os.environ.get(STORE_URL_ENV_VAR) or DEFAULT_STORE_URL


def _sqlite_explicit_transactions(engine: Engine, begin: str) -> None:
    """SQLite: every transaction starts with our BEGIN (the driver's own would come only at the
    first write). Writers use BEGIN IMMEDIATE: a deferred transaction that reads and then writes
    fails with SQLITE_BUSY when another process wrote in between (busy_timeout does not help
    there); IMMEDIATE waits its turn instead. Readers use a plain BEGIN: one consistent snapshot."""
    _sqlite_driver_autocommit(engine)

    @event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql(begin)


def open_engine(url: str, *, read_only: bool = False) -> Engine:
    """The store engine with this module's transaction discipline (see above; PostgreSQL readers
    get REPEATABLE READ for the same single snapshot)."""
    engine = create_store_engine(url)
    if engine.dialect.name == "sqlite":
        _sqlite_explicit_transactions(engine, "BEGIN" if read_only else "BEGIN IMMEDIATE")
    elif read_only:
        engine = engine.execution_options(isolation_level="REPEATABLE READ")
    return engine


def open_lookup_engine(url: str) -> Engine:
    """An engine for reads of one statement each (the suppression look-up, on every call with
    cards): one statement is its own snapshot in SQLite's autocommit mode and in PostgreSQL's
    READ COMMITTED, so neither a BEGIN nor a chosen isolation level is sent (each cost the
    look-up a round of the driver). It never waits for another worker's write (WAL)."""
    engine = create_store_engine(url)
    if engine.dialect.name == "sqlite":
        _sqlite_driver_autocommit(engine)
    return engine


def _sqlite_driver_autocommit(engine: Engine) -> None:
    """The driver starts no transaction of its own (Python's sqlite3 would, before a write)."""

    @event.listens_for(engine, "connect")
    def _driver_autocommit(dbapi_connection, _record):
        dbapi_connection.isolation_level = None


def describe_url(url: str) -> str:
    """The URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def _patient_hash_key(settings: Settings, engine: Engine) -> bytes:
    configured = settings.patient_hash_key or os.environ.get(PATIENT_HASH_KEY_ENV_VAR)
    if configured:
        if len(configured) < PATIENT_HASH_KEY_MIN_LENGTH:
            raise ConfigError(f"[store] patient_hash_key must be at least {PATIENT_HASH_KEY_MIN_LENGTH} characters")
        return configured.encode("utf-8")
    if not settings.trial_mode:
        logger.warning(
            "no [store] patient_hash_key or $%s: using a random key kept in the store itself, so a copy "
            "of the database alone could be matched against known patient ids; configure a key",
            PATIENT_HASH_KEY_ENV_VAR,
        )
    # Random per store, created once; every worker and instance reads the same one.
    with engine.begin() as connection:
        stored = connection.execute(
            select(store_meta.c.value).where(store_meta.c.name == _STORED_KEY_NAME)
        ).scalar_one_or_none()
        if stored is None:
            # Another instance may be doing the same right now: first writer wins, all read it back.
            insert = insert_if_absent(engine.dialect.name, store_meta)
            connection.execute(insert.values(name=_STORED_KEY_NAME, value=secrets.token_hex(32)))
            stored = connection.execute(
                select(store_meta.c.value).where(store_meta.c.name == _STORED_KEY_NAME)
            ).scalar_one()
    return stored.encode("utf-8")


@dataclass(frozen=True)
class IssuedCard:
    """What the ledger keeps of one card (read from a CDS Hooks card JSON)."""

    card_uuid: str
    topic: str
    indicator: str
    suggestions: tuple[tuple[str, str], ...] = ()  # (uuid, label)

    @classmethod
    def from_card_json(cls, card: dict) -> "IssuedCard":
        return cls(
            card_uuid=card["uuid"],
            topic=card["source"]["topic"]["code"],
            indicator=card["indicator"],
            suggestions=tuple((s["uuid"], s["label"]) for s in card.get("suggestions", []) if s.get("uuid")),
        )


# Built once: building and compiling a statement on every call cost more than running it.
_RECENT_OVERRIDES = (
    select(
        issued_card.c.card_uuid,
        issued_card.c.topic,
        issued_card.c.indicator,
        issued_card.c.hook,
        issued_card.c.order_keys,
        feedback.c.outcome,
        feedback.c.outcome_at,
        feedback.c.received_at,
        feedback.c.override_reason_system,
        feedback.c.override_reason_code,
    )
    .join(feedback, feedback.c.card_uuid == issued_card.c.card_uuid)
    .where(
        issued_card.c.patient_hash == bindparam("patient_hash"),
        issued_card.c.topic.in_(bindparam("topics", expanding=True)),
        feedback.c.outcome_at >= bindparam("since"),
    )
    .order_by(issued_card.c.card_uuid, feedback.c.outcome_at, feedback.c.id)
)
_INSERT_CARD = issued_card.insert()
_INSERT_SUGGESTION = issued_suggestion.insert()


class PastOverride(NamedTuple):
    """A card of this patient whose latest feedback is an override (see `CardLedger.recent_overrides`)."""

    topic: str
    indicator: str
    hook: str
    order_keys: frozenset[str]
    outcome_at: datetime  # when overridden: the EHR's outcomeTimestamp, never later than its arrival
    reason_system: str | None
    reason_code: str | None


@dataclass
class CardLedger:
    engine: Engine
    patient_hash_key: bytes = field(repr=False)
    # For the suppression look-up (open_lookup_engine), where the writer's BEGIN IMMEDIATE would
    # queue every look-up behind another worker's write.
    reader: Engine | None = None

    def patient_hash(self, fhir_server: str | None, patient_id: str) -> str:
        # Patient ids are unique per FHIR server only, so the server is part of what is hashed.
        return self._keyed_hash(fhir_server or "", patient_id)

    def order_key(self, fhir_server: str | None, patient_id: str, encounter_id: str, draft_order_id: str) -> str:
        """One ordering session of one draft order, keyed like the patient (ids are not kept)."""
        return self._keyed_hash(fhir_server or "", patient_id, encounter_id, draft_order_id)

    def _keyed_hash(self, *parts: str) -> str:
        return hmac.new(self.patient_hash_key, "\x1f".join(parts).encode("utf-8"), hashlib.sha256).hexdigest()

    def recent_overrides(self, patient_hash: str, topics, since: datetime) -> list[PastOverride]:
        """The patient's cards of `topics` overridden at or after `since`, by their latest feedback.

        One query (index ix_issued_card_patient_topic, then ix_feedback_card): every feedback of
        those cards since `since`, newest last; a card whose latest outcome is an acceptance does
        not count as overridden."""
        parameters = {"patient_hash": patient_hash, "topics": sorted(topics), "since": since}
        with (self.reader or self.engine).connect() as connection:
            rows = connection.execute(_RECENT_OVERRIDES, parameters).all()
        latest = {row.card_uuid: row for row in rows}  # ordered by time within a card: the last wins
        return [
            PastOverride(
                row.topic,
                row.indicator,
                row.hook,
                frozenset((row.order_keys or "").split()),
                # An EHR clock ahead of ours must not lengthen a suppression.
                min(row.outcome_at, row.received_at),
                row.override_reason_system,
                row.override_reason_code,
            )
            for row in latest.values()
            if row.outcome == "overridden"
        ]

    def record(
        self,
        cards: list[IssuedCard],
        *,
        service_id: str,
        hook: str,
        hook_instance: str,
        patient_hash: str,
        issued_at: datetime,
        statuses: dict[str, str] | None = None,  # card uuid -> "suppressed" | "silent"; else issued
        knowledge_version: str | None = None,
        client_iss: str | None = None,
        client_tenant: str | None = None,
        order_keys: tuple[str, ...] = (),
    ) -> None:
        """All cards of one response (shown or not) in one transaction."""
        if not cards:
            return
        statuses = statuses or {}
        card_rows = [
            {
                "card_uuid": card.card_uuid,
                "service_id": service_id,
                "hook": hook,
                "hook_instance": hook_instance,
                "topic": card.topic,
                "indicator": card.indicator,
                "issued_at": issued_at,
                "patient_hash": patient_hash,
                "status": statuses.get(card.card_uuid, "issued"),
                "knowledge_version": knowledge_version,
                "client_iss": client_iss,
                "client_tenant": client_tenant,
                "order_keys": " ".join(sorted(order_keys)) or None,
            }
            for card in cards
        ]
        suggestion_rows = [
            {"suggestion_uuid": uuid, "card_uuid": card.card_uuid, "position": position, "label": label}
            for card in cards
            for position, (uuid, label) in enumerate(card.suggestions)
        ]
        with self.engine.begin() as connection:
            connection.execute(_INSERT_CARD, card_rows)
            if suggestion_rows:
                connection.execute(_INSERT_SUGGESTION, suggestion_rows)


@dataclass
class Store:
    """The opened store of one process: engine, schema checked, ledger ready."""

    url: str
    engine: Engine
    ledger: CardLedger


def open_store(settings: Settings) -> Store:
    """Connect, create or migrate the schema, and resolve the patient hash key (start-up: a store
    that cannot be reached stops the service here, not on the first card)."""
    url = store_url(settings)
    if problem := unsupported_store_url(url):  # also a $DENOSUMAB_CDS_STORE_URL no schema checked
        raise ConfigError(f"store.url: {problem}")
    try:
        engine = open_engine(url)
        migrate(engine)
        key = _patient_hash_key(settings, engine)
        reader = open_lookup_engine(url)
    except (SQLAlchemyError, OSError) as error:
        cause = getattr(error, "orig", None) or error
        raise ConfigError(f"cannot open the store at {describe_url(url)}: {type(cause).__name__}: {cause}") from None
    # No connection survives start-up: gunicorn forks workers after this, and a pooled
    # connection must never be shared by two processes.
    engine.dispose()
    reader.dispose()
    return Store(url=url, engine=engine, ledger=CardLedger(engine, key, reader=reader))
