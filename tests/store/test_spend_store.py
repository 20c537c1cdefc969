"""Spend in the store, on SQLite and PostgreSQL alike: rows once, totals, budgets, reports."""

import threading
import time
import uuid

import pytest

from proxy_app.store import store_for_url
from proxy_app.store.spend import HOLD_SECONDS


def spend_row(row_id, cost=0.5, **fields):
    row = {"row_id": row_id, "request_id": f"call-{row_id}", "call_type": "chat_completions", "key_hash": "k1",
           "key_alias": "ci", "user_id": "ann", "team_id": "eng", "model_group": "gpt-4o", "deployment": "d1",
           "provider": "openai", "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "cost": cost,
           "priced": True, "usage_estimated": False, "tags": ["prod"], "metadata": {"app": "x"}, "status": 200,
           "error_type": None, "stream": False, "stream_cut": False, "retries": 0, "fallbacks": 0,
           "start_time": 1_700_000_000.0, "end_time": 1_700_000_001.0, "latency_ms": 1000.0}
    return {**row, **fields}


def test_a_replayed_batch_is_stored_and_counted_once(store):
    batch = [spend_row("r1", tags=["prod", "eu"]), spend_row("r2", cost=0.25)]
    assert store.record_spend(batch) == 2
    assert store.record_spend(batch) == 0
    assert store.record_spend([spend_row("r3", cost=1.0), batch[0]]) == 1
    rows, total = store.spend_logs(filters={})
    assert total == 3
    assert store.spend_total("key", "k1") == {"spend": 1.75, "calls": 3, "prompt_tokens": 30, "completion_tokens": 15}
    assert store.spend_total("team", "eng")["spend"] == 1.75 and store.spend_total("user", "ann")["calls"] == 3
    assert {t["tag"]: t["spend"] for t in store.spend_tags()[0]} == {"prod": 1.75, "eu": 0.5}


def test_a_row_twice_in_one_batch_is_stored_and_counted_once(store):
    twice = spend_row("r1", tags=["prod"])
    assert store.record_spend([twice, spend_row("r2"), dict(twice)]) == 2
    assert store.spend_total("key", "k1")["calls"] == 2 and store.spend_tags()[0][0]["calls"] == 2
    assert store.spend_logs(filters={}, tag="prod")[1] == 2


def test_logs_by_tag_count_and_page_with_owner_and_time_filters(store):
    store.record_spend([spend_row(f"r{i}", key_hash=f"k{i % 2}", tags=["a", "b"] if i % 3 == 0 else ["a"],
                                  start_time=1_700_000_000.0 + i) for i in range(12)])
    rows, total = store.spend_logs(filters={}, tag="b", limit=2)
    assert total == 4 and [r["row_id"] for r in rows] == ["r9", "r6"]
    rows, total = store.spend_logs(filters={"key": "k1"}, tag="b")
    assert total == 2 and [r["row_id"] for r in rows] == ["r9", "r3"]
    rows, total = store.spend_logs(filters={}, tag="a", start=1_700_000_004.0, end=1_700_000_007.0, offset=1)
    assert total == 3 and [r["row_id"] for r in rows] == ["r5", "r4"]
    rows, total = store.spend_logs(filters={"key": "k0"}, tag="a", start=1_700_000_004.0)
    assert total == 4 and [r["row_id"] for r in rows] == ["r10", "r8", "r6", "r4"]


def test_logs_filter_and_page(store):
    store.record_spend([spend_row(f"r{i}", key_hash="k1" if i % 2 else "k2", model_group="m", tags=[f"t{i % 3}"],
                                  start_time=1_700_000_000.0 + i) for i in range(10)])
    rows, total = store.spend_logs(filters={"key": "k1"}, offset=0, limit=2)
    assert total == 5 and [r["row_id"] for r in rows] == ["r9", "r7"]
    assert rows[0]["tags"] == ["t0"] and rows[0]["metadata"] == {"app": "x"} and rows[0]["priced"] is True
    rows, total = store.spend_logs(filters={}, tag="t1")
    assert sorted(r["row_id"] for r in rows) == ["r1", "r4", "r7"]
    rows, total = store.spend_logs(filters={}, start=1_700_000_003.0, end=1_700_000_005.0)
    assert sorted(r["row_id"] for r in rows) == ["r3", "r4"]


def test_the_report_groups_by_day_and_owner(store):
    day = 1_700_006_400.0  # a UTC midnight
    store.record_spend([spend_row("a", cost=1.0, start_time=day + 10), spend_row("b", cost=2.0, start_time=day + 20),
                        spend_row("c", cost=4.0, key_hash="k2", team_id="ops", start_time=day + 86400 + 5)])
    by_key = store.spend_report("key")
    assert [(r["day"], r["key"], r["spend"], r["calls"]) for r in by_key] == [
        (day, "k1", 3.0, 2), (day + 86400, "k2", 4.0, 1)]
    by_tag = store.spend_report("tag", start=day + 86400)
    assert [(r["tag"], r["spend"]) for r in by_tag] == [("prod", 4.0)]


def test_a_budget_refuses_once_spent_and_holds_count(store):
    now = time.time()
    check = ("key", "k1", 0.0, 1.0)
    for call in ("c0", "c1", "c2"):  # 0, 0.4, 0.8 held: each still under 1.0, so admitted
        assert store.reserve_budget(call, [(*check, 0.4)], now) is None
    # ... the last holding its whole estimate, past what was left of the budget.
    assert store.budget_counter("key", "k1", 0.0) == (0.0, pytest.approx(1.2))
    refused = store.reserve_budget("c3", [(*check, 0.4)], now)
    assert (refused.scope, refused.scope_id, refused.spent, refused.budget) == ("key", "k1", 0.0, 1.0)
    # The rows settle each hold with what was spent.
    rows = [spend_row(f"r{i}", cost=0.3, budgets=[("key", "k1", 0.0, f"c{i}")]) for i in range(3)]
    store.record_spend(rows)
    assert store.budget_counter("key", "k1", 0.0) == (pytest.approx(0.9), 0)
    store.record_spend(rows)  # a replay settles nothing twice
    assert store.budget_counter("key", "k1", 0.0) == (pytest.approx(0.9), 0)


def test_a_call_admitted_on_the_last_room_holds_its_whole_estimate(store):
    # Each call is estimated at 0.4 and really costs 0.3; the budget is 1.0. With c0, c1 and c2 in
    # flight and c0 settled at 0.3, the two still in flight will spend 0.6 more: a fourth call
    # would take the spend to 1.2, so it is refused (c2's hold must not be trimmed to the 0.2 left).
    now = time.time()
    check = ("key", "k1", 0.0, 1.0)
    for call in ("c0", "c1", "c2"):
        assert store.reserve_budget(call, [(*check, 0.4)], now) is None
    store.record_spend([spend_row("r0", cost=0.3, budgets=[("key", "k1", 0.0, "c0")])])
    assert store.budget_counter("key", "k1", 0.0) == (pytest.approx(0.3), pytest.approx(0.8))
    assert store.reserve_budget("c3", [(*check, 0.4)], now) is not None
    store.record_spend([spend_row(f"r{i}", cost=0.3, budgets=[("key", "k1", 0.0, f"c{i}")]) for i in (1, 2)])
    assert store.budget_counter("key", "k1", 0.0) == (pytest.approx(0.9), 0)
    assert store.reserve_budget("c3", [(*check, 0.4)], now) is None  # 0.1 is left: one more call


def test_a_refusal_on_one_scope_holds_on_none_and_a_release_frees_the_hold(store):
    now = time.time()
    assert store.reserve_budget("c0", [("team", "eng", 0.0, 1.0, 1.0)], now) is None
    refused = store.reserve_budget("c1", [("key", "k1", 0.0, 5.0, 1.0), ("team", "eng", 0.0, 1.0, 1.0)], now)
    assert refused.scope == "team"
    assert store.budget_counter("key", "k1", 0.0) == (0.0, 0)
    store.release_budget("c0")
    assert store.budget_counter("team", "eng", 0.0) == (0.0, 0)


def test_a_hold_left_by_a_dead_worker_stops_counting(store):
    long_ago = time.time() - HOLD_SECONDS - 1
    assert store.reserve_budget("killed", [("key", "k1", 0.0, 1.0, 0.9)], long_ago) is None
    assert store.reserve_budget("alive", [("key", "k1", 0.0, 1.0, 0.9)], time.time()) is None
    assert store.budget_counter("key", "k1", 0.0) == (0.0, pytest.approx(0.9))


def test_concurrent_reservations_never_pass_the_budget(store_url, tmp_path):
    stores = [store_for_url(store_url, str(tmp_path)) for _ in range(4)]
    stores[0].migrate()
    admitted = []

    def reserve(s):
        for _ in range(10):
            if s.reserve_budget(uuid.uuid4().hex, [("key", "k9", 0.0, 2.0, 0.25)], time.time()) is None:
                admitted.append(1)

    threads = [threading.Thread(target=reserve, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(admitted) == 8  # 8 x 0.25 reaches 2.0; every later one is refused
    for s in stores:
        s.close()


def test_a_budget_reached_by_summed_costs_is_reached_despite_rounding(store):
    cost = 0.000023  # ten of these sum to a hair under 10 * cost in floating point
    store.record_spend([spend_row(f"r{i}", cost=cost, budgets=[("key", "k1", 0.0, "none")]) for i in range(10)])
    assert store.budget_counter("key", "k1", 0.0)[0] < 10 * cost
    assert store.reserve_budget("c", [("key", "k1", 0.0, 10 * cost, cost)], time.time()) is not None


def test_log_pages_follow_on_from_the_last_row_in_time_then_row_order(store):
    # Rows sharing a start time are ordered by row id, so no row is skipped or shown twice.
    store.record_spend([spend_row(f"r{i}", tags=["t"] if i % 2 else [], key_hash="k1" if i < 6 else "k2",
                                  status=500 if i % 3 == 0 else 200, start_time=1_700_000_000.0 + i // 3)
                        for i in range(9)])
    seen, after = [], None
    while True:
        page = store.spend_log_page(filters={}, after=after, limit=2)
        if not page:
            break
        seen += [r["row_id"] for r in page]
        after = (page[-1]["start_time"], page[-1]["row_id"])
    assert seen == ["r8", "r7", "r6", "r5", "r4", "r3", "r2", "r1", "r0"]
    tagged = store.spend_log_page(filters={}, tag="t", limit=2)
    assert [r["row_id"] for r in tagged] == ["r7", "r5"]
    assert [r["row_id"] for r in store.spend_log_page(filters={}, tag="t", after=(1_700_000_001.0, "r5"))] \
        == ["r3", "r1"]
    assert [r["row_id"] for r in store.spend_log_page(filters={"key": "k1"}, status="error")] == ["r3", "r0"]
    assert store.spend_log_page(filters={"request": "call-r4"})[0]["row_id"] == "r4"
    assert store.spend_log_row("r4")["tags"] == [] and store.spend_log_row("nope") is None


def test_the_overview_counts_calls_failures_spend_and_latency(store):
    store.record_spend([spend_row("a", cost=1.0, status=200, start_time=100.0),
                        spend_row("b", cost=0.0, status=429, start_time=200.0, latency_ms=3000.0),
                        spend_row("c", cost=2.0, status=200, start_time=300.0)])
    overview = store.spend_overview(start=150.0)
    assert overview == {"calls": 2, "errors": 1, "spend": 2.0, "total_tokens": 30, "mean_latency_ms": 2000.0}
    assert store.spend_overview(start=1000.0) == {"calls": 0, "errors": 0, "spend": 0, "total_tokens": 0,
                                                  "mean_latency_ms": None}
