"""Gateway-run batches under faults, with the real `dheera_ai` command: a gateway SIGKILLed mid-batch
resumes without sending an answered line again; two instances on one PostgreSQL run each batch
once, and the survivor finishes the batch of an instance killed mid-way; a 100,000-line file is
streamed in and out without the worker's memory growing with it.

Each test prints what it measured (`pytest -s tests/test_batches_durable.py`).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import sqlite3
import threading
import time

import openai
import yaml

from tests.conftest import MASTER_KEY
from tests.support.fake_upstream import FakeUpstream, Script, chat_completion
from tests.support.process import GatewayProcess

LEASE_SECONDS = 2.0


def chat_line(i, model="gpt-4o-mini", **body):
    return {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": f"line {i}"}], **body}}


class CountingUpstream(FakeUpstream):
    """Answers chat calls after `delay`, counting how often each line ("line N") was sent."""

    def __init__(self, delay=0.05):
        super().__init__()
        self.sent = collections.Counter()
        lock = threading.Lock()

        def answer(recorded):
            with lock:
                self.sent[recorded.json["messages"][0]["content"]] += 1
            return Script(body=json.dumps(chat_completion()).encode(), delay=delay)
        self.route("/v1/chat/completions", answer)

    def times(self, line: int) -> int:
        return self.sent[f"line {line}"]


def write_config(path, upstream, **general) -> str:
    config = {"model_list": [
        {"model_name": "gpt-4o-mini", "dheera_ai_params": {"model": "openai/gpt-4o-mini",
                                                           "api_base": upstream.url + "/v1", "api_key": "sk-up"}},
        {"model_name": "demo", "dheera_ai_params": {"model": "mock/demo"}}],
        # The fake upstream has no Batch API: the gateway runs the batches it is sent.
        "general_settings": {"master_key": MASTER_KEY, "batch_poll_interval": 0.2, "batch_forwarding": False,
                             "batch_lease_seconds": LEASE_SECONDS, **general}}
    path.write_text(yaml.safe_dump(config))
    return str(path)


def client_of(process) -> openai.OpenAI:
    return openai.OpenAI(base_url=process.url + "/v1", api_key=MASTER_KEY, max_retries=2, timeout=30)


def start(client, tmp_path, lines, name="in.jsonl"):
    path = tmp_path / name
    with open(path, "w") as f:
        f.writelines(json.dumps(line) + "\n" for line in lines)
    with open(path, "rb") as f:
        source = client.files.create(file=f, purpose="batch")
    return client.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions", completion_window="24h")


def wait(client, batch_id, until, timeout=120.0):
    deadline = time.time() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if until(batch):
            return batch
        assert time.time() < deadline, batch
        time.sleep(0.05)


def kill_hard(process) -> None:
    """SIGKILL the workers and their master: nothing runs a shutdown, a spool flush or a finally."""
    for pid in process.workers():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.process.kill()
    process.process.wait()


def output_ids(client, file_id) -> list[str]:
    return [json.loads(line)["custom_id"] for line in client.files.content(file_id).text.splitlines()]


def report(name, **measured):
    print(f"\n[{name}] " + " ".join(f"{k}={v}" for k, v in measured.items()))


def test_a_gateway_killed_mid_batch_resumes_and_sends_no_answered_line_again(tmp_path):
    upstream = CountingUpstream(delay=0.05)
    config = write_config(tmp_path / "config.yaml", upstream, batch_concurrency=4)
    lines = 80
    first = GatewayProcess("--config", config, "--workers", "2", "--host", "127.0.0.1")
    second = None
    try:
        first.wait_ready()
        client = client_of(first)
        batch = start(client, tmp_path, [chat_line(i) for i in range(lines)])
        wait(client, batch.id, lambda b: b.request_counts.completed >= 20)
        kill_hard(first)
        with contextlib.closing(sqlite3.connect(tmp_path / "dheera_ai.sqlite3")) as db:
            stored = {line - 1 for (line,) in db.execute("SELECT line FROM batch_results WHERE batch_id = ?",
                                                         (batch.id,))}
        sent_before = sum(upstream.sent.values())

        second = GatewayProcess("--config", config, "--workers", "2", "--host", "127.0.0.1")
        second.wait_ready()
        client = client_of(second)
        done = wait(client, batch.id, lambda b: b.status in ("completed", "failed"))
        ids = output_ids(client, done.output_file_id)
    finally:
        for process in (first, second):
            if process is not None:
                process.close()
        upstream.close()
    resent = [i for i in range(lines) if upstream.times(i) > 1]
    report("batch-sigkill", lines=lines, stored_at_kill=len(stored), sent_at_kill=sent_before,
           sent_in_all=sum(upstream.sent.values()), sent_twice=len(resent))
    assert done.status == "completed"
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (lines, lines, 0)
    assert sorted(ids) == sorted(f"req-{i}" for i in range(lines))
    assert all(upstream.times(i) >= 1 for i in range(lines))
    # A line whose result was stored before the kill was never sent again; only the few in flight were.
    assert all(upstream.times(i) == 1 for i in stored) and len(stored) >= 20
    assert set(resent) <= set(range(lines)) - stored and len(resent) <= 4


def test_two_instances_run_each_batch_once_and_the_survivor_finishes_a_killed_ones(tmp_path):
    from tests.support.services import PostgresSchema

    schema = PostgresSchema()
    upstream = CountingUpstream(delay=0.03)
    shared = {"database_url": schema.url, "files_dir": str(tmp_path / "shared-files"), "batch_concurrency": 3}
    config_a = write_config(tmp_path / "a.yaml", upstream, **shared)
    config_b = write_config(tmp_path / "b.yaml", upstream, **shared)
    a = GatewayProcess("--config", config_a, "--workers", "2", "--host", "127.0.0.1")
    b = GatewayProcess("--config", config_b, "--workers", "2", "--host", "127.0.0.1")
    try:
        a.wait_ready()
        b.wait_ready()
        # Four batches at once, created on both: every worker of both instances races for them.
        batches, per = [], 30
        for n in range(4):
            made = start(client_of(a if n % 2 else b), tmp_path, [chat_line(n * per + i) for i in range(per)],
                         name=f"in-{n}.jsonl")
            batches.append(made.id)
        for batch_id in batches:
            done = wait(client_of(a), batch_id, lambda x: x.status in ("completed", "failed"))
            assert done.status == "completed" and done.request_counts.completed == per
        assert all(upstream.times(i) == 1 for i in range(4 * per)) and sum(upstream.sent.values()) == 4 * per

        # One batch, its runner's instance killed mid-way: the other takes the lease when it runs out.
        upstream.sent.clear()
        lines = 90
        batch = start(client_of(a), tmp_path, [chat_line(1000 + i) for i in range(lines)], name="in-big.jsonl")
        wait(client_of(a), batch.id, lambda x: x.request_counts.completed >= 15)
        [(owner,)] = schema.query("SELECT lease_owner FROM {schema}.batches WHERE batch_id = %s", batch.id)
        pid = int(owner.split(":")[1])
        victim, survivor = (a, b) if pid in a.workers() else (b, a)
        assert pid in victim.workers()
        kill_hard(victim)
        killed_at = time.time()
        stored = {line - 1 for (line,) in schema.query("SELECT line FROM {schema}.batch_results WHERE batch_id = %s",
                                                       batch.id)}
        done = wait(client_of(survivor), batch.id, lambda x: x.status in ("completed", "failed"))
        took_over_in = time.time() - killed_at
        [(new_owner,)] = schema.query("SELECT lease_owner FROM {schema}.batches WHERE batch_id = %s", batch.id)
        ids = output_ids(client_of(survivor), done.output_file_id)
    finally:
        for process in (a, b):
            process.close()
        upstream.close()
        schema.drop()
    resent = [i for i in range(lines) if upstream.times(1000 + i) > 1]
    report("batch-two-instances", batches=4, lines_each=per, killed_instance="a" if victim is a else "b",
           stored_at_kill=len(stored), finished_s_after_kill=round(took_over_in, 2), sent_twice=len(resent))
    assert done.status == "completed" and done.request_counts.completed == lines
    assert sorted(ids) == sorted(f"req-{1000 + i}" for i in range(lines))
    assert all(upstream.times(1000 + i) == 1 for i in stored)
    assert all(upstream.times(1000 + i) >= 1 for i in range(lines)) and len(resent) <= 3
    assert new_owner is None  # released by the runner that finished it


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_a_100000_line_batch_streams_through_without_memory_growing_with_it(tmp_path):
    lines = 100_000
    padding = "p" * 400  # ~520 bytes a line: a 52 MB file, a 60 MB output
    path = tmp_path / "big.jsonl"
    with open(path, "w") as f:
        f.writelines(json.dumps(chat_line(i, model="demo", user=padding)) + "\n" for i in range(lines))
    upstream = FakeUpstream()
    config = write_config(tmp_path / "config.yaml", upstream, batch_concurrency=16)
    process = GatewayProcess("--config", config, "--workers", "1", "--host", "127.0.0.1")
    try:
        process.wait_ready()
        client = client_of(process)
        client.batches.list()  # the worker has served a request of each kind before the baseline
        [worker] = process.workers()
        before = rss_kb(worker)
        started = time.time()
        with open(path, "rb") as f:
            source = client.files.create(file=f, purpose="batch")
        after_upload = rss_kb(worker)
        batch = client.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions",
                                      completion_window="24h")
        peak = after_upload
        deadline = time.time() + 600
        while batch.status not in ("completed", "failed"):
            assert time.time() < deadline, batch
            time.sleep(1.0)
            peak = max(peak, rss_kb(worker))
            batch = client.batches.retrieve(batch.id)
        took = time.time() - started
        after = rss_kb(worker)
        output_bytes = client.files.retrieve(batch.output_file_id).bytes
    finally:
        process.close()
        upstream.close()
    file_mb = path.stat().st_size / 1e6
    report("batch-100k", lines=lines, file_mb=round(file_mb, 1), output_mb=round(output_bytes / 1e6, 1),
           seconds=round(took, 1), lines_per_s=round(lines / took), rss_before_mb=round(before / 1024, 1),
           rss_after_upload_mb=round(after_upload / 1024, 1), rss_peak_mb=round(peak / 1024, 1),
           rss_after_mb=round(after / 1024, 1))
    assert batch.status == "completed" and batch.request_counts.completed == lines
    # Neither the upload nor the run holds the file: growth stays far below its 52 MB.
    assert (peak - before) / 1024 < file_mb / 4
