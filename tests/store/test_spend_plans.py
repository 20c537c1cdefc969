"""/spend/logs at scale on PostgreSQL: every query the store makes for a filter by key, team,
tag or time is an index read, never a scan of spend_logs, once the planner knows the table's size
(200,000 rows, a month of traffic: 500 keys, 20 teams, one tag on every tenth row, another on the rest)."""

import pytest

from proxy_app.store import store_for_url
from tests.support.recorded_sql import RecordedSQL

ROWS = 200_000
START = 1_780_000_000.0
SPACING = 13.0  # seconds between rows: a month


@pytest.fixture(scope="module")
def big_postgres(tmp_path_factory):
    from tests.support.services import PostgresSchema

    schema = PostgresSchema()
    store = store_for_url(schema.url, str(tmp_path_factory.mktemp("plans")))
    store.migrate()
    admin = schema._admin
    admin.execute(f'SET search_path TO "{schema.name}"')
    # Rows made in the database (the writer's speed is the bench's business, not this test's).
    admin.execute(f"""INSERT INTO spend_logs (row_id, request_id, call_type, key_hash, key_alias, user_id, team_id,
        model_group, deployment, provider, prompt_tokens, completion_tokens, total_tokens, cost, priced,
        usage_estimated, tags, metadata, status, stream, stream_cut, retries, fallbacks, start_time, end_time,
        latency_ms)
      SELECT lpad(i::text, 12, '0'), 'call-' || i, 'chat_completions', 'key-' || (i % 500), NULL,
        'user-' || (i % 100), 'team-' || (i % 20), 'gpt-4o-mini', 'd1', 'openai', 100, 50, 150, 0.0001, 1, 0,
        CASE WHEN i % 10 = 0 THEN '["batch"]' ELSE '["eval"]' END, '{{}}', 200, 0, 0, 0, 0,
        {START} + i * {SPACING}, {START} + i * {SPACING} + 0.4, 400
      FROM generate_series(0, {ROWS - 1}) AS i""")
    admin.execute(f"""INSERT INTO spend_log_tags (row_id, tag, start_time)
      SELECT lpad(i::text, 12, '0'), CASE WHEN i % 10 = 0 THEN 'batch' ELSE 'eval' END, {START} + i * {SPACING}
      FROM generate_series(0, {ROWS - 1}) AS i""")
    admin.execute("VACUUM ANALYZE spend_logs")
    admin.execute("VACUUM ANALYZE spend_log_tags")
    yield store, schema
    store.close()
    schema.drop()


MIDDLE = START + ROWS * SPACING / 2
QUERIES = {"key": {"filters": {"key": "key-7"}}, "team": {"filters": {"team": "team-3"}},
           "user": {"filters": {"user": "user-42"}}, "tag": {"filters": {}, "tag": "batch"},
           "tag and key": {"filters": {"key": "key-70"}, "tag": "batch"},
           "an hour": {"filters": {}, "start": MIDDLE, "end": MIDDLE + 3600},
           "a key over a day": {"filters": {"key": "key-7"}, "start": MIDDLE, "end": MIDDLE + 86400},
           "a tag over a day": {"filters": {}, "tag": "batch", "start": MIDDLE, "end": MIDDLE + 86400}}


@pytest.mark.parametrize("name", list(QUERIES))
def test_spend_log_queries_at_200000_rows_read_indexes_never_scan_the_table(big_postgres, name):
    store, schema = big_postgres
    recorded = RecordedSQL(store)
    query = QUERIES[name]
    try:
        rows, total = store.spend_logs(**query, limit=50)
        page = store.spend_log_page(**query, limit=50)
    finally:
        recorded.uninstall()
    assert rows and page and total >= len(rows)
    assert [r["row_id"] for r in rows] == [r["row_id"] for r in page][:len(rows)]  # newest first, both ways
    selects = recorded.selects()
    assert len(selects) == 3  # the count, the page and the keyset page
    for sql, params in selects:
        plan = "\n".join(line for (line,) in schema.query("EXPLAIN " + sql, *params))
        assert "Seq Scan on spend_logs" not in plan and "Seq Scan on spend_log_tags" not in plan, f"{sql}\n{plan}"
