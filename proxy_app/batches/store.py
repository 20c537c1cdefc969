"""Batches in the state store: the OpenAI object's fields, the runner's lease, each line's result.

Exactly one runner works on a batch at a time, across every worker and instance sharing the store:
it holds the batch's lease (`lease_owner` until `lease_until`), renews it while it works, and a
lease that ran out (its runner died) is taken by whichever runner asks next. A line's result is
inserted at most once (its primary key) and the batch's counts move in the same transaction, so a
line is done exactly when its result is stored, however often a runner is killed and resumed.
"""

from __future__ import annotations

import time

import orjson

COLUMNS = ("batch_id", "owner", "team_id", "principal_kind", "key_hash", "endpoint", "completion_window",
           "input_file_id", "status", "model", "output_file_id", "error_file_id", "errors", "metadata",
           "request_total", "request_completed", "request_failed", "input_tokens", "output_tokens",
           "created_at", "expires_at", "in_progress_at", "finalizing_at", "completed_at", "failed_at",
           "expired_at", "cancelling_at", "cancelled_at", "deployment", "upstream_id", "lease_owner", "lease_until",
           "spend_recorded")
JSON_COLUMNS = ("errors", "metadata")
# Statuses a gateway runner still has work in; the others are final.
OPEN = ("validating", "in_progress", "finalizing", "cancelling")
FINAL = ("completed", "failed", "expired", "cancelled")
PAGE = 1000


class BatchStore:
    def __init__(self, store, ready=lambda: None):
        self.store = store
        self._ready = ready

    def _run(self, statement: str, args=(), write: bool = False, fetch: str | None = None):
        store = self.store
        self._ready()
        with store._transaction(write=write) as cur:
            cur.execute(store._sql(statement), args)
            if fetch == "one":
                return cur.fetchone()
            if fetch == "all":
                return cur.fetchall()
            return cur.rowcount

    # -- the batch object ------------------------------------------------------------------------

    def create(self, row: dict) -> None:
        row = {**{c: None for c in COLUMNS}, "request_total": 0, "request_completed": 0, "request_failed": 0,
               "input_tokens": 0, "output_tokens": 0, "lease_until": 0, "spend_recorded": 0, **row}
        values = tuple(orjson.dumps(row[c]).decode() if c in JSON_COLUMNS and row[c] is not None else row[c]
                       for c in COLUMNS)
        self._run(f"INSERT INTO batches ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})",
                  values, write=True)

    def get(self, batch_id: str) -> dict | None:
        found = self._run(f"SELECT {', '.join(COLUMNS)} FROM batches WHERE batch_id = ?", (batch_id,), fetch="one")
        return _decode(found) if found else None

    def list(self, viewer, after_row: dict | None, limit: int) -> list[dict]:
        """Up to `limit` + 1 of the viewer's batches, newest first, after `after_row`."""
        where, args = [], []
        if not viewer.admin:
            where.append("(owner = ? OR (team_id IS NOT NULL AND team_id = ?))")
            args += [viewer.owner, viewer.team_id or ""]
        if after_row is not None:
            where.append("(created_at, batch_id) < (?, ?)")
            args += [after_row["created_at"], after_row["batch_id"]]
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self._run(f"SELECT {', '.join(COLUMNS)} FROM batches {clause}"
                         f"ORDER BY created_at DESC, batch_id DESC LIMIT ?", (*args, limit + 1), fetch="all")
        return [_decode(found) for found in rows]

    def update(self, batch_id: str, changes: dict, statuses=None, lease_owner: str | None = None) -> bool:
        """Change a batch's fields; only while it is in one of `statuses` and, with `lease_owner`,
        only while that runner holds it. True when it changed."""
        sets = ", ".join(f"{column} = ?" for column in changes)
        values = [orjson.dumps(v).decode() if c in JSON_COLUMNS and v is not None else v for c, v in changes.items()]
        where, args = "batch_id = ?", [batch_id]
        if statuses:
            where += f" AND status IN ({', '.join('?' for _ in statuses)})"
            args += list(statuses)
        if lease_owner is not None:
            where += " AND lease_owner = ?"
            args.append(lease_owner)
        return self._run(f"UPDATE batches SET {sets} WHERE {where}", (*values, *args), write=True) > 0

    # -- the runner's lease ----------------------------------------------------------------------

    def claim(self, runner: str, lease_seconds: float) -> dict | None:
        """A batch with work left whose lease is free (never taken, or its runner stopped renewing),
        now leased to `runner`; None when there is none. Work left: a gateway-run batch that is not
        final, or a forwarded one whose spend rows are not yet recorded."""
        now = time.time()
        candidates = self._run(f"SELECT batch_id FROM batches WHERE lease_until < ? AND (status IN "
                               f"({', '.join('?' for _ in OPEN)}) AND deployment IS NULL OR deployment IS NOT NULL "
                               "AND spend_recorded = 0) ORDER BY created_at LIMIT 10", (now, *OPEN), fetch="all")
        for (batch_id,) in candidates:
            # Whoever's UPDATE matches first has it: the condition is checked again under the row's lock.
            taken = self._run("UPDATE batches SET lease_owner = ?, lease_until = ? WHERE batch_id = ? "
                              "AND lease_until < ?", (runner, now + lease_seconds, batch_id, now), write=True)
            if taken:
                return self.get(batch_id)
        return None

    def renew(self, batch_id: str, runner: str, lease_seconds: float) -> dict | None:
        """The batch as it is now, its lease extended; None if `runner` no longer holds it."""
        if not self.update(batch_id, {"lease_until": time.time() + lease_seconds}, lease_owner=runner):
            return None
        return self.get(batch_id)

    def release(self, batch_id: str, runner: str) -> None:
        self.update(batch_id, {"lease_until": 0, "lease_owner": None}, lease_owner=runner)

    # -- results ---------------------------------------------------------------------------------

    def record_result(self, batch_id: str, line: int, ok: bool, result: bytes, input_tokens: int = 0,
                      output_tokens: int = 0) -> bool:
        """Store one line's result and count it, in one transaction; False if it was stored already."""
        store = self.store
        self._ready()
        with store._transaction(write=True) as cur:
            cur.execute(store._sql("INSERT INTO batch_results (batch_id, line, ok, result) VALUES (?, ?, ?, ?) "
                                   "ON CONFLICT (batch_id, line) DO NOTHING"),
                        (batch_id, line, int(ok), result.decode()))
            if cur.rowcount != 1:
                return False
            counter = "request_completed" if ok else "request_failed"
            cur.execute(store._sql(f"UPDATE batches SET {counter} = {counter} + 1, input_tokens = input_tokens + ?, "
                                   "output_tokens = output_tokens + ? WHERE batch_id = ?"),
                        (input_tokens, output_tokens, batch_id))
            return True

    def done_lines(self, batch_id: str):
        """The line numbers with a stored result, ascending, read a page at a time."""
        for line, _ok, _result in self.results(batch_id, with_text=False):
            yield line

    def results(self, batch_id: str, with_text: bool = True):
        """(line, ok, result) of every stored result in line order, a page at a time (no
        transaction stays open between pages, so runners and requests go on meanwhile)."""
        last = -1
        column = "result" if with_text else "''"
        while True:
            rows = self._run(f"SELECT line, ok, {column} FROM batch_results WHERE batch_id = ? AND line > ? "
                             "ORDER BY line LIMIT ?", (batch_id, last, PAGE), fetch="all")
            yield from rows
            if len(rows) < PAGE:
                return
            last = rows[-1][0]


def _decode(found) -> dict:
    row = dict(zip(COLUMNS, found, strict=True))
    for column in JSON_COLUMNS:
        if row[column] is not None:
            row[column] = orjson.loads(row[column])
    return row
