"""Opening the SQLite files that a gateway's workers share: the state store, the rate-limit
counters and the cooldowns. One opener, so each gets the same busy handling."""

from __future__ import annotations

import os
import sqlite3
import time


def open_shared(path: str, timeout_s: float, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """A connection in WAL mode that waits up to `timeout_s` for other processes' locks.

    isolation_level=None: callers issue BEGIN themselves, so a write takes its lock up front.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=timeout_s)
    conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
    _enable_wal(conn, timeout_s)
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    # SQLite's own page cache (2 MB a connection by default) fills as spend rows go in and is
    # never given back; the kernel's page cache holds these files anyway. 256 KB keeps a
    # worker's memory flat: ~2 MB less per worker after a benchmark run.
    conn.execute("PRAGMA cache_size = -256")
    return conn


def _enable_wal(conn: sqlite3.Connection, timeout_s: float) -> None:
    """Switch a new file to WAL. The switch needs an exclusive lock, and SQLite answers
    "database is locked" at once (busy_timeout does not apply) when another process opening the
    same new file holds a lock: workers starting together wait for each other here instead."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
