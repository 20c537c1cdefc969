"""The SQLite files workers share (store, rate-limit counters, cooldowns) open the same way."""

import sqlite3
import threading

from dheera_ai.sqlite_files import open_shared


def test_workers_opening_a_new_file_together_all_get_wal(tmp_path):
    path = str(tmp_path / "shared" / "new.sqlite3")
    modes, errors = [], []

    def open_it():
        try:
            conn = open_shared(path, 5.0)
            conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
            modes.append(conn.execute("PRAGMA journal_mode").fetchone()[0])
            conn.close()
        except sqlite3.Error as e:
            errors.append(e)

    threads = [threading.Thread(target=open_it) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert modes == ["wal"] * 8


def test_the_durability_setting_is_the_callers(tmp_path):
    conn = open_shared(str(tmp_path / "counters.sqlite3"), 1.0, synchronous="OFF")
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 0
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 1000
