"""The spend writer at scale, on PostgreSQL (issue 19):

    .venv/bin/python -m tests.bench.spend_writer [--rows 100000] [--fill 1000000] [--url postgresql://...]

1. How big a row is: one real call through the gateway (the mock model, tags and metadata as the
   seed page sends them), its spool line measured.
2. How fast the writer drains: `--rows` copies of that row (new ids, 500 keys, 100 users, 20
   teams, a row every 2.6 s so a million are a month, a tag on every tenth) appended to a
   spool, then drained into the store exactly as the gateway's writer does (`Spool.drain` into
   `record_spend`, `WRITER_BATCH_ROWS` a batch, running totals moved).
3. How `/spend/logs` answers at `--fill` rows: the store's own queries by key, team, tag and time,
   the median of 20 of each, and their plans (EXPLAIN: index reads, never a scan of spend_logs).

A fresh schema in the database (DATABASE_URL, as the tests use it), dropped at the end.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import tempfile
import time

import orjson

from proxy_app.spend import WRITER_BATCH_ROWS
from proxy_app.spool import Spool

MASTER = "sk-writer-master"
BODY = {"model": "demo", "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
        "mock_response": "Hello! I am a mock model.", "tags": ["eval"],
        "metadata": {"generation_name": "greeting", "trace_id": "trace-1", "trace_user_id": "user-1"}}


def real_row() -> dict:
    """The spool row of one call through the gateway."""
    import plugins
    from proxy_app import create_app

    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as state:
        config = {"model_list": [{"model_name": "demo", "dheera_ai_params": {"model": "mock/demo"}}],
                  "general_settings": {"master_key": MASTER, "database_url": f"sqlite:///{state}/state.sqlite3",
                                       "spend_flush_seconds": 3600}}
        app = create_app(config, load_entrypoints=False,
                         plugins=[importlib.import_module(name) for name in plugins.BUILTIN])
        answer = app.test_client().post("/v1/chat/completions", json=BODY,
                                        headers={"Authorization": f"Bearer {MASTER}"})
        assert answer.status_code == 200, answer.get_data(as_text=True)
        spool_dir = os.path.join(state, "dheera_ai-spool")
        lines = [line for name in os.listdir(spool_dir) if name.endswith(".jsonl")
                 for line in open(os.path.join(spool_dir, name), "rb") if line.strip()]
        app.extensions["dheera_ai_state"].close()
    return orjson.loads(lines[-1])


SPACING = 2.6  # seconds between rows: a million rows are a month of traffic


def rows_like(template: dict, count: int, start: float, first: int = 0):
    for i in range(first, first + count):
        row = dict(template)
        row_id = f"{i:012d}"
        at = start + i * SPACING
        row.update(row_id=row_id, request_id=f"call-{row_id}", key_hash=f"key-{i % 500}", team_id=f"team-{i % 20}",
                   user_id=f"user-{i % 100}", start_time=at, end_time=at + 0.3,
                   tags=["batch"] if i % 10 == 0 else ["eval"], budgets=[])
        yield row


def drain_rate(store, template: dict, rows: int, start: float) -> float:
    with tempfile.TemporaryDirectory() as directory:
        spool = Spool(directory)
        for row in rows_like(template, rows, start):
            spool.append_encoded(orjson.dumps(row))
        began = time.perf_counter()
        handed = spool.drain(store.record_spend, batch_rows=WRITER_BATCH_ROWS)
        elapsed = time.perf_counter() - began
    assert handed == rows, (handed, rows)
    return rows / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--fill", type=int, default=1_000_000)
    parser.add_argument("--url", default=None, help="PostgreSQL database (default: the tests' DATABASE_URL)")
    args = parser.parse_args()
    if args.url:
        os.environ["DATABASE_URL"] = args.url
    from proxy_app.store import store_for_url
    from tests.support.recorded_sql import RecordedSQL
    from tests.support.services import PostgresSchema

    template = real_row()
    size = len(orjson.dumps(template))
    print(f"a spend row: {size} bytes as spooled ({len(template)} fields)")
    schema = PostgresSchema()
    schema._admin.execute(f'SET search_path TO "{schema.name}"')  # EXPLAIN and ANALYZE below see its tables
    store = store_for_url(schema.url, tempfile.gettempdir())
    try:
        store.migrate()
        start = time.time() - args.fill * SPACING
        rate = drain_rate(store, template, args.rows, start)
        print(f"writer: {args.rows} rows drained at {rate:,.0f} rows/s (batches of {WRITER_BATCH_ROWS})")
        filled, began = args.rows, time.perf_counter()
        while filled < args.fill:
            batch = list(rows_like(template, min(5000, args.fill - filled), start, first=filled))
            store.record_spend(batch)
            filled += len(batch)
        print(f"filled to {filled:,} rows in {time.perf_counter() - began:.0f} s")
        # What autovacuum does after a load like this (PostgreSQL 13+ vacuums after inserts too):
        # statistics, and the visibility map that lets a count read the index alone.
        schema._admin.execute("VACUUM ANALYZE spend_logs")
        schema._admin.execute("VACUUM ANALYZE spend_log_tags")
        size_on_disk = schema.query("SELECT pg_total_relation_size('spend_logs')")[0][0]
        print(f"spend_logs on disk: {size_on_disk / filled:,.0f} bytes a row with its indexes")
        middle = start + filled * SPACING / 2
        queries = {"by key": {"filters": {"key": "key-7"}}, "by team": {"filters": {"team": "team-3"}},
                   "by tag": {"filters": {}, "tag": "batch"},
                   "by time (one hour)": {"filters": {}, "start": middle, "end": middle + 3600},
                   "by key and time (one day)": {"filters": {"key": "key-7"}, "start": middle, "end": middle + 86400}}
        recording = RecordedSQL(store)
        print(f"{'query':<28}{'/spend/logs (with count)':>26}{'UI page (keyset)':>20}   plan")
        for label, query in queries.items():
            recording.statements.clear()
            timings = {}
            for name, run in (("spend_logs", lambda query=query: store.spend_logs(**query, limit=50)),
                              ("spend_log_page", lambda query=query: store.spend_log_page(**query, limit=50))):
                samples = []
                for _ in range(20):
                    began = time.perf_counter()
                    run()
                    samples.append(time.perf_counter() - began)
                timings[name] = statistics.median(samples) * 1000
            seen = dict(recording.selects())
            scans = [line for sql, params in seen.items() for (line,) in schema.query("EXPLAIN " + sql, *params)
                     if "Seq Scan on spend_logs" in line]
            print(f"{label:<28}{timings['spend_logs']:23.1f} ms{timings['spend_log_page']:17.1f} ms   "
                  f"{'a scan of spend_logs' if scans else 'index reads'}")
    finally:
        store.close()
        schema.drop()


if __name__ == "__main__":
    main()
