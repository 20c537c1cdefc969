"""Spend through faults: a database outage, a killed worker, and limits across gunicorn workers."""

import os
import signal
import sqlite3
import time
from urllib.parse import urlsplit, urlunsplit

import requests
import yaml

from tests.conftest import MASTER_KEY
from tests.support.calls import post_many, wait_for
from tests.support.fake_upstream import chat_chunks
from tests.support.process import GatewayProcess
from tests.support.servers import hang_up_mid_stream
from tests.support.services import PostgresSchema
from tests.support.tcp_proxy import TCPProxy
from tests.test_spend import PLAIN_COST, PRICES, _eventually

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


def chat(url, key=MASTER_KEY, tags=("faults",)):
    return requests.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=10,
                         json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                               "tags": list(tags), "max_tokens": 7})


def through(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = (f"{parts.username}@" if parts.username else "") + f"127.0.0.1:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def test_rows_made_while_the_database_is_down_reach_it_exactly_once(live_app, base_config, tmp_path):
    schema = PostgresSchema()
    target = urlsplit(schema.url)
    proxy = TCPProxy(target.hostname, target.port or 5432)
    base_config["model_list"][0]["model_info"] = dict(PRICES)
    base_config["general_settings"].update(database_url=through(schema.url, proxy.port), spend_flush_seconds=0.05,
                                           local_state_dir=str(tmp_path))

    def stored():
        return schema._admin.execute(f'SELECT COUNT(*), COUNT(DISTINCT request_id) FROM "{schema.name}".spend_logs'
                                     ).fetchone()

    try:
        gateway = live_app(base_config)
        ids = [chat(gateway.url).headers["x-dheera-ai-call-id"] for _ in range(3)]
        assert wait_for(stored, (3, 3)) == (3, 3)

        proxy.cut()
        during = [chat(gateway.url) for _ in range(5)]
        assert [r.status_code for r in during] == [200] * 5  # spend never fails a call
        ids += [r.headers["x-dheera-ai-call-id"] for r in during]
        time.sleep(0.3)  # the writer tries, fails, and keeps the rows
        readiness = requests.get(gateway.url + "/health/readiness", timeout=10).json()
        assert readiness["state_store"]["status"] == "unreachable"
        assert readiness["spend"]["spool_pending_bytes"] > 0

        proxy = TCPProxy(target.hostname, target.port or 5432, port=proxy.port)  # the database is back
        assert wait_for(stored, (8, 8)) == (8, 8)
        time.sleep(0.3)  # more rounds of the writer change nothing
        assert stored() == (8, 8)
        print("store outage: 8 calls (5 while it was down), 8 rows, 0 lost, 0 twice")
        found = {r[0] for r in schema._admin.execute(f'SELECT request_id FROM "{schema.name}".spend_logs')}
        assert found == set(ids)
        calls, spend = schema._admin.execute(
            f"SELECT calls, spend FROM \"{schema.name}\".spend_totals WHERE scope = 'tag' AND scope_id = 'faults'"
        ).fetchone()
        assert calls == 8 and abs(spend - 8 * PLAIN_COST) < 1e-12
        assert requests.get(gateway.url + "/health/readiness", timeout=10).json()["spend"]["spool_pending_bytes"] == 0
    finally:
        proxy.cut()
        schema.drop()


def write_config(tmp_path, upstream, **general):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "model_list": [{"model_name": "gpt-4o-mini", "model_info": PRICES, "dheera_ai_params": {
            "model": "openai/gpt-4o-mini", "api_base": upstream.url + "/v1", "api_key": "sk-up"}}],
        "general_settings": {"master_key": MASTER_KEY, **general}}))
    return path


def test_a_killed_worker_loses_no_rows(tmp_path, upstream):
    # The writer never runs on its own here: only the worker that replaces the killed one drains.
    gateway = GatewayProcess("--config", str(write_config(tmp_path, upstream, spend_flush_seconds=3600)),
                             "--workers", "1", "--host", "127.0.0.1")
    try:
        gateway.wait_ready()
        ids = {chat(gateway.url).headers["x-dheera-ai-call-id"] for _ in range(5)}
        [worker] = gateway.workers()
        os.kill(worker, signal.SIGKILL)

        def stored():
            with sqlite3.connect(tmp_path / "dheera_ai.sqlite3") as db:
                return {r[0] for r in db.execute("SELECT request_id FROM spend_logs")}

        assert wait_for(stored, ids) == ids
        assert gateway.workers() - {worker}
    finally:
        gateway.close()


def test_a_client_hanging_up_under_gunicorn_closes_the_upstream_and_is_billed_for_what_it_got(tmp_path, upstream):
    words = [f" word{i:03d}" for i in range(300)]  # 8 characters each: 2 tokens a word
    upstream.stream(chat_chunks(words=words), event_delay=0.01)  # its usage would come at the end
    gateway = GatewayProcess("--config", str(write_config(tmp_path, upstream, spend_flush_seconds=0.05)),
                             "--workers", "1", "--host", "127.0.0.1")

    def rows():
        with sqlite3.connect(tmp_path / "dheera_ai.sqlite3") as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT * FROM spend_logs")]

    try:
        gateway.wait_ready()
        received = hang_up_mid_stream(gateway.url, MASTER_KEY, {"model": "gpt-4o-mini", "stream": True,
                                                                "messages": [{"role": "user", "content": "count"}]},
                                      enough=lambda received: received.count(b"word") >= 20)
        closed = wait_for(lambda: upstream.closed_streams, 1)
        [row] = _eventually(rows, timeout=15)
    finally:
        gateway.close()
    assert closed == 1, "the upstream connection was closed when the client left"
    assert (row["status"], row["stream"], row["stream_cut"], row["usage_estimated"]) == (200, 1, 1, 1)
    # At least what the client read, never the whole answer it left.
    assert 2 * received.count(b"word") <= row["completion_tokens"] < 2 * len(words)
    assert abs(row["cost"] - (row["prompt_tokens"] * 1e-6 + row["completion_tokens"] * 2e-6)) < 1e-12
    print(f"hung up after {received.count(b'word')} words: billed {row['completion_tokens']} completion tokens "
          f"(estimated), ${row['cost']:.6f}")


def test_two_workers_count_rpm_and_budget_exactly(tmp_path, upstream):
    gateway = GatewayProcess("--config", str(write_config(tmp_path, upstream, spend_flush_seconds=0.05)),
                             "--workers", "2", "--host", "127.0.0.1")
    try:
        gateway.wait_ready()

        def generate(**fields):
            return requests.post(gateway.url + "/key/generate", headers=AUTH, json=fields, timeout=10).json()["key"]

        def burst(key, count):  # a connection each, so both workers answer
            return post_many(gateway.url, key, count, max_tokens=7)

        if time.time() % 60 > 50:
            time.sleep(61 - time.time() % 60)
        limited = generate(rpm_limit=10)
        assert sorted(burst(limited, 30)) == [200] * 10 + [429] * 20

        budgeted = generate(max_budget=6 * PLAIN_COST)
        admitted = 0
        for _ in range(5):
            admitted += burst(budgeted, 6).count(200)
            time.sleep(0.3)  # rows settle in the store
        spent = requests.get(gateway.url + "/spend/logs", headers=AUTH, timeout=10,
                             params={"api_key": budgeted, "size": 100}).json()["data"]
        total = sum(r["cost"] for r in spent if r["status"] == 200)
        assert abs(total - admitted * PLAIN_COST) < 1e-12
        assert 5 * PLAIN_COST < total < 7 * PLAIN_COST, (admitted, total)
        print(f"2 workers, budget ${6 * PLAIN_COST:.6f}: {admitted} admitted, spent ${total:.6f}")
    finally:
        gateway.close()
