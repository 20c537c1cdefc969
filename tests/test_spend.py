"""Cost per call and spend rows: every pricing unit, plain, streamed, failed and hung-up calls, tags."""

import io
import time

import openai
import pytest
import requests

from tests.conftest import MASTER_KEY
from tests.support.fake_upstream import chat_chunks, chat_completion
from tests.support.servers import hang_up_mid_stream

PRICES = {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}
# The fake upstream's plain answer uses 9 prompt and 7 completion tokens.
PLAIN_COST = 9 * 1e-6 + 7 * 2e-6


@pytest.fixture
def spend_config(base_config):
    base_config["model_list"][0]["model_info"] = dict(PRICES)
    base_config["model_list"].append({"model_name": "mock-priced", "dheera_ai_params": {"model": "mock/priced"},
                                      "model_info": {"output_cost_per_image": 0.04, "input_cost_per_character": 1e-5,
                                                     "input_cost_per_second": 1e-4, "input_cost_per_query": 0.002,
                                                     **PRICES}})
    base_config["general_settings"]["spend_flush_seconds"] = 3600  # tests flush by hand
    return base_config


@pytest.fixture
def app(make_app, spend_config):
    return make_app(spend_config)


def stored(app, **query):
    """Every spend row the store holds (after moving the spool into it), newest first."""
    app.extensions["dheera_ai_state"].spend.flush()
    client = app.test_client()
    response = client.get("/spend/logs", headers={"Authorization": f"Bearer {MASTER_KEY}"},
                          query_string={"size": 1000, **query})
    assert response.status_code == 200, response.json
    return response.json["data"]


def chat(client, auth, **body):
    return client.post("/v1/chat/completions", headers=auth,
                       json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **body})


def test_a_plain_call_is_priced_from_its_usage_and_stored_once(app, client, auth):
    response = chat(client, auth, metadata={"app": "billing", "api_key": "sk-leaked"})
    assert response.status_code == 200
    assert float(response.headers["x-dheera-ai-response-cost"]) == pytest.approx(PLAIN_COST)
    [row] = stored(app)
    assert row["request_id"] == response.headers["x-dheera-ai-call-id"]
    assert (row["call_type"], row["model_group"], row["provider"], row["status"]) == (
        "chat_completions", "gpt-4o-mini", "openai", 200)
    assert (row["prompt_tokens"], row["completion_tokens"], row["priced"]) == (9, 7, True)
    assert row["cost"] == pytest.approx(PLAIN_COST)
    assert row["metadata"] == {"app": "billing", "api_key": "[redacted]"}
    assert row["stream"] is False and row["stream_cut"] is False and row["usage_estimated"] is False
    assert stored(app) == [row]  # flushing again adds nothing


def test_an_unpriced_model_costs_zero_and_says_so(make_app, spend_config, upstream, auth):
    spend_config["model_list"].append({"model_name": "mystery", "dheera_ai_params": {
        "model": "openai/mystery-model", "api_base": upstream.url + "/v1", "api_key": "sk-x"}})
    app = make_app(spend_config)
    upstream.respond(chat_completion(model="mystery-model"))  # the answer names no priced model either
    response = chat(app.test_client(), auth, model="mystery")
    assert response.status_code == 200 and response.headers["x-dheera-ai-response-cost"] == "0.0"
    [row] = stored(app)
    assert row["priced"] is False and row["cost"] == 0 and row["completion_tokens"] > 0


def test_model_prices_path_replaces_the_shipped_table(make_app, spend_config, upstream, auth, tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text("openai/mystery-model: {input_cost_per_token: 1.0e-6, output_cost_per_token: 2.0e-6}\n")
    spend_config["general_settings"]["model_prices_path"] = str(prices)
    for name, model in (("mystery", "openai/mystery-model"), ("gpt-4o", "openai/gpt-4o")):
        spend_config["model_list"].append({"model_name": name, "dheera_ai_params": {
            "model": model, "api_base": upstream.url + "/v1", "api_key": "sk-x"}})
    app = make_app(spend_config)
    assert float(chat(app.test_client(), auth, model="mystery").headers["x-dheera-ai-response-cost"]) == \
        pytest.approx(PLAIN_COST)
    # Priced in the shipped table, not in this one.
    upstream.respond(chat_completion(model="gpt-4o"))
    assert chat(app.test_client(), auth, model="gpt-4o").headers["x-dheera-ai-response-cost"] == "0.0"


def _wav_upload():
    return {"file": (io.BytesIO(b"RIFF" + b"\0" * 32_000), "a.wav"), "model": "mock-priced"}


@pytest.mark.parametrize("path, kwargs, expected", [
    ("/v1/images/generations", {"json": {"model": "mock-priced", "prompt": "a cat", "n": 2}}, 2 * 0.04),
    ("/v1/audio/speech", {"json": {"model": "mock-priced", "input": "x" * 100, "voice": "alloy"}}, 100 * 1e-5),
    ("/v1/rerank", {"json": {"model": "mock-priced", "query": "q", "documents": ["a", "b"]}}, 0.002),
], ids=["per-image", "per-character", "per-query"])
def test_each_pricing_unit_through_the_gateway(app, client, auth, path, kwargs, expected):
    response = client.post(path, headers=auth, **kwargs)
    assert response.status_code == 200, response.data[:300]
    if path.endswith("/speech"):  # audio is streamed as it arrives: its cost is in the row alone
        response.get_data()
    else:
        assert float(response.headers["x-dheera-ai-response-cost"]) == pytest.approx(expected)
    [row] = stored(app)
    assert row["cost"] == pytest.approx(expected) and row["priced"] is True


def test_transcriptions_are_priced_per_second_and_embeddings_per_token(app, client, auth):
    spoken = client.post("/v1/audio/transcriptions", headers=auth, data=_wav_upload(),
                         content_type="multipart/form-data")
    assert spoken.status_code == 200
    embedded = client.post("/v1/embeddings", headers=auth, json={"model": "mock-priced", "input": "hello world"})
    assert embedded.status_code == 200
    rows = {r["call_type"]: r for r in stored(app)}
    seconds_cost = float(spoken.headers["x-dheera-ai-response-cost"])
    assert seconds_cost > 0 and rows["audio_transcriptions"]["cost"] == pytest.approx(seconds_cost)
    tokens = embedded.json["usage"]["prompt_tokens"]
    assert rows["embeddings"]["cost"] == pytest.approx(tokens * 1e-6) and tokens > 0


def test_a_stream_is_billed_from_the_usage_the_gateway_asked_for(app, live, upstream):
    sdk = openai.OpenAI(base_url=live.url + "/v1", api_key=MASTER_KEY, max_retries=0)
    chunks = list(sdk.chat.completions.create(model="gpt-4o-mini", stream=True,
                                              messages=[{"role": "user", "content": "hi"}]))
    assert chunks and upstream.last.json["stream_options"] == {"include_usage": True}
    [row] = _eventually(lambda: stored(app))
    assert (row["stream"], row["stream_cut"], row["usage_estimated"]) == (True, False, False)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (9, 4)
    assert row["cost"] == pytest.approx(9e-6 + 4 * 2e-6)


def test_a_failed_call_leaves_a_row_with_its_error_and_no_cost(app, client, auth, upstream):
    upstream.fail(400, "bad things")
    response = chat(client, auth)
    assert response.status_code == 400 and "x-dheera-ai-response-cost" not in response.headers
    [row] = stored(app)
    assert (row["status"], row["error_type"], row["cost"]) == (400, "BadRequestError", 0)


def test_a_stream_that_fails_part_way_is_billed_for_what_it_delivered(app, live, upstream):
    upstream.stream(chat_chunks(words=[f" word{i:03d}" for i in range(10)], usage=None)[:-2], truncate=True)
    response = requests.post(live.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER_KEY}"},
                             json={"model": "gpt-4o-mini", "stream": True,
                                   "messages": [{"role": "user", "content": "count"}]}, timeout=10)
    assert response.text.count("word") == 10 and '"error"' in response.text
    [row] = _eventually(lambda: stored(app))
    assert row["status"] >= 500 and row["error_type"] and row["stream_cut"] is True
    assert row["usage_estimated"] is True and row["completion_tokens"] == 20
    assert row["cost"] == pytest.approx(row["prompt_tokens"] * 1e-6 + 20 * 2e-6)


def test_a_hung_up_stream_is_billed_for_what_it_delivered(app, live, upstream):
    words = [f" word{i:03d}" for i in range(300)]  # 8 characters each: 2 tokens a word
    upstream.stream(chat_chunks(words=words), event_delay=0.01)
    received = hang_up_mid_stream(live.url, MASTER_KEY, {"model": "gpt-4o-mini", "stream": True,
                                                         "messages": [{"role": "user", "content": "count"}]},
                                  enough=lambda received: received.count(b"word") >= 20)
    [row] = _eventually(lambda: stored(app))
    assert row["stream_cut"] is True and row["usage_estimated"] is True and row["status"] == 200
    delivered_words = received.count(b"word")
    # At least what the client read, never the whole answer it left.
    assert 2 * delivered_words <= row["completion_tokens"] < 2 * len(words)
    assert row["cost"] == pytest.approx(row["prompt_tokens"] * 1e-6 + row["completion_tokens"] * 2e-6)


def test_tags_from_every_source_are_merged_into_the_row(app, client, auth, live):
    team = client.post("/team/new", headers=auth, json={"team_id": "eng", "tags": ["team-tag"]})
    assert team.status_code == 200, team.json
    key = client.post("/key/generate", headers=auth, json={"team_id": "eng", "tags": ["key-tag"]}).json["key"]
    sdk = openai.OpenAI(base_url=live.url + "/v1", api_key=key, max_retries=0,
                        default_headers={"x-dheera-ai-tags": "header-tag"})
    sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                extra_body={"tags": ["body-tag"], "metadata": {"tags": ["metadata-tag"]}})
    [row] = stored(app)
    assert set(row["tags"]) == {"body-tag", "metadata-tag", "header-tag", "key-tag", "team-tag"}
    assert row["team_id"] == "eng" and row["key_hash"]
    assert [r["request_id"] for r in stored(app, tag="header-tag")] == [row["request_id"]]
    tags = client.get("/spend/tags", headers=auth).json["data"]
    assert {t["tag"] for t in tags} == set(row["tags"]) and all(t["calls"] == 1 for t in tags)


def test_spend_logs_filter_and_the_report_totals(app, client, auth):
    key = client.post("/key/generate", headers=auth, json={"key_alias": "k"}).json
    for _ in range(3):
        chat(client, {"Authorization": f"Bearer {key['key']}"})
    chat(client, auth)
    assert len(stored(app, api_key=key["key"])) == 3 and len(stored(app)) == 4
    assert stored(app, model="nope") == []
    assert stored(app, start_date="2000-01-01", end_date="2000-01-02") == []
    report = client.get("/spend/report", headers=auth, query_string={"group_by": "key"}).json
    by_key = {r["key"]: r for r in report["data"]}
    assert by_key[key["token"]]["calls"] == 3
    assert by_key[key["token"]]["spend"] == pytest.approx(3 * PLAIN_COST)
    assert report["total_spend"] == pytest.approx(4 * PLAIN_COST)
    assert report["data"][0]["day"] == time.strftime("%Y-%m-%d", time.gmtime())
    # A key reads its own spend, nobody else's.
    own = client.get("/spend/logs", headers={"Authorization": f"Bearer {key['key']}"}).json
    assert own["total_count"] == 3
    info = client.get("/key/info", headers={"Authorization": f"Bearer {key['key']}"}).json["info"]
    assert info["spend"] == pytest.approx(3 * PLAIN_COST)
    assert client.get("/spend/tags", headers={"Authorization": f"Bearer {key['key']}"}).status_code == 403
    assert client.get("/spend/report", headers=auth, query_string={"group_by": "nope"}).status_code == 400


def _eventually(read, timeout=5.0):
    deadline = time.time() + timeout
    while True:
        found = read()
        if found or time.time() > deadline:
            return found
        time.sleep(0.05)
