"""One SQLAlchemy engine per process for the configured store."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

DEFAULT_STORE_URL = "sqlite:///var/denosumab-cds.sqlite3"
STORE_URL_ENV_VAR = "DENOSUMAB_CDS_STORE_URL"  # used when no `[store] url` is configured
SQLITE_BUSY_TIMEOUT_MS = 10_000
# A hook call writes the card ledger before it answers: a database that went away must cost
# seconds, not the EHR's whole budget (a URL's own connect_timeout wins).
POSTGRES_CONNECT_TIMEOUT_SECONDS = 2


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    _switch_to_wal(cursor)
    cursor.execute("PRAGMA synchronous=FULL")  # an acknowledged write survives a crash (no-loss promise)
    cursor.close()


def _switch_to_wal(cursor) -> None:
    """WAL journal: readers never block the writer, safe across processes. The switch is stored in
    the file, so it happens once; but instances opening a new file together race for it, and
    SQLite answers the loser "database is locked" without waiting, so the loser tries again."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def create_store_engine(url: str | None = None) -> Engine:
    """An engine for `url` (default: $DENOSUMAB_CDS_STORE_URL, else a SQLite file under ./var);
    creates the SQLite folder."""
    parsed = make_url(url or os.environ.get(STORE_URL_ENV_VAR) or DEFAULT_STORE_URL)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("psycopg2", "default", None):
        parsed = parsed.set(drivername="postgresql+psycopg")
    connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_SECONDS}
    return create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
