"""The store's spend operations: rows written exactly once, running totals, budget counters, reports.

Mixed into `SQLStore`, so it runs the same statements on SQLite and PostgreSQL. `record_spend`
is the spool's sink: it inserts each row unless its row id is already there, and only an
inserted row moves the totals and settles its budget reservations, in the same transaction.
Replaying a batch (after a crash between the store and the spool's offset) therefore changes
nothing.
"""

from __future__ import annotations

import orjson

SPEND_COLUMNS = ("row_id", "request_id", "call_type", "key_hash", "key_alias", "user_id", "team_id", "model_group",
                 "deployment", "provider", "prompt_tokens", "completion_tokens", "total_tokens", "cost",
                 "priced", "usage_estimated", "tags", "metadata", "status", "error_type", "stream",
                 "stream_cut", "retries", "fallbacks", "start_time", "end_time", "latency_ms")
FLAG_COLUMNS = ("priced", "usage_estimated", "stream", "stream_cut")
# What a spend row's owner columns are called as total scopes.
TOTAL_SCOPES = (("key", "key_hash"), ("user", "user_id"), ("team", "team_id"))
# /spend/report groupings -> the column (or tag join) they group by.
REPORT_GROUPS = {"key": "l.key_hash", "user": "l.user_id", "team": "l.team_id", "model": "l.model_group",
                 "tag": "t.tag"}
LOG_FILTERS = {"key": "l.key_hash", "user": "l.user_id", "team": "l.team_id", "model": "l.model_group"}


class BudgetRefusal:
    """Which budget a reservation hit: scope, id, what is spent and reserved, and the budget."""

    def __init__(self, scope, scope_id, spent, reserved, budget):
        self.scope, self.scope_id, self.spent, self.reserved, self.budget = scope, scope_id, spent, reserved, budget


class _Refused(Exception):
    def __init__(self, refusal: BudgetRefusal):
        super().__init__(refusal.scope)
        self.refusal = refusal


class SpendStore:
    """Spend rows, totals and budgets; needs SQLStore's `_transaction` and `_sql`."""

    # -- writing ---------------------------------------------------------------------------------

    def record_spend(self, rows: list[dict]) -> int:
        """Insert rows not stored yet, moving totals and settling budgets for those only; returns
        how many were new."""
        insert = self._sql(f"INSERT INTO spend_logs ({', '.join(SPEND_COLUMNS)}) VALUES "
                           f"({', '.join('?' for _ in SPEND_COLUMNS)}) ON CONFLICT (row_id) DO NOTHING")
        inserted = 0
        with self._transaction(write=True) as cur:
            for row in rows:
                cur.execute(insert, tuple(_encode_spend(c, row.get(c)) for c in SPEND_COLUMNS))
                if cur.rowcount != 1:
                    continue  # replayed: this row has counted already
                inserted += 1
                for tag in dict.fromkeys(row.get("tags") or ()):
                    cur.execute(self._sql("INSERT INTO spend_log_tags (row_id, tag) VALUES (?, ?)"),
                                (row["row_id"], tag))
                    self._add_total(cur, "tag", tag, row)
                for scope, column in TOTAL_SCOPES:
                    if row.get(column):
                        self._add_total(cur, scope, row[column], row)
                for scope, scope_id, window_start, reserved in row.get("budgets") or ():
                    self._ensure_counter(cur, scope, scope_id, window_start)
                    cur.execute(self._sql("UPDATE budget_counters SET spent = spent + ?, reserved = reserved - ? "
                                          "WHERE scope = ? AND scope_id = ? AND window_start = ?"),
                                (row["cost"], reserved, scope, scope_id, window_start))
        return inserted

    def _add_total(self, cur, scope, scope_id, row):
        cur.execute(self._sql(
            "INSERT INTO spend_totals (scope, scope_id, spend, calls, prompt_tokens, completion_tokens) "
            "VALUES (?, ?, ?, 1, ?, ?) ON CONFLICT (scope, scope_id) DO UPDATE SET "
            "spend = spend_totals.spend + excluded.spend, calls = spend_totals.calls + 1, "
            "prompt_tokens = spend_totals.prompt_tokens + excluded.prompt_tokens, "
            "completion_tokens = spend_totals.completion_tokens + excluded.completion_tokens"),
            (scope, scope_id, row["cost"], row["prompt_tokens"], row["completion_tokens"]))

    def _ensure_counter(self, cur, scope, scope_id, window_start):
        cur.execute(self._sql("INSERT INTO budget_counters (scope, scope_id, window_start, spent, reserved) "
                              "VALUES (?, ?, ?, 0, 0) ON CONFLICT DO NOTHING"), (scope, scope_id, window_start))

    # -- budgets ---------------------------------------------------------------------------------

    def reserve_budget(self, checks: list[tuple]) -> BudgetRefusal | None:
        """For each (scope, scope_id, window_start, budget, amount): reserve `amount` if what is
        spent and reserved is still under `budget`. All or nothing; returns the refusal, if any.

        The guarded UPDATE is atomic on both backends (PostgreSQL re-checks its WHERE against a
        row another transaction just changed), so concurrent calls cannot all slip under.
        """
        try:
            with self._transaction(write=True) as cur:
                self._fast_commit(cur)
                for scope, scope_id, window_start, budget, amount in checks:
                    self._ensure_counter(cur, scope, scope_id, window_start)
                    cur.execute(self._sql("UPDATE budget_counters SET reserved = reserved + ? WHERE scope = ? AND "
                                          "scope_id = ? AND window_start = ? AND spent + reserved < ?"),
                                (amount, scope, scope_id, window_start, budget))
                    if cur.rowcount != 1:
                        cur.execute(self._sql("SELECT spent, reserved FROM budget_counters WHERE scope = ? AND "
                                              "scope_id = ? AND window_start = ?"), (scope, scope_id, window_start))
                        spent, reserved = cur.fetchone()
                        # Raised inside the transaction, so the reservations made before it roll back.
                        raise _Refused(BudgetRefusal(scope, scope_id, spent, reserved, budget))
        except _Refused as refused:
            return refused.refusal
        return None

    def release_budget(self, reservations: list[tuple]) -> None:
        """Give back (scope, scope_id, window_start, amount) reservations of a call that will leave no row."""
        with self._transaction(write=True) as cur:
            for scope, scope_id, window_start, amount in reservations:
                cur.execute(self._sql("UPDATE budget_counters SET reserved = reserved - ? WHERE scope = ? "
                                      "AND scope_id = ? AND window_start = ?"), (amount, scope, scope_id, window_start))

    def budget_counter(self, scope: str, scope_id: str, window_start: float) -> tuple[float, float]:
        """(spent, reserved) in that budget window."""
        with self._transaction() as cur:
            cur.execute(self._sql("SELECT spent, reserved FROM budget_counters WHERE scope = ? AND scope_id = ? "
                                  "AND window_start = ?"), (scope, scope_id, window_start))
            found = cur.fetchone()
            return (found[0], found[1]) if found else (0.0, 0.0)

    def _fast_commit(self, cur) -> None:
        """Commit without waiting for the disk: a reservation lost in a database crash is only a
        call briefly not counted against a budget (the backends that can, override this)."""

    # -- reading ---------------------------------------------------------------------------------

    def spend_total(self, scope: str, scope_id: str) -> dict | None:
        with self._transaction() as cur:
            cur.execute(self._sql("SELECT spend, calls, prompt_tokens, completion_tokens FROM spend_totals "
                                  "WHERE scope = ? AND scope_id = ?"), (scope, scope_id))
            found = cur.fetchone()
        if found is None:
            return None
        return dict(zip(("spend", "calls", "prompt_tokens", "completion_tokens"), found, strict=True))

    def spend_tags(self) -> list[dict]:
        """Every tag's running total, most spent first."""
        with self._transaction() as cur:
            cur.execute("SELECT scope_id, spend, calls, prompt_tokens, completion_tokens FROM spend_totals "
                        "WHERE scope = 'tag' ORDER BY spend DESC, scope_id")
            return [dict(zip(("tag", "spend", "calls", "prompt_tokens", "completion_tokens"), r, strict=True))
                    for r in cur.fetchall()]

    def spend_logs(self, *, filters: dict, tag=None, start=None, end=None, offset=0, limit=50) -> tuple[list, int]:
        """One page of rows matching every filter (newest first) and how many match in all."""
        where, params = self._spend_where(filters, start, end)
        if tag is not None:
            where.append("l.row_id IN (SELECT row_id FROM spend_log_tags WHERE tag = ?)")
            params.append(tag)
        clause = " AND ".join(where) or "1 = 1"
        columns = ", ".join(f"l.{c}" for c in SPEND_COLUMNS)
        with self._transaction() as cur:
            cur.execute(self._sql(f"SELECT COUNT(*) FROM spend_logs l WHERE {clause}"), tuple(params))
            total = cur.fetchone()[0]
            cur.execute(self._sql(f"SELECT {columns} FROM spend_logs l WHERE {clause} "
                                  "ORDER BY l.start_time DESC, l.row_id LIMIT ? OFFSET ?"),
                        (*params, limit, offset))
            return [_decode_spend(r) for r in cur.fetchall()], total

    def spend_report(self, group_by: str, *, start=None, end=None) -> list[dict]:
        """Spend, calls and tokens per UTC day and per key, user, team, model or tag."""
        group = REPORT_GROUPS[group_by]
        where, params = self._spend_where({}, start, end)
        join = " JOIN spend_log_tags t ON t.row_id = l.row_id" if group_by == "tag" else ""
        clause = " AND ".join(where) or "1 = 1"
        day = "CAST(l.start_time AS BIGINT) / 86400"
        with self._transaction() as cur:
            cur.execute(self._sql(
                f"SELECT {day} AS day, {group} AS grp, SUM(l.cost), COUNT(*), SUM(l.prompt_tokens), "
                f"SUM(l.completion_tokens) FROM spend_logs l{join} WHERE {clause} "
                f"GROUP BY {day}, {group} ORDER BY day, grp"), tuple(params))
            return [{"day": int(d) * 86400, group_by: g, "spend": s, "calls": c, "prompt_tokens": p,
                     "completion_tokens": o} for d, g, s, c, p, o in cur.fetchall()]

    def _spend_where(self, filters, start, end) -> tuple[list, list]:
        where, params = [], []
        for name, value in filters.items():
            if value is not None:
                where.append(f"{LOG_FILTERS[name]} = ?")
                params.append(value)
        if start is not None:
            where.append("l.start_time >= ?")
            params.append(start)
        if end is not None:
            where.append("l.start_time < ?")
            params.append(end)
        return where, params


def _encode_spend(column, value):
    if column in ("tags", "metadata"):
        return orjson.dumps(value if value is not None else ({} if column == "metadata" else [])).decode()
    if column in FLAG_COLUMNS:
        return 1 if value else 0
    return value


def _decode_spend(values) -> dict:
    row = dict(zip(SPEND_COLUMNS, values, strict=True))
    row["tags"] = orjson.loads(row["tags"])
    row["metadata"] = orjson.loads(row["metadata"])
    for column in FLAG_COLUMNS:
        row[column] = bool(row[column])
    return row
