"""The shared store: PostgreSQL through psycopg 3, for several gateway instances at once.

A small connection pool per process, opened on first use (never before gunicorn forks), with
short connect and wait timeouts so an outage turns into a prompt 503, not a hung worker.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from urllib.parse import urlsplit, urlunsplit

from proxy_app.store.spend import spend_values
from proxy_app.store.sql import SQLStore, StoreUnavailableError

CONNECT_TIMEOUT_S = 3
POOL_WAIT_S = 2
# psycopg_pool retries failed connection attempts with growing delays, so after a long outage a
# pool may wait many seconds before trying again. A pool that timed out is replaced by a fresh
# one (which connects at once), at most this often, so recovery follows the database closely.
POOL_RESET_S = 2.0
# Any constant shared by every instance: whoever holds it migrates, the others wait.
MIGRATION_LOCK_ID = 0x44686565726141  # "DheeraA"


class PostgresStore(SQLStore):
    backend = "postgresql"

    def __init__(self, url: str, max_connections: int = 4):
        self.url = url
        self.max_connections = max_connections
        self._pool = None
        self._pid = None
        self._lock = threading.Lock()
        self._pool_born = 0.0

    def describe(self) -> str:
        """The URL with any password taken out."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        netloc = (f"{parts.username}@" if parts.username else "") + host + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def _get_pool(self):
        if self._pool is None or self._pid != os.getpid():
            with self._lock:
                if self._pool is None or self._pid != os.getpid():
                    from psycopg_pool import ConnectionPool

                    self._pool = ConnectionPool(self.url, min_size=1, max_size=self.max_connections, open=True,
                                                timeout=POOL_WAIT_S, kwargs={"connect_timeout": CONNECT_TIMEOUT_S},
                                                name="dheera_ai_store")
                    self._pid = os.getpid()
                    self._pool_born = time.monotonic()
        return self._pool

    def _reset_pool_after_timeout(self) -> None:
        """Swap a pool stuck in reconnect backoff for a fresh one; the old one closes aside."""
        with self._lock:
            old = self._pool
            if old is None or self._pid != os.getpid() or time.monotonic() - self._pool_born < POOL_RESET_S:
                return
            self._pool = None
        threading.Thread(target=old.close, kwargs={"timeout": 1}, name="dheera_ai-store-pool-close",
                         daemon=True).start()

    @contextlib.contextmanager
    def _transaction(self, write: bool = False):
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self._get_pool().connection() as conn, conn.transaction(), conn.cursor() as cur:
                yield cur
        except (psycopg.OperationalError, PoolTimeout) as exc:
            if isinstance(exc, PoolTimeout):
                self._reset_pool_after_timeout()
            raise StoreUnavailableError(f"The state store ({self.describe()}) is unavailable: "
                                        f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                                        code="store_unavailable") from None

    def _for_update(self) -> str:
        return " FOR UPDATE"

    def _fast_commit(self, cursor) -> None:
        cursor.execute("SET LOCAL synchronous_commit = off")

    def _lock_migrations(self, cursor) -> None:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))

    @contextlib.contextmanager
    def _savepoint(self, cur):
        with cur.connection.transaction():
            yield

    def _is_unique_violation(self, exc: Exception) -> bool:
        import psycopg.errors

        return isinstance(exc, psycopg.errors.UniqueViolation)

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    def _insert_new(self, cur, insert: str, rows: list[dict]) -> list[dict]:
        """One pipelined batch; RETURNING says which rows were new (a replayed one returns none)."""
        if not rows:
            return []
        cur.executemany(insert + " RETURNING row_id",
                        [spend_values(row) for row in rows], returning=True)
        inserted = set()
        while True:
            inserted.update(found for (found,) in cur.fetchall())
            if not cur.nextset():
                break
        new = []
        for row in rows:  # a row twice in one batch was inserted once: counted once
            if row["row_id"] in inserted:
                inserted.discard(row["row_id"])
                new.append(row)
        return new

    def close(self) -> None:
        if self._pool is not None and self._pid == os.getpid():
            self._pool.close()
        self._pool = None
