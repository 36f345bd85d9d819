"""The tables of the card ledger and of feedback, and the start-up migration that creates them.

One schema for SQLite and PostgreSQL (SQLAlchemy Core). Times are stored in UTC. No column holds
a patient identifier in clear: the ledger keeps a keyed hash (see `store.ledger`)."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    inspect,
    select,
    text,
)
from sqlalchemy.schema import CreateIndex, CreateTable

from cds_service.config import ConfigError

logger = logging.getLogger(__name__)

# 1: ledger and feedback. 2: card status (issued / suppressed / silent), knowledge version, the
# EHR client (iss, tenant) on cards and feedback, the ordering-session keys of a card.
SCHEMA_VERSION = 2
# Any fixed number: the PostgreSQL advisory lock that serialises start-up migrations of instances.
_MIGRATION_LOCK_ID = 0x64656E6F


class UtcDateTime(TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out, on every back-end (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


metadata = MetaData()

store_meta = Table(
    "store_meta",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

issued_card = Table(
    "issued_card",
    metadata,
    Column("card_uuid", String(64), primary_key=True),
    Column("service_id", String(128), nullable=False),
    Column("hook", String(64), nullable=False),
    Column("hook_instance", Text, nullable=False),  # a UUID, but in any of the forms uuid.UUID accepts
    Column("topic", String(128), nullable=False),
    Column("indicator", String(16), nullable=False),
    Column("issued_at", UtcDateTime, nullable=False),
    Column("patient_hash", String(64), nullable=False),  # HMAC-SHA256 hex, never the id itself
    # Version 2 (added to older stores by `migrate`):
    Column("status", String(16), nullable=False, server_default="issued"),  # CARD_STATUSES
    Column("knowledge_version", String(64)),
    Column("client_iss", Text),  # the JWT's iss of the EHR that called; None without JWT
    Column("client_tenant", Text),
    # The card's ordering sessions: one HMAC per draft order in focus (patient, encounter, draft
    # order id), space-separated; None outside an encounter or without draft orders.
    Column("order_keys", Text),
)
Index("ix_issued_card_issued_at", issued_card.c.issued_at)
# The suppression look-up: this patient's cards of these topics (one query per call with cards).
Index("ix_issued_card_patient_topic", issued_card.c.patient_hash, issued_card.c.topic)

CARD_STATUSES = ("issued", "suppressed", "silent")

issued_suggestion = Table(
    "issued_suggestion",
    metadata,
    Column("suggestion_uuid", String(64), primary_key=True),
    Column("card_uuid", String(64), ForeignKey("issued_card.card_uuid"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("label", Text, nullable=False),
)
Index("ix_issued_suggestion_card", issued_suggestion.c.card_uuid)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # What makes two entries "the same feedback" (see feedback.dedup_key): a resend stores nothing.
    Column("dedup_key", String(64), nullable=False, unique=True),
    Column("card_uuid", String(64), ForeignKey("issued_card.card_uuid"), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("outcome_at", UtcDateTime, nullable=False),
    Column("accepted_suggestions", Text, nullable=False),  # JSON list of suggestion uuids, sorted
    Column("override_reason_system", Text),
    Column("override_reason_code", Text),
    Column("override_reason_display", Text),
    # The clinician's free-text comment may name the patient, so only its presence is kept.
    Column("has_user_comment", Boolean, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    # Version 2: the EHR client that sent it (the same one that got the card).
    Column("client_iss", Text),
    Column("client_tenant", Text),
)
Index("ix_feedback_card", feedback.c.card_uuid)


def migrate(engine: Engine) -> None:
    """Create missing tables and indexes and record the schema version; safe to run concurrently
    from several processes or machines (IF NOT EXISTS, and an advisory lock on PostgreSQL)."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
        for table in metadata.sorted_tables:
            connection.execute(CreateTable(table, if_not_exists=True))
        stored = connection.execute(
            select(store_meta.c.value).where(store_meta.c.name == "schema_version")
        ).scalar_one_or_none()
        if stored is not None and int(stored) > SCHEMA_VERSION:
            raise ConfigError(
                f"the store has schema version {stored}, newer than this release ({SCHEMA_VERSION}); upgrade the service"
            )
        if stored is not None and int(stored) < SCHEMA_VERSION:
            _add_missing_columns(connection)
        # Indexes last: a new index may be on a column the step above has just added.
        for table in metadata.sorted_tables:
            for index in sorted(table.indexes, key=lambda i: i.name):
                connection.execute(CreateIndex(index, if_not_exists=True))
        if stored is None:
            insert = insert_if_absent(engine.dialect.name, store_meta)
            connection.execute(insert.values(name="schema_version", value=str(SCHEMA_VERSION)))
        elif int(stored) < SCHEMA_VERSION:
            connection.execute(
                store_meta.update().where(store_meta.c.name == "schema_version").values(value=str(SCHEMA_VERSION))
            )
            logger.info("store schema upgraded from version %s to %s", stored, SCHEMA_VERSION)


def _add_missing_columns(connection) -> None:
    """Upgrade an older store: every column this release's tables have and the store's lack is
    added (each one nullable or with a default, so existing rows stay valid)."""
    inspector = inspect(connection)
    for table in metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            kind = column.type.compile(dialect=connection.dialect)
            ddl = f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'
            if column.server_default is not None:
                ddl += f" DEFAULT '{column.server_default.arg}'"
            if not column.nullable:
                ddl += " NOT NULL"
            connection.execute(text(ddl))


def insert_if_absent(dialect_name: str, table: Table):
    """INSERT that silently skips rows whose primary or unique key already exists."""
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table).on_conflict_do_nothing()


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
