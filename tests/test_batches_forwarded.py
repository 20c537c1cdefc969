"""Batches forwarded to a provider's own Batch API (OpenAI, Azure): what is uploaded there (the
deployment's model in every line), the upstream batch followed through the gateway's ids, its
output read through the gateway, cancel, and what stays with the gateway's runner."""

import json
import time

import openai
import pytest

from tests.conftest import MASTER_KEY
from tests.support.fake_batch_api import FAKE_KEY, FakeBatchAPI
from tests.test_batches import bearer, chat_line, output, start_batch, wait_for


@pytest.fixture
def batch_api():
    api = FakeBatchAPI()
    yield api
    api.close()


@pytest.fixture
def azure_batch_api():
    api = FakeBatchAPI(azure=True)
    yield api
    api.close()


def with_group(config, name, params):
    config["general_settings"].update(batch_poll_interval=0.2)
    config["model_list"].append({"model_name": name, "dheera_ai_params": params})
    return config


def upstream_batch(api, timeout=10.0) -> dict:
    import time

    deadline = time.time() + timeout
    while not api.batches:
        assert time.time() < deadline, "no batch reached the provider"
        time.sleep(0.05)
    return next(iter(api.batches.values()))


def test_the_openai_client_runs_a_batch_forwarded_to_openai(live_app, base_config, batch_api, tmp_path):
    config = with_group(base_config, "gpt-batch", {"model": "openai/gpt-4o-mini-2024-07-18",
                                                  "api_base": batch_api.url + "/v1", "api_key": FAKE_KEY})
    server = live_app(config)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(json.dumps(chat_line(i, model="gpt-batch", tags=["eval"])).encode() + b"\n"
                              for i in range(3)))
    batch = client.batches.create(input_file_id=client.files.create(file=open(path, "rb"), purpose="batch").id,
                                  endpoint="/v1/chat/completions", completion_window="24h",
                                  metadata={"job": "nightly"})
    upstream = upstream_batch(batch_api)
    # Uploaded with the provider's model in every line, the gateway's own fields left out.
    sent = batch_api.lines(upstream["id"])
    assert [line["custom_id"] for line in sent] == ["req-0", "req-1", "req-2"]
    assert all(line["body"]["model"] == "gpt-4o-mini-2024-07-18" and "tags" not in line["body"] for line in sent)
    assert upstream["endpoint"] == "/v1/chat/completions" and upstream["metadata"] == {"job": "nightly"}
    assert all(r.headers["authorization"] == f"Bearer {FAKE_KEY}" for r in batch_api.batch_requests())

    batch_api.progress(upstream["id"], completed=1)
    seen = client.batches.retrieve(batch.id)
    assert seen.id == batch.id and seen.status == "in_progress" and seen.request_counts.completed == 1
    batch_api.complete(upstream["id"], failed=1)
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed" and done.model == "gpt-batch"
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (3, 2, 1)
    assert done.usage.input_tokens == 20 and done.usage.output_tokens == 10
    # The files are the gateway's ids, their bytes the provider's.
    assert done.output_file_id not in batch_api.files and done.error_file_id not in batch_api.files
    answers = [json.loads(line) for line in client.files.content(done.output_file_id).text.splitlines()]
    assert [a["custom_id"] for a in answers] == ["req-0", "req-1"]
    assert answers[0]["response"]["body"]["choices"][0]["message"]["content"] == "Batch answer to req-0"
    errors = [json.loads(line) for line in client.files.content(done.error_file_id).text.splitlines()]
    assert [e["custom_id"] for e in errors] == ["req-2"] and errors[0]["response"]["status_code"] == 400
    assert client.files.retrieve(done.output_file_id).purpose == "batch_output"
    assert [b.id for b in client.batches.list()] == [batch.id]
    # Nothing was sent line by line.
    assert batch_api.count("/v1/chat/completions") == 0


def test_a_batch_forwarded_to_azure_uses_its_key_version_and_deployment(make_app, base_config, azure_batch_api):
    config = with_group(base_config, "gpt-azure", {"model": "azure/my-gpt4o-batch", "api_base": azure_batch_api.url,
                                                  "api_key": FAKE_KEY, "api_version": "2024-10-21"})
    client = make_app(config).test_client()
    batch = start_batch(client, MASTER_KEY, [chat_line(i, model="gpt-azure") for i in range(2)])
    upstream = upstream_batch(azure_batch_api)
    for recorded in azure_batch_api.batch_requests():
        assert recorded.path.startswith("/openai/") and "api-version=2024-10-21" in recorded.path
        assert recorded.headers["api-key"] == FAKE_KEY and "authorization" not in recorded.headers
    assert upstream["endpoint"] == "/chat/completions"
    assert [line["body"]["model"] for line in azure_batch_api.lines(upstream["id"])] == ["my-gpt4o-batch"] * 2
    assert all(line["url"] == "/chat/completions" for line in azure_batch_api.lines(upstream["id"]))
    azure_batch_api.complete(upstream["id"])
    done = wait_for(client, batch["id"], ("completed",))
    assert [line["custom_id"] for line in output(client, done["output_file_id"])] == ["req-0", "req-1"]


def test_cancel_is_sent_to_the_provider(make_app, base_config, batch_api):
    config = with_group(base_config, "gpt-batch", {"model": "openai/gpt-4o-mini", "api_base": batch_api.url + "/v1",
                                                  "api_key": FAKE_KEY})
    client = make_app(config).test_client()
    batch = start_batch(client, MASTER_KEY, [chat_line(i, model="gpt-batch") for i in range(2)])
    upstream = upstream_batch(batch_api)
    wait_for(client, batch["id"], ("validating",), until=lambda b: b["status"] == "validating")
    cancelled = client.post(f"/v1/batches/{batch['id']}/cancel", headers=bearer(MASTER_KEY))
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelling"
    assert batch_api.batches[upstream["id"]]["status"] == "cancelling"
    batch_api.batches[upstream["id"]]["status"] = "cancelled"
    assert wait_for(client, batch["id"], ("cancelled",))["id"] == batch["id"]
    sent = len(batch_api.batch_requests())
    again = client.post(f"/v1/batches/{batch['id']}/cancel", headers=bearer(MASTER_KEY))
    assert again.status_code == 200 and again.json["status"] == "cancelled"
    assert len(batch_api.batch_requests()) == sent  # a final batch is not asked about again


def test_a_provider_that_refuses_the_key_fails_the_batch_with_its_message(make_app, base_config, batch_api):
    config = with_group(base_config, "gpt-batch", {"model": "openai/gpt-4o-mini", "api_base": batch_api.url + "/v1",
                                                  "api_key": "sk-wrong-key-entirely"})
    client = make_app(config).test_client()
    batch = start_batch(client, MASTER_KEY, [chat_line(0, model="gpt-batch")])
    failed = wait_for(client, batch["id"], ("failed", "completed"))
    assert failed["status"] == "failed" and not batch_api.batches
    error = failed["errors"]["data"][0]
    assert "Handing the batch to openai failed" in error["message"] and "Incorrect API key" in error["message"]
    assert "sk-wrong-key-entirely" not in json.dumps(failed)


def test_lines_the_gateway_must_run_are_not_forwarded(make_app, base_config, batch_api):
    """A line with a field only the gateway acts on (here `mock_response`) keeps the whole batch on
    the gateway: its lines are sent one by one, none to the provider's Batch API."""
    config = with_group(base_config, "gpt-batch", {"model": "openai/gpt-4o-mini", "api_base": batch_api.url + "/v1",
                                                  "api_key": FAKE_KEY})
    client = make_app(config).test_client()
    batch = start_batch(client, MASTER_KEY, [chat_line(0, model="gpt-batch"),
                                             chat_line(1, model="gpt-batch", mock_response="mocked")])
    done = wait_for(client, batch["id"], ("completed", "failed"))
    assert done["status"] == "completed" and not batch_api.batches
    assert batch_api.count("/v1/chat/completions") == 2


def test_an_openai_deployment_without_a_batch_api_has_its_batches_run_by_the_gateway(make_app, base_config,
                                                                                    upstream):
    """`openai/` at a server with no Files API (the fake upstream answers it 404): run here."""
    base_config["general_settings"].update(batch_poll_interval=0.2)
    client = make_app(base_config).test_client()
    batch = start_batch(client, MASTER_KEY, [chat_line(i, model="gpt-4o-mini") for i in range(2)])
    done = wait_for(client, batch["id"], ("completed", "failed"))
    assert done["status"] == "completed" and done["request_counts"]["completed"] == 2
    assert upstream.count("/v1/files") == 1 and upstream.count("/v1/chat/completions") == 2


def test_batch_forwarding_off_runs_openai_batches_on_the_gateway(make_app, base_config, batch_api):
    config = with_group(base_config, "gpt-batch", {"model": "openai/gpt-4o-mini", "api_base": batch_api.url + "/v1",
                                                  "api_key": FAKE_KEY})
    config["general_settings"]["batch_forwarding"] = False
    client = make_app(config).test_client()
    batch = start_batch(client, MASTER_KEY, [chat_line(i, model="gpt-batch") for i in range(3)])
    done = wait_for(client, batch["id"], ("completed", "failed"))
    assert done["status"] == "completed" and not batch_api.batches
    assert batch_api.count("/v1/chat/completions") == 3


def test_another_callers_forwarded_batch_and_its_output_stay_hidden(make_app, base_config, batch_api):
    config = with_group(base_config, "gpt-batch", {"model": "openai/gpt-4o-mini", "api_base": batch_api.url + "/v1",
                                                  "api_key": FAKE_KEY})
    client = make_app(config).test_client()
    keys = [client.post("/key/generate", headers=bearer(MASTER_KEY), json={}).json["key"] for _ in range(2)]
    batch = start_batch(client, keys[0], [chat_line(0, model="gpt-batch")])
    upstream = upstream_batch(batch_api)
    batch_api.complete(upstream["id"])
    done = wait_for(client, batch["id"], ("completed",), key=keys[0])
    assert client.get(f"/v1/batches/{batch['id']}", headers=bearer(keys[1])).status_code == 404
    hidden = client.get(f"/v1/files/{done['output_file_id']}/content", headers=bearer(keys[1]))
    assert hidden.status_code == 404 and b"Batch answer" not in hidden.data
    assert len(output(client, done["output_file_id"], key=keys[0])) == 1


def test_a_forwarded_batchs_lines_are_billed_once_at_the_batch_price(make_app, base_config, batch_api):
    from tests.test_spend import PRICES

    config = with_group(base_config, "gpt-batch", {"model": "openai/gpt-4o-mini", "api_base": batch_api.url + "/v1",
                                                  "api_key": FAKE_KEY})
    config["model_list"][-1]["model_info"] = dict(PRICES)
    config["general_settings"].update(batch_forward_poll_interval=0.2)
    app = make_app(config)
    client = app.test_client()
    key = client.post("/key/generate", headers=bearer(MASTER_KEY), json={"max_budget": 10.0}).json["key"]
    batch = start_batch(client, key, [chat_line(i, model="gpt-batch") for i in range(3)])
    upstream = upstream_batch(batch_api)
    batch_api.complete(upstream["id"], failed=1)
    wait_for(client, batch["id"], ("completed",), key=key)
    state = app.extensions["dheera_ai_state"]
    deadline = time.time() + 10
    while not state.batches.get(batch["id"])["spend_recorded"]:
        assert time.time() < deadline, "the forwarded batch's spend was never recorded"
        time.sleep(0.05)
    # Recorded again (another worker, a restart): still one row per answered line.
    state.batches.update(batch["id"], {"spend_recorded": 0})
    deadline = time.time() + 10
    while not state.batches.get(batch["id"])["spend_recorded"]:
        assert time.time() < deadline
        time.sleep(0.05)
    state.spend.flush()
    rows = client.get("/spend/logs", headers=bearer(MASTER_KEY), query_string={"size": 100}).json["data"]
    assert len(rows) == 2 and {r["status"] for r in rows} == {200}
    assert {r["metadata"]["batch_id"] for r in rows} == {batch["id"]} and {r["model_group"] for r in rows} == {
        "gpt-batch"}
    one_line = 10 * PRICES["input_cost_per_token"] + 5 * PRICES["output_cost_per_token"]
    assert all(r["cost"] == pytest.approx(one_line * 0.5) for r in rows)
    info = client.get("/key/info", headers=bearer(MASTER_KEY), query_string={"key": key}).json
    assert info["info"]["spend"] == pytest.approx(2 * one_line * 0.5)


def test_under_guardrails_the_gateway_runs_the_batch_so_they_apply(make_app, base_config, batch_api):
    """A provider's Batch API would never run the gateway's guardrails: the lines go through the
    pipeline instead, and the PII in them is masked before it leaves."""
    config = with_group(base_config, "gpt-batch", {"model": "openai/gpt-4o-mini", "api_base": batch_api.url + "/v1",
                                                  "api_key": FAKE_KEY})
    config["guardrails"] = [{"guardrail_name": "pii-mask", "dheera_ai_params": {
        "guardrail": "pii", "mode": "pre_call", "default_on": True, "action": "mask", "entities": ["EMAIL_ADDRESS"]}}]
    client = make_app(config).test_client()
    line = chat_line(0, model="gpt-batch")
    line["body"]["messages"][0]["content"] = "write to jane.doe@example.com"
    batch = start_batch(client, MASTER_KEY, [line])
    done = wait_for(client, batch["id"], ("completed", "failed"))
    assert done["status"] == "completed" and not batch_api.batches
    [sent] = [r for r in batch_api.requests if r.path.endswith("/chat/completions")]
    assert "jane.doe@example.com" not in sent.body.decode()
