"""The card ledger: every card the service issues, so that feedback joins to the rule behind it.

Each card is recorded with its suggestion uuids and labels, service, hook, hookInstance, topic
code, indicator and time, and the patient only as HMAC-SHA256(key, fhirServer + patientId): the
same patient gives the same hash under one key, and nobody without the key can go back to the id.

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

from sqlalchemy import Engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from cds_service.config import ConfigError, Settings
from cds_service.ops.metrics import record_store_error
from cds_service.store.engine import DEFAULT_STORE_URL, STORE_URL_ENV_VAR, create_store_engine
from cds_service.store.schema import insert_if_absent, issued_card, issued_suggestion, migrate, store_meta

logger = logging.getLogger(__name__)

PATIENT_HASH_KEY_ENV_VAR = "DENOSUMAB_CDS_PATIENT_HASH_KEY"
PATIENT_HASH_KEY_MIN_LENGTH = 32
_STORED_KEY_NAME = "patient_hash_key"
SUPPORTED_BACKENDS = ("sqlite", "postgresql")


def store_url(settings: Settings) -> str:
    """`[store] url`, else $DENOSUMAB_CDS_STORE_URL, else the SQLite file under ./var."""
    return settings.store_url or os.environ.get(STORE_URL_ENV_VAR) or DEFAULT_STORE_URL


def _sqlite_explicit_transactions(engine: Engine, begin: str) -> None:
    """SQLite: every transaction starts with our BEGIN (the driver's own would come only at the
    first write). Writers use BEGIN IMMEDIATE: a deferred transaction that reads and then writes
    fails with SQLITE_BUSY when another process wrote in between (busy_timeout does not help
    there); IMMEDIATE waits its turn instead. Readers use a plain BEGIN: one consistent snapshot."""

    @event.listens_for(engine, "connect")
    def _driver_autocommit(dbapi_connection, _record):
        dbapi_connection.isolation_level = None

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


@dataclass
class CardLedger:
    engine: Engine
    patient_hash_key: bytes = field(repr=False)

    def patient_hash(self, fhir_server: str | None, patient_id: str) -> str:
        # Patient ids are unique per FHIR server only, so the server is part of what is hashed.
        message = f"{fhir_server or ''}\x1f{patient_id}".encode("utf-8")
        return hmac.new(self.patient_hash_key, message, hashlib.sha256).hexdigest()

    def record(
        self,
        cards: list[IssuedCard],
        *,
        service_id: str,
        hook: str,
        hook_instance: str,
        patient_hash: str,
        issued_at: datetime,
    ) -> None:
        """All cards of one response in one transaction."""
        if not cards:
            return
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
            }
            for card in cards
        ]
        suggestion_rows = [
            {"suggestion_uuid": uuid, "card_uuid": card.card_uuid, "position": position, "label": label}
            for card in cards
            for position, (uuid, label) in enumerate(card.suggestions)
        ]
        with self.engine.begin() as connection:
            connection.execute(issued_card.insert(), card_rows)
            if suggestion_rows:
                connection.execute(issued_suggestion.insert(), suggestion_rows)

    def cards_issued(self, request, response: dict, _record, as_of: datetime) -> None:
        """`HookService` listener: record the response's cards; never fails the hook call."""
        cards = response.get("cards") or []
        if not cards:
            return
        try:
            self.record(
                [IssuedCard.from_card_json(card) for card in cards],
                service_id=request.service.id,
                hook=request.hook,
                hook_instance=request.hook_instance,
                patient_hash=self.patient_hash(request.fhir_server, request.patient_id),
                issued_at=as_of,
            )
        except SQLAlchemyError as error:
            # The type only: driver messages can quote the row values.
            logger.error("card ledger write failed (%s); %d card(s) not recorded", type(error).__name__, len(cards))
            record_store_error("ledger-write")


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
    try:
        engine = open_engine(url)
        if engine.dialect.name not in SUPPORTED_BACKENDS:
            raise ConfigError(f"[store] url: {engine.dialect.name} is not supported; use sqlite:/// or postgresql://")
        migrate(engine)
        key = _patient_hash_key(settings, engine)
    except (SQLAlchemyError, OSError) as error:
        cause = getattr(error, "orig", None) or error
        raise ConfigError(f"cannot open the store at {describe_url(url)}: {type(cause).__name__}: {cause}") from None
    # No connection survives start-up: gunicorn forks workers after this, and a pooled
    # connection must never be shared by two processes.
    engine.dispose()
    return Store(url=url, engine=engine, ledger=CardLedger(engine, key))
