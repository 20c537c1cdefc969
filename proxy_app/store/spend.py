"""The store's spend operations: rows written exactly once, running totals, budget counters, reports.

Mixed into `SQLStore`, so it runs the same statements on SQLite and PostgreSQL. `record_spend`
is the spool's sink: it inserts each row unless its row id is already there, and only an
inserted row moves the totals and settles its budget reservations, in the same transaction.
Replaying a batch (after a crash between the store and the spool's offset) therefore changes
nothing.
"""

from __future__ import annotations

import time

import orjson

SPEND_COLUMNS = ("row_id", "request_id", "call_type", "key_hash", "key_alias", "user_id", "team_id", "model_group",
                 "deployment", "provider", "prompt_tokens", "completion_tokens", "total_tokens", "cost",
                 "priced", "usage_estimated", "tags", "metadata", "status", "error_type", "stream",
                 "stream_cut", "retries", "fallbacks", "start_time", "end_time", "latency_ms", "client_call_id",
                 "guardrails", "record_error",
                 "response_id", "cache_hit", "saved_cost")
FLAG_COLUMNS = ("priced", "usage_estimated", "stream", "stream_cut", "cache_hit")
# What a spend row's owner columns are called as total scopes.
TOTAL_SCOPES = (("key", "key_hash"), ("user", "user_id"), ("team", "team_id"))
# /spend/report groupings -> the column (or tag join) they group by.
REPORT_GROUPS = {"key": "l.key_hash", "user": "l.user_id", "team": "l.team_id", "model": "l.model_group",
                 "tag": "t.tag"}
# Costs are summed in floating point: ten calls of $0.000023 may add up to a hair under
# $0.00023. Within a billionth of a dollar, a budget counts as reached.
BUDGET_EPSILON = 1e-9
# A hold older than this belongs to a call whose worker died mid-call; it stops counting.
HOLD_SECONDS = 900
LOG_FILTERS = {"key": "l.key_hash", "user": "l.user_id", "team": "l.team_id", "model": "l.model_group",
               "request": "l.request_id"}
# `spend_log_page`'s status filter: calls that succeeded, or failed.
STATUS_FILTERS = {"ok": "l.status < 400", "error": "l.status >= 400"}


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
        how many were new. Each kind of statement goes as one batch (`executemany`: on PostgreSQL
        one round trip for the batch, not one per row)."""
        insert = self._sql(f"INSERT INTO spend_logs ({', '.join(SPEND_COLUMNS)}) VALUES "
                           f"({', '.join('?' for _ in SPEND_COLUMNS)}) ON CONFLICT (row_id) DO NOTHING")
        totals: dict[tuple, list] = {}  # (scope, id) -> [spend, calls, prompt, completion]
        spent: dict[tuple, float] = {}  # (scope, id, window) -> cost
        tag_rows, holds = [], []
        with self._transaction(write=True) as cur:
            new = self._insert_new(cur, insert, rows)  # replayed rows have counted already
            for row in new:
                tags = list(dict.fromkeys(row.get("tags") or ()))
                tag_rows += [(row["row_id"], tag, row["start_time"]) for tag in tags]
                owners = [("tag", tag) for tag in tags] + [(scope, row[column]) for scope, column in TOTAL_SCOPES
                                                            if row.get(column)]
                cost = row["cost"] or 0.0  # None: the call could not be priced
                for owner in owners:
                    total = totals.setdefault(owner, [0.0, 0, 0, 0])
                    total[0] += cost
                    total[1] += 1
                    total[2] += row["prompt_tokens"]
                    total[3] += row["completion_tokens"]
                for scope, scope_id, window_start, hold_id in row.get("budgets") or ():
                    key = (scope, scope_id, window_start)
                    # A row that could not be priced counts what could be (`budget_cost`).
                    spent[key] = spent.get(key, 0.0) + (row.get("budget_cost") or cost)
                    holds.append((hold_id, scope, scope_id))
            if tag_rows:
                cur.executemany(self._sql("INSERT INTO spend_log_tags (row_id, tag, start_time) VALUES (?, ?, ?)"),
                                tag_rows)
            # Shared rows are updated in one (sorted) order, so concurrent batches cannot deadlock.
            if totals:
                cur.executemany(self._sql(
                    "INSERT INTO spend_totals (scope, scope_id, spend, calls, prompt_tokens, completion_tokens) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (scope, scope_id) DO UPDATE SET "
                    "spend = spend_totals.spend + excluded.spend, calls = spend_totals.calls + excluded.calls, "
                    "prompt_tokens = spend_totals.prompt_tokens + excluded.prompt_tokens, "
                    "completion_tokens = spend_totals.completion_tokens + excluded.completion_tokens"),
                    [(scope, scope_id, *moved) for (scope, scope_id), moved in sorted(totals.items())])
            for (scope, scope_id, window_start), cost in sorted(spent.items()):
                self._ensure_counter(cur, scope, scope_id, window_start)
                cur.execute(self._sql("UPDATE budget_counters SET spent = spent + ? "
                                      "WHERE scope = ? AND scope_id = ? AND window_start = ?"),
                            (cost, scope, scope_id, window_start))
            if holds:
                cur.executemany(self._sql("DELETE FROM budget_holds WHERE hold_id = ? AND scope = ? AND scope_id = ?"),
                                holds)
            # Holds of calls whose worker died count no more; forget them.
            cur.execute(self._sql("DELETE FROM budget_holds WHERE created_at < ?"), (time.time() - HOLD_SECONDS,))
        return len(new)

    def _insert_new(self, cur, insert: str, rows: list[dict]) -> list[dict]:
        """Insert each row unless its id is stored already; the rows that were new. (SQLite runs
        in-process, a statement a row costs nothing; PostgreSQL batches it.)"""
        new = []
        for row in rows:
            cur.execute(insert, spend_values(row))
            if cur.rowcount == 1:
                new.append(row)
        return new

    def _ensure_counter(self, cur, scope, scope_id, window_start):
        cur.execute(self._sql("INSERT INTO budget_counters (scope, scope_id, window_start, spent) "
                              "VALUES (?, ?, ?, 0) ON CONFLICT DO NOTHING"), (scope, scope_id, window_start))

    # -- budgets ---------------------------------------------------------------------------------

    def reserve_budget(self, hold_id: str, checks: list[tuple], now: float) -> BudgetRefusal | None:
        """For each (scope, scope_id, window_start, budget, amount): hold `amount` for this call if
        what is spent plus what other live holds keep is still under `budget`. All or nothing;
        returns the refusal, if any. A hold is never negative; reserving again under the same
        `hold_id` replaces its amount.

        A hold keeps its whole estimate even where that passes what is left of the budget: the
        estimate is never below the call's real cost, so spend plus holds stays at least what the
        calls in flight will spend, and no other call is admitted on room they will use. (A hold
        trimmed to the remainder let one more call in whenever an earlier one settled.)

        The counter row is locked first (`FOR UPDATE` on PostgreSQL; SQLite's write lock covers
        the whole transaction), so concurrent calls take turns and cannot all slip under. Holds
        older than `HOLD_SECONDS` belong to calls whose worker died, and no longer count.
        """
        try:
            with self._transaction(write=True) as cur:
                self._fast_commit(cur)
                # Counter rows are locked in the one order `record_spend` updates them in (sorted),
                # so a hold and a batch waiting on each other cannot deadlock.
                for scope, scope_id, window_start, budget, amount in sorted(checks):
                    spent, held = self._counter(cur, scope, scope_id, window_start, now, lock=True,
                                                other_than=hold_id)
                    if spent + held >= budget - BUDGET_EPSILON:
                        # Raised inside the transaction, so the holds taken before it roll back.
                        raise _Refused(BudgetRefusal(scope, scope_id, spent, held, budget))
                    amount = max(float(amount), 0.0)
                    cur.execute(self._sql("INSERT INTO budget_holds (hold_id, scope, scope_id, window_start, "
                                          "amount, created_at) VALUES (?, ?, ?, ?, ?, ?) "
                                          "ON CONFLICT (hold_id, scope, scope_id) DO UPDATE SET "
                                          "amount = excluded.amount"),
                                (hold_id, scope, scope_id, window_start, amount, now))
        except _Refused as refused:
            return refused.refusal
        return None

    def release_budget(self, hold_id: str) -> None:
        """Drop a call's holds when it will leave no spend row."""
        with self._transaction(write=True) as cur:
            self._fast_commit(cur)
            cur.execute(self._sql("DELETE FROM budget_holds WHERE hold_id = ?"), (hold_id,))

    def _counter(self, cur, scope, scope_id, window_start, now, lock=False, other_than="") -> tuple[float, float]:
        """(spent, held by live holds but `other_than`'s); with `lock`, the counter row is created if
        need be and locked.

        The holds are summed by a statement of their own, after the lock: on PostgreSQL each
        statement sees what committed before it began, so the sum includes the holds of the
        transaction that had the lock before us (a subquery of the locking SELECT would not).
        """
        locking = self._sql("SELECT spent FROM budget_counters WHERE scope = ? AND scope_id = ? AND "
                            "window_start = ?" + (self._for_update() if lock else ""))
        cur.execute(locking, (scope, scope_id, window_start))
        found = cur.fetchone()
        if found is None and lock:
            self._ensure_counter(cur, scope, scope_id, window_start)
            cur.execute(locking, (scope, scope_id, window_start))
            found = cur.fetchone()
        cur.execute(self._sql("SELECT COALESCE(SUM(amount), 0) FROM budget_holds WHERE scope = ? AND scope_id = ? "
                              "AND window_start = ? AND created_at > ? AND hold_id <> ?"),
                    (scope, scope_id, window_start, now - HOLD_SECONDS, other_than))
        return (found[0] if found else 0.0), cur.fetchone()[0]

    def _for_update(self) -> str:
        """The row-lock clause where the backend needs one (PostgreSQL overrides this)."""
        return ""

    def budget_counter(self, scope: str, scope_id: str, window_start: float, now: float | None = None):
        """(spent, held by calls in flight) in that budget window."""
        with self._transaction() as cur:
            return self._counter(cur, scope, scope_id, window_start, time.time() if now is None else now)

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

    def spend_of(self, scope: str, scope_id: str) -> float:
        """Everything a key, user, team or tag has spent (stored rows), in dollars."""
        total = self.spend_total(scope, scope_id)
        return total["spend"] if total else 0.0

    def spend_tags(self, offset: int = 0, limit: int = 100) -> tuple[list[dict], int]:
        """One page of the tags' running totals, most spent first, and how many tags there are."""
        with self._transaction() as cur:
            cur.execute("SELECT COUNT(*) FROM spend_totals WHERE scope = 'tag'")
            total = cur.fetchone()[0]
            cur.execute(self._sql("SELECT scope_id, spend, calls, prompt_tokens, completion_tokens FROM spend_totals "
                                  "WHERE scope = 'tag' ORDER BY spend DESC, scope_id LIMIT ? OFFSET ?"),
                        (limit, offset))
            return [dict(zip(("tag", "spend", "calls", "prompt_tokens", "completion_tokens"), r, strict=True))
                    for r in cur.fetchall()], total

    def spend_logs(self, *, filters: dict, tag=None, start=None, end=None, offset=0, limit=50) -> tuple[list, int]:
        """One page of rows matching every filter (newest first) and how many match in all.

        Under a tag the tag table leads, through its (tag, start_time, row_id) index, and a count
        by tag and time alone never reads spend_logs: at a million rows a tag's count is an index
        range, not a scan."""
        where, params = self._spend_where(filters, start, end)
        source, counted, order = "spend_logs l", "spend_logs l", "l"
        if tag is not None:
            owner_filters = [w for w in where if not w.startswith("l.start_time")]
            where = [w.replace("l.start_time", "t.start_time") for w in where] + ["t.tag = ?"]
            params.append(tag)
            source = "spend_log_tags t JOIN spend_logs l ON l.row_id = t.row_id"
            counted = source if owner_filters else "spend_log_tags t"
            order = "t"
        clause = " AND ".join(where) or "1 = 1"
        columns = ", ".join(f"l.{c}" for c in SPEND_COLUMNS)
        with self._transaction() as cur:
            cur.execute(self._sql(f"SELECT COUNT(*) FROM {counted} WHERE {clause}"), tuple(params))
            total = cur.fetchone()[0]
            cur.execute(self._sql(f"SELECT {columns} FROM {source} WHERE {clause} "
                                  f"ORDER BY {order}.start_time DESC, {order}.row_id LIMIT ? OFFSET ?"),
                        (*params, limit, offset))
            return [_decode_spend(r) for r in cur.fetchall()], total

    def spend_log_page(self, *, filters: dict, tag=None, status=None, start=None, end=None, after=None,
                       limit=50) -> list[dict]:
        """Rows matching every filter, newest first, from just after `after` (the (start_time,
        row_id) of the previous page's last row) on.

        Keyset paging: each page is an index range read from where the last one ended (no OFFSET,
        no COUNT), so page 1,000 costs what page 1 does. Ties in start_time are ordered by row_id;
        the indexes of migration 60 carry both, so no page is sorted in memory.
        """
        where, params = self._spend_where(filters, start, end)
        if status is not None:
            where.append(STATUS_FILTERS[status])
        # Under a tag, the tag table leads (its (tag, start_time, row_id) index is the order);
        # otherwise spend_logs does, through the index of the filter it has.
        order = "t" if tag is not None else "l"
        source = "spend_logs l"
        if tag is not None:
            source = "spend_log_tags t JOIN spend_logs l ON l.row_id = t.row_id"
            where.append("t.tag = ?")
            params.append(tag)
        if after is not None:
            where.append(f"({order}.start_time < ? OR ({order}.start_time = ? AND {order}.row_id < ?))")
            params += [after[0], after[0], after[1]]
        clause = " AND ".join(where) or "1 = 1"
        columns = ", ".join(f"l.{c}" for c in SPEND_COLUMNS)
        with self._transaction() as cur:
            cur.execute(self._sql(f"SELECT {columns} FROM {source} WHERE {clause} "
                                  f"ORDER BY {order}.start_time DESC, {order}.row_id DESC LIMIT ?"), (*params, limit))
            return [_decode_spend(r) for r in cur.fetchall()]

    def spend_log_row(self, row_id: str) -> dict | None:
        columns = ", ".join(SPEND_COLUMNS)
        with self._transaction() as cur:
            cur.execute(self._sql(f"SELECT {columns} FROM spend_logs WHERE row_id = ?"), (row_id,))
            found = cur.fetchone()
        return _decode_spend(found) if found else None

    def spend_overview(self, *, start=None, end=None) -> dict:
        """Calls, failed calls, spend, tokens and mean latency in a time range."""
        where, params = self._spend_where({}, start, end)
        clause = " AND ".join(where) or "1 = 1"
        with self._transaction() as cur:
            cur.execute(self._sql(
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN l.status >= 400 THEN 1 ELSE 0 END), 0), "
                "COALESCE(SUM(l.cost), 0), COALESCE(SUM(l.total_tokens), 0), AVG(l.latency_ms) "
                f"FROM spend_logs l WHERE {clause}"), tuple(params))
            calls, errors, spend, tokens, latency = cur.fetchone()
        return {"calls": calls, "errors": errors, "spend": spend, "total_tokens": tokens,
                "mean_latency_ms": latency}

    def spend_report(self, group_by: str, *, start=None, end=None) -> list[dict]:
        """Spend, calls and tokens per UTC day and per key, user, team, model or tag."""
        group = REPORT_GROUPS[group_by]
        where, params = self._spend_where({}, start, end)
        join = " JOIN spend_log_tags t ON t.row_id = l.row_id" if group_by == "tag" else ""
        clause = " AND ".join(where) or "1 = 1"
        day = "CAST(l.start_time AS BIGINT) / 86400"
        with self._transaction() as cur:
            cur.execute(self._sql(
                f"SELECT {day} AS day, {group} AS grp, COALESCE(SUM(l.cost), 0), COUNT(*), SUM(l.prompt_tokens), "
                f"SUM(l.completion_tokens), SUM(l.cache_hit), SUM(l.saved_cost) FROM spend_logs l{join} "
                f"WHERE {clause} GROUP BY {day}, {group} ORDER BY day, grp"), tuple(params))
            return [{"day": int(d) * 86400, group_by: g, "spend": s, "calls": c, "prompt_tokens": p,
                     "completion_tokens": o, "cache_hits": int(h or 0), "saved": v or 0.0}
                    for d, g, s, c, p, o, h, v in cur.fetchall()]

    def _spend_where(self, filters, start, end) -> tuple[list, list]:
        where, params = [], []
        for name, value in filters.items():
            if value is None:
                continue
            if name == "request_id":  # ours (the call id) or LiteLLM's (the answer's id)
                where.append("(l.request_id = ? OR l.response_id = ?)")
                params += [value, value]
                continue
            where.append(f"{LOG_FILTERS[name]} = ?")
            params.append(value)
        if start is not None:
            where.append("l.start_time >= ?")
            params.append(start)
        if end is not None:
            where.append("l.start_time < ?")
            params.append(end)
        return where, params


def _json_text(empty):
    return lambda value: orjson.dumps(value if value is not None else empty).decode()


def _flag(value) -> int:
    return 1 if value else 0


# How a row's value is stored, for the columns where that is not the value itself.
_ENCODE = {"guardrails": lambda value: orjson.dumps(value).decode() if value else None,
           "tags": _json_text([]), "metadata": _json_text({}),
           # rows spooled before the response cache existed have no saved_cost
           "saved_cost": lambda value: value or 0.0,
           **dict.fromkeys(FLAG_COLUMNS, _flag)}
_ENCODED = tuple((SPEND_COLUMNS.index(column), encode) for column, encode in _ENCODE.items())


def spend_values(row: dict) -> list:
    """A spend row's values in SPEND_COLUMNS order, as the store keeps them. (Nine columns are
    encoded; choosing each column's encoding row after row cost ~5 us a row in the writer.)"""
    values = [row.get(column) for column in SPEND_COLUMNS]
    for index, encode in _ENCODED:
        values[index] = encode(values[index])
    return values


def _decode_spend(values) -> dict:
    row = dict(zip(SPEND_COLUMNS, values, strict=True))
    row["tags"] = orjson.loads(row["tags"])
    row["metadata"] = orjson.loads(row["metadata"])
    row["guardrails"] = orjson.loads(row["guardrails"]) if row["guardrails"] else []
    for column in FLAG_COLUMNS:
        row[column] = bool(row[column])
    return row
