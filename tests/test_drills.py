"""Fault drills: Redis cut or slow, upstreams down, slow or dropping streams, a worker killed, PostgreSQL cut.

Each drill is bounded in traffic and time and stays on loopback. Each prints what it measured
(`pytest -s tests/test_drills.py`): requests sent and failed, the slowest call, recovery time, spend rows.
The bounds asserted are generous correctness bounds (a hang would blow them), not benchmarks.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import re
import signal
import sqlite3
import threading
import time
import uuid
from urllib.parse import urlsplit

import pytest
import requests
import yaml

from dheera_ai.router import cooldowns
from tests.conftest import MASTER_KEY
from tests.support.process import GatewayProcess
from tests.support.servers import free_port
from tests.support.tcp_proxy import TCPProxy

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
HI = [{"role": "user", "content": "hi"}]
CALL_BOUND = 3.0  # seconds: no call in a drill may take longer (the configured timeouts are far below)


def report(name: str, **measured) -> None:
    print(f"\nDRILL {name}: " + json.dumps(measured))


def deployment(api_base, name, group="gpt-4o-mini", **params):
    return {"model_name": group, "model_info": {"id": name},
            "dheera_ai_params": {"model": "openai/gpt-4o-mini", "api_base": api_base, "api_key": "sk-upstream-secret",
                                 **params}}


def gateway_config(*deployments, general=None, **router_settings):
    return {"model_list": list(deployments),
            "router_settings": {"retry_after": 0.001, "num_retries": 2, **router_settings},
            "general_settings": {"master_key": MASTER_KEY, **(general or {})}}


def timed_calls(post, count: int) -> tuple[list, float]:
    """`count` calls one after another: their answers and the slowest one's seconds."""
    answers, slowest = [], 0.0
    for _ in range(count):
        began = time.perf_counter()
        answers.append(post())
        slowest = max(slowest, time.perf_counter() - began)
    return answers, slowest


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # dict configs keep their cooldown file in the working directory
    return tmp_path


# -- Redis ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fault", ["cut", "slow"])
def test_redis_cut_or_slow_calls_go_on_and_recovery_is_automatic(make_app, upstream, proxied_redis, state_dir,
                                                                  caplog, monkeypatch, fault):
    proxy, url, prefix, direct = proxied_redis
    monkeypatch.setattr(cooldowns.RedisCooldowns, "DOWN_FOR", 0.5)  # 5 s in production; shortened to keep this quick
    caplog.set_level(logging.WARNING, logger="dheera_ai")
    upstream.always("/a/", status=500)
    app = make_app(gateway_config(deployment(upstream.url + "/a/v1", "a"), deployment(upstream.url + "/b/v1", "b"),
                                  general={"redis_url": url, "redis_key_prefix": prefix},
                                  allowed_fails=1, cooldown_time=30))
    client = app.test_client()

    def post():
        return client.post("/v1/chat/completions", headers=AUTH, json={"model": "gpt-4o-mini", "messages": HI})

    if fault == "cut":
        proxy.cut()
    else:
        proxy.delay = 1.0  # four times the cooldown store's socket timeout
    answers, slowest = timed_calls(post, 30)
    failed = sum(1 for a in answers if a.status_code != 200)
    tried_a = upstream.count("/a/")
    readiness = client.get("/health/readiness").json
    # Per-instance degradation: the failing deployment was put to rest locally, with a warning.
    assert failed == 0 and slowest < CALL_BOUND
    assert tried_a <= 2, "the local cooldown stood in for Redis"
    assert "Redis unreachable for cooldowns" in caplog.text
    assert readiness["status"] == "degraded" or readiness["cooldowns"].get("status") == "degraded"

    # Redis comes back: nothing to restart. The next failure is shared through Redis again.
    if fault == "cut":
        proxy.resume()
    else:
        proxy.delay = 0.0
        time.sleep(1.1)  # commands the slow link was still carrying reach Redis (their clients gave up)
    direct.delete(prefix + "cooldown")
    back = time.perf_counter()
    recovered = None
    while time.perf_counter() - back < 15:
        assert post().status_code == 200
        if direct.hget(prefix + "cooldown", "a") is not None:
            recovered = time.perf_counter() - back
            break
        time.sleep(0.05)
    report(f"redis-{fault}", calls=len(answers), failed=failed, slowest_call_s=round(slowest, 3),
           calls_to_failing_deployment=tried_a, recovery_s=recovered and round(recovered, 2))
    assert recovered is not None, "cooldowns never went back to Redis"


def test_redis_cut_a_known_virtual_key_keeps_working(make_app, upstream, proxied_redis, state_dir):
    proxy, url, prefix, _ = proxied_redis
    app = make_app(gateway_config(deployment(upstream.url + "/v1", "a"),
                                  general={"redis_url": url, "redis_key_prefix": prefix}))
    client = app.test_client()
    key = client.post("/key/generate", headers=AUTH, json={"key_alias": "drill"}).json["key"]
    proxy.cut()
    began = time.perf_counter()
    answers = [client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                           json={"model": "gpt-4o-mini", "messages": HI}) for _ in range(20)]
    # An admin change during the outage still works (the store's version counter carries it).
    blocked = client.post("/key/block", headers=AUTH, json={"key": key})
    refused = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                          json={"model": "gpt-4o-mini", "messages": HI})
    elapsed = time.perf_counter() - began
    report("redis-cut-keys", calls=len(answers), failed=sum(a.status_code != 200 for a in answers),
           seconds=round(elapsed, 2))
    assert all(a.status_code == 200 for a in answers)
    assert blocked.status_code == 200 and refused.status_code == 401


# -- Upstreams ------------------------------------------------------------------------------------

def test_an_upstream_that_is_down_is_routed_around_and_rests(make_app, upstream, state_dir):
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there: connection refused
    client = make_app(gateway_config(deployment(dead, "a"), deployment(upstream.url + "/b/v1", "b"),
                                     allowed_fails=1, cooldown_time=30)).test_client()
    answers, slowest = timed_calls(lambda: client.post("/v1/chat/completions", headers=AUTH,
                                                       json={"model": "gpt-4o-mini", "messages": HI}), 30)
    retried = sum(int(a.headers["x-dheera-ai-attempted-retries"]) for a in answers)
    report("upstream-down", calls=len(answers), failed=sum(a.status_code != 200 for a in answers),
           retries=retried, slowest_call_s=round(slowest, 3))
    assert all(a.status_code == 200 and a.headers["x-dheera-ai-model-id"] == "b" for a in answers)
    assert retried == 1, "after its first failure the dead deployment rested"
    assert slowest < CALL_BOUND


def test_a_slow_upstream_times_out_and_the_call_falls_back(make_app, upstream, state_dir):
    upstream.always("/slow/", delay=5.0)
    client = make_app(gateway_config(deployment(upstream.url + "/slow/v1", "slow", timeout=0.3),
                                     deployment(upstream.url + "/backup/v1", "backup", group="backup"),
                                     num_retries=0, fallbacks=[{"gpt-4o-mini": ["backup"]}])).test_client()
    answers, slowest = timed_calls(lambda: client.post("/v1/chat/completions", headers=AUTH,
                                                       json={"model": "gpt-4o-mini", "messages": HI}), 5)
    report("upstream-slow", calls=len(answers), failed=sum(a.status_code != 200 for a in answers),
           slowest_call_s=round(slowest, 3))
    assert all(a.status_code == 200 and a.headers["x-dheera-ai-model-group"] == "backup" for a in answers)
    assert all(a.headers["x-dheera-ai-attempted-fallbacks"] == "1" for a in answers)
    assert slowest < CALL_BOUND


def _stream(url, timeout=10):
    """A streamed chat over real HTTP: (status, the data payloads, seconds)."""
    began = time.perf_counter()
    with requests.post(url + "/v1/chat/completions", headers=AUTH, stream=True, timeout=timeout,
                       json={"model": "gpt-4o-mini", "messages": HI, "stream": True}) as response:
        payloads = [line[6:] for line in response.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    return response.status_code, payloads, time.perf_counter() - began


def test_streams_cut_or_stalled_by_the_upstream_end_with_an_error_event(live_app, upstream, state_dir):
    from tests.support.fake_upstream import chat_chunks

    server = live_app(gateway_config(deployment(upstream.url + "/v1", "a", stream_timeout=0.5)))
    events = chat_chunks()[:3]
    measured = {}
    for fault in ("dropped", "stalled", "before-first-chunk"):
        if fault == "dropped":
            upstream.stream(events, truncate=True)  # promises more, then closes mid-stream
        elif fault == "stalled":
            upstream.stream(events, hold=5.0)  # goes silent after three events
        else:
            upstream.drop()  # connection closed before any byte: retried invisibly
        status, payloads, seconds = _stream(server.url)
        measured[fault] = round(seconds, 3)
        assert status == 200 and seconds < CALL_BOUND, fault
        if fault == "before-first-chunk":
            assert payloads[-1] == "[DONE]"
            continue
        assert len(payloads) == 4  # the three events relayed, then the error
        error = json.loads(payloads[-1])["error"]
        assert error["type"] and error["message"]
    report("upstream-streams", seconds=measured)


# -- Load, and the spend rows it leaves ----------------------------------------------------------

PRICED = {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}
DRILL_TAG = "drill"


def mock_models(**model_info) -> list[dict]:
    """`demo` answers; `broken` fails every call with a 400 (no retry, no cooldown): both leave rows."""
    return [{"model_name": "demo", "dheera_ai_params": {"model": "mock/demo"}, "model_info": dict(model_info)},
            {"model_name": "broken", "dheera_ai_params": {"model": "mock/broken",
                                                          "mock_response": "dheera_ai.BadRequestError"},
             "model_info": dict(model_info)}]


def write_gateway_config(tmp_path, model_list, **general):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"model_list": model_list, "general_settings": {"master_key": MASTER_KEY,
                                                                                   **general}}))
    return path


class Load:
    """`threads` threads of chat calls with `key`, a new connection each (so every worker takes
    some), until `stop()` or `bound` calls a thread. Every `failing_every`-th call goes to the
    failing model. Each call carries an id of our own (`x-dheera-ai-call-id`), so even one that
    got no answer can be looked for among the spend rows. `answers`: (phase when it ended, call
    id, model, status or None when no answer came)."""

    def __init__(self, url, key, threads=3, bound=400, pause=0.0, failing_every=0):
        self.url, self.key, self.pause, self.failing_every = url, key, pause, failing_every
        self.phase = "before"
        self.answers: list[tuple] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(bound,), daemon=True) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self, bound):
        session = requests.Session()
        for n in range(bound):  # bounded even if the stop never comes
            if self._stop.wait(self.pause):
                return
            call_id = uuid.uuid4().hex
            model = "broken" if self.failing_every and n % self.failing_every == self.failing_every - 1 else "demo"
            try:
                status = session.post(self.url + "/v1/chat/completions", timeout=10,
                                      headers={"Authorization": f"Bearer {self.key}", "Connection": "close",
                                               "x-dheera-ai-call-id": call_id},
                                      json={"model": model, "messages": HI, "tags": [DRILL_TAG]}).status_code
            except requests.RequestException:
                status = None
            with self._lock:
                self.answers.append((self.phase, call_id, model, status))  # a call cut by a fault: after it

    def stop(self) -> list[tuple]:
        self._stop.set()
        for t in self._threads:
            t.join(30)
        return self.answers

    def answered(self) -> set:
        """The ids of the calls that got an answer (a 200 or an error)."""
        return {call_id for _, call_id, _, status in self.answers if status is not None}

    def count(self, phase=None, ok=None) -> int:
        """Calls (in `phase`), those that got the answer their model gives (ok=True) or not (ok=False)."""
        return sum(1 for p, _, model, status in self.answers if (phase is None or p == phase)
                   and (ok is None or ok == (status == (200 if model == "demo" else 400))))


def rows_per_call(rows: list[tuple]) -> dict[str, int]:
    """request id -> how many spend rows it has."""
    return collections.Counter(request_id for (request_id,) in rows)


def wait_for_rows(read_request_ids, answered: set, since: float, timeout=60.0) -> float | None:
    """Poll the store until every answered call has its row: seconds from `since` (None: never)."""
    deadline = time.perf_counter() + timeout
    while not answered <= rows_per_call(read_request_ids()).keys():
        if time.perf_counter() > deadline:
            return None
        time.sleep(0.1)
    return time.perf_counter() - since


def spool_pending(process) -> int:
    """Bytes of spend rows not yet in the store, over every worker's spool file."""
    return requests.get(process.url + "/health/readiness", timeout=10).json()["spend"]["spool_pending_bytes"]


def check_rows(load: Load, counted: dict[str, int]) -> dict:
    """Answered calls without a row, calls with two, rows of calls never sent, rows of calls that
    got no answer (the worker died after writing the row: either way is right)."""
    sent, got = {call_id for _, call_id, _, _ in load.answers}, load.answered()
    return {"rows": sum(counted.values()), "rows_lost": len(got - counted.keys()),
            "rows_twice": sum(1 for n in counted.values() if n > 1), "rows_unknown": len(counted.keys() - sent),
            "rows_of_unanswered_calls": len((sent - got) & counted.keys())}


# -- A worker killed -----------------------------------------------------------------------------

def test_a_worker_killed_under_load_the_other_serves_gunicorn_replaces_it_and_no_spend_row_is_lost(tmp_path):
    # The SQLite store beside the config; rows reach it every 0.5 s, so the killed worker leaves
    # some in its spool file for the others to replay.
    path = write_gateway_config(tmp_path, mock_models(**PRICED))
    process = GatewayProcess("--config", str(path), "--workers", "2", "--host", "127.0.0.1")
    load = None
    try:
        process.wait_ready()
        deadline = time.time() + 30
        while len(process.workers()) < 2 and time.time() < deadline:
            time.sleep(0.05)
        before = process.workers()
        load = Load(process.url, MASTER_KEY, threads=4, failing_every=10)
        time.sleep(1.0)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        load.phase = "after"
        killed_at = time.perf_counter()
        replaced = None
        while time.perf_counter() - killed_at < 30:
            now = process.workers()
            if victim not in now and len(now) == 2:
                replaced = time.perf_counter() - killed_at
                break
            time.sleep(0.02)
        time.sleep(1.0)  # keep the load on the replaced pair for a moment
        load.stop()
        stopped = time.perf_counter()
        served_after = requests.post(process.url + "/v1/chat/completions", timeout=10,
                                     headers={**AUTH, "x-dheera-ai-call-id": "served-after"},
                                     json={"model": "demo", "messages": HI}).status_code

        def request_ids():
            with contextlib.closing(sqlite3.connect(tmp_path / "dheera_ai.sqlite3")) as db:
                return db.execute("SELECT client_call_id FROM spend_logs WHERE client_call_id IS NOT NULL").fetchall()

        drained = wait_for_rows(request_ids, load.answered(), since=stopped)
        time.sleep(1.0)  # more rounds of both writers change nothing
        counted = rows_per_call(request_ids())
        pending = spool_pending(process)
        replayed = sum(int(n) for n in re.findall(r"from a finished process drained \((\d+) rows\)",
                                                  process.output()))
    finally:
        if load is not None:
            load.stop()
        process.close()
    rows = check_rows(load, {k: v for k, v in counted.items() if k != "served-after"})
    report("worker-sigkill", ok_before=load.count("before", ok=True), failed_before=load.count("before", ok=False),
           ok_after=load.count("after", ok=True), failed_after=load.count("after", ok=False),
           replacement_s=replaced and round(replaced, 2), rows_replayed_from_the_killed_spool=replayed,
           rows_in_after_load_s=drained and round(drained, 2), **rows)
    assert load.count("before", ok=False) == 0
    assert load.count("after", ok=True) > 0, "the surviving worker kept serving"
    assert load.count("after", ok=False) <= 4, "at most the calls in flight on the killed worker were lost"
    assert replaced is not None and served_after == 200
    # Every answered call (200 or its 400) has its row once; the killed worker's spool was replayed.
    assert drained is not None and rows["rows_lost"] == 0
    assert rows["rows_twice"] == 0 and rows["rows_unknown"] == 0
    assert pending == 0


# -- PostgreSQL stopped --------------------------------------------------------------------------

@contextlib.contextmanager
def gateway_on_cuttable_postgres(tmp_path, model_list, **general):
    """A `dheera_ai` subprocess (2 gunicorn workers) whose PostgreSQL, a fresh schema, is reached
    through a TCP proxy the drill can cut: yields (process, proxy, schema)."""
    from tests.support.services import DATABASE_URL, PostgresSchema
    from tests.test_key_cache import through

    schema = PostgresSchema()
    target = urlsplit(DATABASE_URL)
    proxy = TCPProxy(target.hostname, target.port or 5432)
    path = write_gateway_config(tmp_path, model_list, database_url=through(proxy, schema.url), **general)
    process = GatewayProcess("--config", str(path), "--workers", "2", "--host", "127.0.0.1")
    try:
        process.wait_ready()
        yield process, proxy, schema
    finally:
        proxy.cut()
        process.close()
        schema.drop()


def chat_status(process, key) -> int:
    return requests.post(process.url + "/v1/chat/completions", timeout=10,
                         headers={"Authorization": f"Bearer {key}", "Connection": "close"},
                         json={"model": "demo", "messages": HI}).status_code


def new_key(process) -> str:
    return requests.post(process.url + "/key/generate", headers=AUTH, json={}, timeout=10).json()["key"]


def known_to_both_workers(process, key) -> list[int]:
    """Making keys moves the store's version, which empties every worker's cache at its next poll:
    let that happen first, then warm both workers (new connections spread the calls)."""
    from proxy_app.virtual_keys import POLL_SECONDS

    time.sleep(POLL_SECONDS + 0.3)
    return [chat_status(process, key) for _ in range(40)]


def test_postgres_stopped_under_load_known_keys_work_unseen_ones_get_503_and_recovery_is_automatic(tmp_path):
    with gateway_on_cuttable_postgres(tmp_path, mock_models()) as (process, proxy, _):
        known, unseen = new_key(process), new_key(process)
        warm = known_to_both_workers(process, known)
        proxy.cut()
        began = time.perf_counter()
        known_answers = [chat_status(process, known) for _ in range(40)]
        unseen_answers = [chat_status(process, unseen) for _ in range(10)]
        outage_s = time.perf_counter() - began
        proxy.resume()
        back = time.perf_counter()
        failed_after, recovered = 0, None
        while time.perf_counter() - back < 30:  # each worker's pool reconnects by itself
            if chat_status(process, unseen) == 200:
                recovered = time.perf_counter() - back
                break
            failed_after += 1
        # Both workers are back: 20 calls in a row succeed (new connections spread them over the
        # workers). A worker's pool may still hold connections that died in the outage; each
        # fails one call, so this waits for a clean run, bounded, and counts what failed first.
        after, streak = [], 0
        deadline = time.perf_counter() + 10
        while recovered is not None and streak < 20 and time.perf_counter() < deadline:
            after.append(chat_status(process, unseen))
            streak = streak + 1 if after[-1] == 200 else 0
    report("postgres-stopped", known_calls=len(known_answers),
           known_failed=sum(s != 200 for s in known_answers), unseen_calls=len(unseen_answers),
           unseen_503=sum(s == 503 for s in unseen_answers), outage_calls_s=round(outage_s, 2),
           failed_after_return=failed_after + sum(s != 200 for s in after),
           recovery_s=recovered and round(recovered, 2))
    assert warm == [200] * 40
    assert known_answers == [200] * 40
    assert unseen_answers == [503] * 10  # "the store is down", never a 401 that would discard a good key
    assert outage_s < 50 * CALL_BOUND  # no worker hung on the dead store
    assert recovered is not None, "the gateway never used the store again"
    assert streak == 20, "both workers reconnect"


def test_postgres_stopped_under_load_spend_rows_are_spooled_and_stored_exactly_once(tmp_path):
    with gateway_on_cuttable_postgres(tmp_path, mock_models(**PRICED), spend_flush_seconds=0.2,
                                      local_state_dir=str(tmp_path)) as (process, proxy, schema):
        key = new_key(process)
        assert known_to_both_workers(process, key) == [200] * 40

        def stored(sql):
            return schema._admin.execute(sql.replace("spend_", f'"{schema.name}".spend_')).fetchall()

        def request_ids():
            return stored("SELECT client_call_id FROM spend_logs WHERE client_call_id IS NOT NULL")

        deadline = time.time() + 30
        while spool_pending(process) and time.time() < deadline:
            time.sleep(0.1)
        warm = set(rows_per_call(request_ids()))  # the warm-up's rows (it kept no call ids)
        load = Load(process.url, key, threads=3, bound=600, pause=0.02, failing_every=5)
        try:
            time.sleep(1.0)
            load.phase = "during"
            proxy.cut()
            time.sleep(3.0)
            spooled = spool_pending(process)
            proxy.resume()
            back = time.perf_counter()
            load.phase = "after"
            # Under the load going on: every call answered so far, the outage's too, has its row.
            drained = wait_for_rows(request_ids, load.answered(), since=back)
            time.sleep(1.0)
        finally:
            load.stop()
        complete = wait_for_rows(request_ids, load.answered(), since=back)
        time.sleep(1.0)  # more rounds of both writers change nothing
        counted = rows_per_call(request_ids())
        pending = spool_pending(process)
        # Each running total against the rows it sums, per key and per tag (costs are whole
        # micro-dollars here, so rounding to 9 places only hides the order of float additions).
        totals = {(scope, ident): (calls, prompt, completion, round(spend, 9)) for scope, ident, calls, prompt,
                  completion, spend in stored("SELECT scope, scope_id, calls, prompt_tokens, completion_tokens, "
                                              "spend FROM spend_totals WHERE scope IN ('key', 'tag')")}
        summed = {(scope, ident): (calls, prompt, completion, round(spend, 9)) for scope, ident, calls, prompt,
                  completion, spend in stored(
                      "SELECT 'key', key_hash, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost) "
                      "FROM spend_logs GROUP BY key_hash UNION ALL "
                      "SELECT 'tag', t.tag, COUNT(*), SUM(l.prompt_tokens), SUM(l.completion_tokens), SUM(l.cost) "
                      "FROM spend_logs l JOIN spend_log_tags t ON t.row_id = l.row_id GROUP BY t.tag")}
    rows = check_rows(load, {k: v for k, v in counted.items() if k not in warm})
    report("postgres-stopped-spend", calls={p: load.count(p) for p in ("before", "during", "after")},
           calls_failed=load.count(ok=False), spool_bytes_in_outage=spooled,
           drain_after_return_s=drained and round(drained, 2), **rows)
    assert load.count("during") > 0 and load.count("after") > 0
    assert load.count(ok=False) == 0, "known keys keep working; the failing model fails as it should"
    assert spooled > 0, "rows waited in the spool"
    assert drained is not None and complete is not None, "the spool was never replayed"
    assert rows["rows_lost"] == 0 and rows["rows_twice"] == 0 and rows["rows_unknown"] == 0
    assert sum(counted.values()) == len(warm) + len(load.answers), "a row a call, nothing else"
    assert pending == 0
    assert totals == summed and ("tag", DRILL_TAG) in totals and len(totals) == 2
