"""JWT replay protection: each (iss, jti) is accepted once, across every worker and instance.

The seen tokens live in the shared store (SQLite in WAL mode, or PostgreSQL), not in a
per-process set: gunicorn runs several workers and a hospital may run several instances, and a
token replayed to another process must be refused too. The primary key makes "insert or fail"
the atomic check, so two processes racing with the same token cannot both win. A row is kept
until its token has expired (plus the clock skew), after which the token is refused on `exp`
anyway, and is then purged."""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable

from sqlalchemy import BigInteger, Column, Engine, MetaData, String, Table, and_, delete, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.schema import CreateIndex, CreateTable

from cds_service.store.engine import create_store_engine

logger = logging.getLogger(__name__)

MAX_ISS_LENGTH = 512
MAX_JTI_LENGTH = 256
PURGE_INTERVAL_SECONDS = 60.0

metadata = MetaData()
seen_tokens = Table(
    "jwt_seen_tokens",
    metadata,
    Column("iss", String(MAX_ISS_LENGTH), primary_key=True),
    Column("jti", String(MAX_JTI_LENGTH), primary_key=True),
    Column("expires_at", BigInteger, nullable=False, index=True),  # epoch seconds
)


def _dispose_after_fork(engine_ref: weakref.ref) -> None:
    engine = engine_ref()
    if engine is not None:
        # The parent's pooled connections must not be shared with a forked worker.
        engine.dispose(close=False)


class ReplayGuard:
    """Remembers the tokens already used; `first_use` is True exactly once per (iss, jti)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time):
        self.engine = engine
        self.clock = clock
        self._next_purge = 0.0
        self._purge_lock = threading.Lock()
        with engine.begin() as connection:  # IF NOT EXISTS: instances may start at the same time
            connection.execute(CreateTable(seen_tokens, if_not_exists=True))
            for index in seen_tokens.indexes:
                connection.execute(CreateIndex(index, if_not_exists=True))
        engine.dispose()  # no connection opened at start-up survives into forked workers
        engine_ref = weakref.ref(engine)
        os.register_at_fork(after_in_child=lambda: _dispose_after_fork(engine_ref))

    @classmethod
    def for_store(cls, store_url: str | None) -> "ReplayGuard":
        return cls(create_store_engine(store_url))

    def first_use(self, iss: str, jti: str, expires_at: int) -> bool:
        """Record (iss, jti) as used until `expires_at`; False when it was already used."""
        if not (0 < len(iss) <= MAX_ISS_LENGTH and 0 < len(jti) <= MAX_JTI_LENGTH):
            raise ValueError("iss or jti length out of range")
        now = int(self.clock())
        self._purge_expired(now)
        if self._insert(iss, jti, expires_at):
            return True
        # Taken: a replay, unless the earlier token with this jti has expired and awaits its purge.
        with self.engine.begin() as connection:
            freed = connection.execute(
                delete(seen_tokens).where(
                    and_(seen_tokens.c.iss == iss, seen_tokens.c.jti == jti, seen_tokens.c.expires_at < now)
                )
            ).rowcount
        return bool(freed) and self._insert(iss, jti, expires_at)

    def _insert(self, iss: str, jti: str, expires_at: int) -> bool:
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(seen_tokens).values(iss=iss, jti=jti, expires_at=int(expires_at)))
        except IntegrityError:
            return False
        return True

    def _purge_expired(self, now: int) -> None:
        with self._purge_lock:
            if time.monotonic() < self._next_purge:
                return
            self._next_purge = time.monotonic() + PURGE_INTERVAL_SECONDS
        with self.engine.begin() as connection:
            purged = connection.execute(delete(seen_tokens).where(seen_tokens.c.expires_at < now)).rowcount
        if purged:
            logger.debug("purged %d expired JWT ids", purged)


class RecentTokens:
    """One worker's own memory of the tokens it accepted, until each expires: what still refuses
    a replay (to this worker) while the shared store is down. Bounded: a token lives at most
    `max_token_lifetime_seconds` plus the clock skew."""

    MAX_REMEMBERED = 100_000

    def __init__(self):
        self._expiry: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def first_use(self, iss: str, jti: str, expires_at: int, now: int) -> bool | None:
        """True the first time, False for a replay, None when the memory is full."""
        with self._lock:
            known = self._expiry.get((iss, jti))
            if known is not None and known >= now:
                return False
            if len(self._expiry) >= self.MAX_REMEMBERED:
                self._expiry = {key: until for key, until in self._expiry.items() if until >= now}
                if len(self._expiry) >= self.MAX_REMEMBERED:
                    return None
            self._expiry[(iss, jti)] = expires_at
            return True
