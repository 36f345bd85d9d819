"""One SQLAlchemy engine per process for the configured store.

Store faults must not outlive the fault: every connection to a database server is pinged before
use, and a connection that hit an operational error is thrown away (with the pool), so the
service works again as soon as the store does. A SQLite file removed or replaced under the
running service is detected at the start and at the commit of every transaction: the write fails
(503 for feedback) rather than going, acknowledged, into a file nobody will read again."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

logger = logging.getLogger(__name__)

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


RECONNECT_PAUSE_SECONDS = 3.0


class StoreFileChanged(sqlite3.OperationalError):
    """The SQLite file is not the one the service opened (removed, moved or replaced)."""


def _file_identity(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def _watch_sqlite_file(engine: Engine, path: str) -> None:
    """Refuse every transaction, at its start and at its commit, while the file at `path` is not
    the one first opened: a connection to a removed file would write on into the unlinked inode
    (acknowledged, then lost), and a new empty file in its place would hold none of the ledger.
    When the same file is back (a directory moved away and back), transactions pass again."""
    opened: dict[str, tuple[int, int] | None] = {"identity": None}

    @event.listens_for(engine, "connect")
    def _remember(_dbapi_connection, _record):
        if opened["identity"] is None:
            opened["identity"] = _file_identity(path)

    def _check(_connection):
        if opened["identity"] is not None and _file_identity(path) != opened["identity"]:
            logger.error("the SQLite store file %s was removed or replaced since the service opened it; "
                         "writes are refused until it is back (or the service is restarted on a new store)", path)
            cause = StoreFileChanged("the store file was removed or replaced")
            raise OperationalError("store file check", None, cause)

    event.listen(engine, "begin", _check)
    event.listen(engine, "commit", _check)


def _discard_connection_on_operational_errors(engine: Engine) -> None:
    """A connection that failed with an operational error (I/O error, server gone, file
    unreadable) is not given out again: the pool is refreshed, so recovery needs no restart.
    After a failed connect, connecting again is not tried for `RECONNECT_PAUSE_SECONDS`: an
    unreachable database host would otherwise cost every hook call its connect timeout twice
    (replay check and ledger) while the cards wait."""
    paused_until = {"time": 0.0}

    @event.listens_for(engine, "handle_error")
    def _invalidate(context):
        dbapi_error = context.original_exception
        dbapi = context.dialect.loaded_dbapi
        if isinstance(dbapi_error, (dbapi.OperationalError, dbapi.InterfaceError)) and not isinstance(dbapi_error, StoreFileChanged):
            context.is_disconnect = True
            if context.connection is None and not getattr(dbapi_error, "connect_paused", False):  # the connect failed
                paused_until["time"] = time.monotonic() + RECONNECT_PAUSE_SECONDS

    @event.listens_for(engine, "do_connect")
    def _fail_fast(dialect, _record, _cargs, _cparams):
        if time.monotonic() < paused_until["time"]:
            error = dialect.loaded_dbapi.OperationalError("the store could not be reached a moment ago; not tried again yet")
            error.connect_paused = True
            raise error


def create_store_engine(url: str | None = None) -> Engine:
    """An engine for `url` (default: $DENOSUMAB_CDS_STORE_URL, else a SQLite file under ./var);
    creates the SQLite folder."""
    parsed = make_url(url or os.environ.get(STORE_URL_ENV_VAR) or DEFAULT_STORE_URL)
    if parsed.get_backend_name() == "sqlite":
        on_disk = parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:")
        if on_disk:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # No ping before each use: a connection to a local file does not go stale as a server's
        # does, and what can break it (the file replaced, an I/O error) the watch and the
        # operational-error handler below deal with; the ping cost a round trip per transaction.
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        if on_disk:
            _watch_sqlite_file(engine, os.path.abspath(parsed.database))
        _discard_connection_on_operational_errors(engine)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("psycopg2", "default", None):
        parsed = parsed.set(drivername="postgresql+psycopg")
    connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_SECONDS}
    engine = create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
    _discard_connection_on_operational_errors(engine)
    return engine
