"""`/v1/batches` run by the gateway: the official openai client's whole batch flow, on the mock and
on Anthropic, line-by-line validation, spend at the batch discount, the key's limits, cancel,
expiry and ownership. (Kills, two instances and a 100,000-line file: test_batches_durable.py.)"""

import io
import json
import sqlite3
import threading
import time

import openai
import pytest

from tests.conftest import MASTER_KEY
from tests.plugins.test_anthropic import CLAUDE, message
from tests.support.fake_upstream import Script, chat_completion
from tests.test_spend import PLAIN_COST, PRICES


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def chat_line(i, model="demo", **body):
    return {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": f"line {i}"}], **body}}


def jsonl(lines) -> bytes:
    return b"".join((line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines)


@pytest.fixture
def batch_config(base_config):
    # The fake upstream's OpenAI groups have no Batch API here: the gateway runs their batches
    # (forwarding: test_batches_forwarded.py).
    base_config["general_settings"].update(batch_poll_interval=0.2, batch_concurrency=4, batch_forwarding=False)
    return base_config


def start_batch(client, key, lines, endpoint="/v1/chat/completions") -> dict:
    made = client.post("/v1/files", headers=bearer(key), data={"purpose": "batch",
                                                              "file": (io.BytesIO(jsonl(lines)), "in.jsonl")})
    assert made.status_code == 200, made.json
    batch = client.post("/v1/batches", headers=bearer(key), json={"input_file_id": made.json["id"],
                                                                 "endpoint": endpoint, "completion_window": "24h"})
    assert batch.status_code == 200, batch.json
    return batch.json


def wait_for(client, batch_id, statuses, key=MASTER_KEY, timeout=30.0, until=None) -> dict:
    deadline = time.time() + timeout
    while True:
        batch = client.get(f"/v1/batches/{batch_id}", headers=bearer(key)).json
        if batch["status"] in statuses and (until is None or until(batch)):
            return batch
        assert time.time() < deadline, batch
        time.sleep(0.05)


def output(client, file_id, key=MASTER_KEY) -> list[dict]:
    content = client.get(f"/v1/files/{file_id}/content", headers=bearer(key))
    assert content.status_code == 200
    return [json.loads(line) for line in content.data.splitlines()]


def test_the_openai_client_runs_a_batch_on_the_mock_and_reads_openais_output_file(live_app, batch_config, tmp_path):
    server = live_app(batch_config)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)
    path = tmp_path / "requests.jsonl"
    path.write_bytes(jsonl([chat_line(i) for i in range(12)]))
    source = client.files.create(file=open(path, "rb"), purpose="batch")
    batch = client.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions", completion_window="24h",
                                  metadata={"job": "nightly-eval"})
    assert batch.status == "validating" and batch.metadata == {"job": "nightly-eval"}
    deadline = time.time() + 30
    while batch.status not in ("completed", "failed"):
        assert time.time() < deadline
        time.sleep(0.05)
        batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed" and batch.error_file_id is None and batch.errors is None
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (12, 12, 0)
    assert batch.created_at <= batch.in_progress_at <= batch.finalizing_at <= batch.completed_at
    assert batch.expires_at == batch.created_at + 24 * 3600
    assert batch.model == "demo" and batch.usage.output_tokens > 0

    lines = [json.loads(line) for line in client.files.content(batch.output_file_id).text.splitlines()]
    assert sorted(line["custom_id"] for line in lines) == sorted(f"req-{i}" for i in range(12))
    for line in lines:
        assert line["id"].startswith("batch_req_") and line["error"] is None
        assert line["response"]["status_code"] == 200 and line["response"]["request_id"]
        assert line["response"]["body"]["object"] == "chat.completion"
    assert client.files.retrieve(batch.output_file_id).purpose == "batch_output"
    assert [b.id for b in client.batches.list()] == [batch.id]


def test_a_batch_on_an_anthropic_group_answers_in_openai_format(make_app, batch_config, upstream):
    batch_config["model_list"].append({"model_name": "claude", "dheera_ai_params": {
        "model": f"anthropic/{CLAUDE}", "api_base": upstream.url, "api_key": "sk-ant-api03-secretsecret"}})
    def answer(recorded):
        content = recorded.json["messages"][0]["content"]
        said = content if isinstance(content, str) else content[0]["text"]
        return Script(body=json.dumps(message(content=[{"type": "text", "text": "Claude says " + said}])).encode())
    upstream.route("/v1/messages", answer)
    client = make_app(batch_config).test_client()
    batch = start_batch(client, MASTER_KEY, [chat_line(i, "claude", max_tokens=50) for i in range(5)])
    done = wait_for(client, batch["id"], ("completed", "failed"))
    assert done["status"] == "completed" and done["request_counts"]["completed"] == 5
    sent = [r for r in upstream.requests if r.path == "/v1/messages"]
    assert len(sent) == 5 and all(r.headers["x-api-key"] == "sk-ant-api03-secretsecret" for r in sent)
    for line in output(client, done["output_file_id"]):
        body = line["response"]["body"]
        n = line["custom_id"].split("-")[1]
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"] == f"Claude says line {n}"
        assert body["usage"] == {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18} | {
            k: v for k, v in body["usage"].items() if k not in ("prompt_tokens", "completion_tokens", "total_tokens")}
    assert done["usage"]["input_tokens"] == 5 * 12 and done["usage"]["output_tokens"] == 5 * 6


def test_each_line_is_checked_first_and_a_bad_file_fails_naming_lines(client, batch_config, make_app, upstream):
    client = make_app(batch_config).test_client()
    lines = [chat_line(0), b"{not json", {**chat_line(2), "method": "GET"},
             {**chat_line(3), "url": "/v1/embeddings"}, chat_line(4, model="no-such-model"),
             {**chat_line(5), "custom_id": "req-0"}, {"custom_id": "req-6", "method": "POST",
                                                     "url": "/v1/chat/completions", "body": {"messages": []}}]
    batch = start_batch(client, MASTER_KEY, lines)
    failed = wait_for(client, batch["id"], ("failed", "completed"))
    assert failed["status"] == "failed" and failed["failed_at"] and failed["output_file_id"] is None
    errors = [(e["line"], e["code"]) for e in failed["errors"]["data"]]
    assert errors == [(2, "invalid_json_line"), (3, "invalid_method"), (4, "invalid_url"), (5, "model_not_found"),
                      (6, "duplicate_custom_id"), (7, "missing_required_parameter")]
    assert "no-such-model" in failed["errors"]["data"][3]["message"]
    assert upstream.requests == []  # nothing ran
    assert failed["request_counts"]["total"] == 7


def test_a_batch_needs_a_batch_file_of_the_caller(client):
    other = client.post("/v1/files", headers=bearer(MASTER_KEY),
                        data={"purpose": "user_data", "file": (io.BytesIO(jsonl([chat_line(0)])), "a.jsonl")}).json
    refused = client.post("/v1/batches", headers=bearer(MASTER_KEY), json={
        "input_file_id": other["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"})
    assert refused.status_code == 400 and refused.json["error"]["code"] == "invalid_file_purpose"
    missing = client.post("/v1/batches", headers=bearer(MASTER_KEY), json={
        "input_file_id": "file-nope", "endpoint": "/v1/chat/completions", "completion_window": "24h"})
    assert missing.status_code == 404 and missing.json["error"]["param"] == "input_file_id"
    for bad, param in (({"completion_window": "1h"}, "completion_window"), ({"endpoint": "/v1/images"}, "endpoint")):
        refused = client.post("/v1/batches", headers=bearer(MASTER_KEY), json={
            "input_file_id": other["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h", **bad})
        assert refused.status_code == 400 and refused.json["error"]["param"] == param
    assert client.get("/v1/batches/batch_nope", headers=bearer(MASTER_KEY)).status_code == 404


def test_each_line_leaves_a_spend_row_at_the_batch_discount(make_app, batch_config, upstream):
    batch_config["model_list"][0]["model_info"] = dict(PRICES)
    batch_config["general_settings"]["spend_flush_seconds"] = 3600
    app = make_app(batch_config)
    client = app.test_client()
    batch = start_batch(client, MASTER_KEY, [chat_line(i, "gpt-4o-mini") for i in range(4)])
    done = wait_for(client, batch["id"], ("completed",))
    app.extensions["dheera_ai_state"].spend.flush()
    rows = client.get("/spend/logs", headers=bearer(MASTER_KEY), query_string={"size": 100}).json["data"]
    assert len(rows) == 4 and {r["model_group"] for r in rows} == {"gpt-4o-mini"}
    for row in rows:
        assert row["cost"] == pytest.approx(PLAIN_COST * 0.5) and row["metadata"]["batch_id"] == done["id"]
    request_ids = {line["response"]["request_id"] for line in output(client, done["output_file_id"])}
    assert request_ids == {row["request_id"] for row in rows}


def test_a_line_that_fails_goes_to_the_error_file_and_the_rest_complete(make_app, batch_config, upstream):
    def answer(recorded):
        if "line 2" in recorded.body.decode():
            return Script(status=400, body=b'{"error": {"message": "bad line", "type": "invalid_request_error"}}')
        return Script(body=json.dumps(chat_completion()).encode())
    upstream.route("/v1/chat/completions", answer)
    client = make_app(batch_config).test_client()
    batch = start_batch(client, MASTER_KEY, [chat_line(i, "gpt-4o-mini") for i in range(4)])
    done = wait_for(client, batch["id"], ("completed",))
    assert done["request_counts"] == {"total": 4, "completed": 3, "failed": 1}
    [failed] = output(client, done["error_file_id"])
    assert failed["custom_id"] == "req-2" and failed["response"]["status_code"] == 400
    assert failed["response"]["body"]["error"]["message"].endswith("bad line")
    assert len(output(client, done["output_file_id"])) == 3


def test_a_batch_keeps_within_its_keys_parallel_limit(make_app, batch_config, upstream):
    in_flight, most = [0], [0]
    lock = threading.Lock()

    def slow(recorded):
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        time.sleep(0.05)
        with lock:
            in_flight[0] -= 1
        return Script(body=json.dumps(chat_completion()).encode())
    upstream.route("/v1/chat/completions", slow)
    client = make_app(batch_config).test_client()
    key = client.post("/key/generate", headers=bearer(MASTER_KEY), json={"max_parallel_requests": 1}).json["key"]
    batch = start_batch(client, key, [chat_line(i, "gpt-4o-mini") for i in range(8)])
    done = wait_for(client, batch["id"], ("completed",), key=key)
    assert done["request_counts"] == {"total": 8, "completed": 8, "failed": 0}
    assert most[0] == 1 and len(upstream.requests) == 8  # refused lines waited; none was lost or doubled


def slow_upstream(upstream, seconds=0.1):
    upstream.route("/v1/chat/completions", lambda recorded: Script(body=json.dumps(chat_completion()).encode(),
                                                                   delay=seconds))


def test_cancel_stops_new_lines_and_finalizes_what_is_done(make_app, batch_config, upstream):
    slow_upstream(upstream)
    batch_config["general_settings"]["batch_concurrency"] = 2
    client = make_app(batch_config).test_client()
    batch = start_batch(client, MASTER_KEY, [chat_line(i, "gpt-4o-mini") for i in range(40)])
    wait_for(client, batch["id"], ("in_progress",), until=lambda b: b["request_counts"]["completed"] >= 2)
    cancelling = client.post(f"/v1/batches/{batch['id']}/cancel", headers=bearer(MASTER_KEY))
    assert cancelling.status_code == 200 and cancelling.json["status"] in ("cancelling", "cancelled")
    done = wait_for(client, batch["id"], ("cancelled",))
    completed = done["request_counts"]["completed"]
    assert 2 <= completed < 40 and done["cancelling_at"] <= done["cancelled_at"]
    assert len(output(client, done["output_file_id"])) == completed
    time.sleep(0.5)
    assert len(upstream.requests) == completed  # nothing was sent after the lines in flight
    again = client.post(f"/v1/batches/{batch['id']}/cancel", headers=bearer(MASTER_KEY))
    assert again.status_code == 200 and again.json["status"] == "cancelled"


def test_a_finished_batch_cannot_be_cancelled(client, batch_config, make_app):
    client = make_app(batch_config).test_client()
    batch = start_batch(client, MASTER_KEY, [chat_line(0)])
    wait_for(client, batch["id"], ("completed",))
    refused = client.post(f"/v1/batches/{batch['id']}/cancel", headers=bearer(MASTER_KEY))
    assert refused.status_code == 400 and refused.json["error"]["code"] == "batch_not_cancellable"


def test_a_batch_past_its_window_expires_with_partial_output(make_app, batch_config, upstream, tmp_path):
    slow_upstream(upstream)
    batch_config["general_settings"]["batch_concurrency"] = 2
    client = make_app(batch_config).test_client()
    batch = start_batch(client, MASTER_KEY, [chat_line(i, "gpt-4o-mini") for i in range(40)])
    wait_for(client, batch["id"], ("in_progress",), until=lambda b: b["request_counts"]["completed"] >= 2)
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:  # 24 hours pass
        db.execute("UPDATE batches SET expires_at = ? WHERE batch_id = ?", (time.time(), batch["id"]))
    done = wait_for(client, batch["id"], ("expired",))
    counts = done["request_counts"]
    assert counts["total"] == 40 and counts["completed"] + counts["failed"] == 40 and counts["completed"] < 40
    assert len(output(client, done["output_file_id"])) == counts["completed"]
    unsent = output(client, done["error_file_id"])
    assert len(unsent) == 40 - counts["completed"]
    assert all(line["error"]["code"] == "batch_expired" and line["response"] is None for line in unsent)
    done_ids = {line["custom_id"] for line in output(client, done["output_file_id"])}
    assert done_ids.isdisjoint(line["custom_id"] for line in unsent)


def test_a_batch_is_its_creators_and_admins_only(make_app, batch_config):
    client = make_app(batch_config).test_client()
    for user in ("ana", "cho"):
        client.post("/user/new", headers=bearer(MASTER_KEY), json={"user_id": user})
    ana = client.post("/key/generate", headers=bearer(MASTER_KEY), json={"user_id": "ana"}).json["key"]
    cho = client.post("/key/generate", headers=bearer(MASTER_KEY), json={"user_id": "cho"}).json["key"]
    batch = start_batch(client, ana, [chat_line(0)])
    done = wait_for(client, batch["id"], ("completed",), key=ana)
    for path in (f"/v1/batches/{batch['id']}", f"/v1/files/{done['output_file_id']}/content",
                 f"/v1/files/{batch['input_file_id']}"):
        assert client.get(path, headers=bearer(cho)).status_code == 404
        assert client.get(path, headers=bearer(MASTER_KEY)).status_code == 200
    assert client.post(f"/v1/batches/{batch['id']}/cancel", headers=bearer(cho)).status_code == 404
    assert client.get("/v1/batches", headers=bearer(cho)).json["data"] == []
    assert [b["id"] for b in client.get("/v1/batches", headers=bearer(ana)).json["data"]] == [batch["id"]]
    stolen = client.post("/v1/batches", headers=bearer(cho), json={
        "input_file_id": batch["input_file_id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"})
    assert stolen.status_code == 404


def test_an_embeddings_batch(make_app, batch_config, upstream):
    client = make_app(batch_config).test_client()
    lines = [{"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
              "body": {"model": "gpt-4o-mini", "input": f"text {i}"}} for i in range(3)]
    done = wait_for(client, start_batch(client, MASTER_KEY, lines, "/v1/embeddings")["id"], ("completed",))
    assert done["request_counts"]["completed"] == 3
    assert all(line["response"]["body"]["object"] == "list" for line in output(client, done["output_file_id"]))
    assert all(r.path == "/v1/embeddings" for r in upstream.requests)
