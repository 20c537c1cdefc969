"""The SQL a store runs, recorded (to EXPLAIN what a query really sends)."""

from __future__ import annotations

import contextlib


class RecordedSQL:
    """While installed, every statement `store`'s transactions execute lands in `statements` as
    (sql, params). `uninstall()` puts the store back."""

    def __init__(self, store):
        self.store, self.statements = store, []
        self._original = store._transaction

        @contextlib.contextmanager
        def recording(write=False):
            with self._original(write) as cur:
                yield _RecordingCursor(cur, self.statements)

        store._transaction = recording

    def selects(self) -> list[tuple]:
        return [(sql, params) for sql, params in self.statements if sql.lstrip().upper().startswith("SELECT")]

    def uninstall(self) -> None:
        self.store._transaction = self._original


class _RecordingCursor:
    def __init__(self, cur, statements):
        self._cur, self._statements = cur, statements

    def execute(self, sql, params=()):
        self._statements.append((sql, params))
        return self._cur.execute(sql, params)

    def __getattr__(self, name):
        return getattr(self._cur, name)
