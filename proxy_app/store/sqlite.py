"""The embedded store: one SQLite file (WAL), shared by the workers of one gateway instance.

Each process opens its own connection on first use (gunicorn forks workers, and a SQLite
connection must never cross a fork) and serializes its use with a lock: the statements are
index lookups taking microseconds, and the hot path reads keys from the cache, not from here.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading

from dheera_ai.sqlite_files import open_shared
from proxy_app.store.sql import SQLStore, StoreUnavailableError

BUSY_TIMEOUT_MS = 5000


class SQLiteStore(SQLStore):
    backend = "sqlite"

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.RLock()
        self._conn = None
        self._pid = None

    def describe(self) -> str:
        return self.path

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            conn = open_shared(self.path, BUSY_TIMEOUT_MS / 1000)
            conn.execute("PRAGMA foreign_keys = ON")
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    @contextlib.contextmanager
    def _transaction(self, write: bool = False):
        with self._lock:
            try:
                conn = self._connection()
                # BEGIN IMMEDIATE takes the write lock at once: two instances migrating (or two
                # workers writing) queue on busy_timeout instead of failing half-way.
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except (sqlite3.Error, OSError) as exc:
                raise StoreUnavailableError(f"The state store ({self.path}) is unavailable: {exc}",
                                            code="store_unavailable") from None
            cur = conn.cursor()
            try:
                yield cur
            except BaseException:
                conn.rollback()
                raise
            else:
                conn.commit()
            finally:
                cur.close()

    def _is_unique_violation(self, exc: Exception) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

