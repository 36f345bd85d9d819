"""Durable storage shared by every worker and instance: the card ledger, feedback and the JWT
replay cache. SQLite (WAL) by default, needing no server; PostgreSQL given `[store] url`."""

from cds_service.store.engine import DEFAULT_STORE_URL, create_store_engine

__all__ = ["DEFAULT_STORE_URL", "create_store_engine"]
