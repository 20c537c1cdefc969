"""Fault drills: Redis cut or slow, upstreams down, slow or dropping streams, a worker killed.

Each drill is bounded in traffic and time and stays on loopback. Each prints what it measured
(`pytest -s tests/test_drills.py`): requests sent and failed, the slowest call, recovery time.
The bounds asserted are generous correctness bounds (a hang would blow them), not benchmarks.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import uuid

import pytest
import requests
import yaml

from dheera_ai.router import cooldowns
from tests.conftest import MASTER_KEY
from tests.support.process import GatewayProcess
from tests.support.servers import free_port
from tests.support.services import redis_url
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

@pytest.fixture
def proxied_redis():
    """Redis behind a TCP proxy this test can cut or slow, and a key prefix of its own."""
    import redis

    url = redis_url()
    target = redis.connection.parse_url(url)
    proxy = TCPProxy(target.get("host", "127.0.0.1"), target.get("port", 6379))
    prefix = f"dheera_ai-drill-{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(url, socket_timeout=2)
    yield proxy, f"redis://127.0.0.1:{proxy.port}/{target.get('db', 0)}", prefix, client
    proxy.cut()
    keys = list(client.scan_iter(prefix + "*"))
    if keys:
        client.delete(*keys)


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


# -- A worker killed -----------------------------------------------------------------------------

def _workers(master_pid: int) -> set[int]:
    with open(f"/proc/{master_pid}/task/{master_pid}/children") as f:
        return {int(pid) for pid in f.read().split()}


def test_a_worker_killed_under_load_the_other_serves_and_gunicorn_replaces_it(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"model_list": [{"model_name": "demo", "dheera_ai_params": {"model": "mock/demo"}}],
                                    "general_settings": {"master_key": MASTER_KEY}}))
    process = GatewayProcess("--config", str(path), "--workers", "2", "--host", "127.0.0.1")
    results = {"before": [0, 0], "after": [0, 0]}  # [ok, failed]
    killed_at = {}
    stop = threading.Event()

    def load():
        session = requests.Session()
        for _ in range(400):  # bounded even if the stop never comes
            if stop.is_set():
                return
            try:
                # A new connection each time, so both workers take calls.
                ok = session.post(process.url + "/v1/chat/completions", headers={**AUTH, "Connection": "close"},
                                  json={"model": "demo", "messages": HI}, timeout=5).status_code == 200
            except requests.RequestException:
                ok = False
            results["after" if killed_at else "before"][0 if ok else 1] += 1  # a call cut by the kill: after

    try:
        process.wait_ready()
        deadline = time.time() + 30
        while len(_workers(process.process.pid)) < 2 and time.time() < deadline:
            time.sleep(0.05)
        before = _workers(process.process.pid)
        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        killed_at["t"] = time.perf_counter()
        replaced = None
        while time.perf_counter() - killed_at["t"] < 30:
            now = _workers(process.process.pid)
            if victim not in now and len(now) == 2:
                replaced = time.perf_counter() - killed_at["t"]
                break
            time.sleep(0.02)
        time.sleep(1.0)  # keep the load on the replaced pair for a moment
        stop.set()
        for t in threads:
            t.join(30)
        served_after = requests.post(process.url + "/v1/chat/completions", headers=AUTH, timeout=10,
                                     json={"model": "demo", "messages": HI}).status_code
    finally:
        stop.set()
        process.close()
    report("worker-sigkill", ok_before=results["before"][0], failed_before=results["before"][1],
           ok_after=results["after"][0], failed_after=results["after"][1],
           replacement_s=replaced and round(replaced, 2))
    assert results["before"][1] == 0
    assert results["after"][0] > 0, "the surviving worker kept serving"
    assert results["after"][1] <= 4, "at most the calls in flight on the killed worker were lost"
    assert replaced is not None and served_after == 200


# -- PostgreSQL stopped (the keys part; spend rows and their replay come with spend logging) -----

def test_postgres_stopped_under_load_known_keys_work_unseen_ones_get_503_and_recovery_is_automatic(tmp_path):
    from urllib.parse import urlsplit

    from proxy_app.virtual_keys import POLL_SECONDS
    from tests.support.services import DATABASE_URL, PostgresSchema
    from tests.test_key_cache import through

    schema = PostgresSchema()
    target = urlsplit(DATABASE_URL)
    proxy = TCPProxy(target.hostname, target.port or 5432)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"model_list": [{"model_name": "demo", "dheera_ai_params": {"model": "mock/demo"}}],
                                    "general_settings": {"master_key": MASTER_KEY,
                                                         "database_url": through(proxy, schema.url)}}))
    process = GatewayProcess("--config", str(path), "--workers", "2", "--host", "127.0.0.1")

    def call(key):
        return requests.post(process.url + "/v1/chat/completions", timeout=10,
                             headers={"Authorization": f"Bearer {key}", "Connection": "close"},
                             json={"model": "demo", "messages": HI}).status_code

    def make():
        return requests.post(process.url + "/key/generate", headers=AUTH, json={}, timeout=10).json()["key"]

    try:
        process.wait_ready()
        known, unseen = make(), make()
        # Making keys moves the store's version, which empties every worker's cache at its next
        # poll: let that happen first, then warm both workers (new connections spread the calls).
        time.sleep(POLL_SECONDS + 0.3)
        warm = [call(known) for _ in range(40)]
        proxy.cut()
        began = time.perf_counter()
        known_answers = [call(known) for _ in range(40)]
        unseen_answers = [call(unseen) for _ in range(10)]
        outage_s = time.perf_counter() - began
        proxy.resume()
        back = time.perf_counter()
        failed_after, recovered = 0, None
        while time.perf_counter() - back < 30:  # each worker's pool reconnects by itself
            if call(unseen) == 200:
                recovered = time.perf_counter() - back
                break
            failed_after += 1
        # Both workers are back: 20 calls in a row succeed (new connections spread them over the
        # workers). A worker's pool may still hold connections that died in the outage; each
        # fails one call, so this waits for a clean run, bounded, and counts what failed first.
        after, streak = [], 0
        deadline = time.perf_counter() + 10
        while recovered is not None and streak < 20 and time.perf_counter() < deadline:
            after.append(call(unseen))
            streak = streak + 1 if after[-1] == 200 else 0
    finally:
        proxy.cut()
        process.close()
        schema.drop()
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
