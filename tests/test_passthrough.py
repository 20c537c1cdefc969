"""Pass-through routes: native SDKs and plain HTTP reach the providers' own APIs through the
gateway with a gateway key; the upstream sees the server's credentials (an api key, a SigV4
signature a fake Bedrock verifies, a Google token a fake token endpoint issued), never the
caller's; streams are relayed as they come; each call leaves a spend row, priced from the native
answer's usage where it has one."""

import json

import anthropic
import pytest
import requests

from dheera_ai.config import ConfigError
from tests.conftest import MASTER_KEY
from tests.support.fake_aws import FakeBedrock
from tests.support.fake_google import FakeTokenEndpoint
from tests.support.servers import LiveServer
from tests.test_spend import stored

SERVER_KEY = "sk-ant-server-secret-0001"
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
MODEL = "claude-3-5-sonnet-20241022"


def message(text="Hi from Anthropic.", usage=(12, 7)):
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": MODEL,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": usage[0], "output_tokens": usage[1]}}


def sse(events):
    return [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events]


def message_stream():
    start = message(text="")
    start["content"], start["usage"] = [], {"input_tokens": 9, "output_tokens": 1}
    return sse([{"type": "message_start", "message": start},
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
                {"type": "content_block_stop", "index": 0},
                {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                 "usage": {"output_tokens": 5}},
                {"type": "message_stop"}])


@pytest.fixture
def tokens():
    endpoint = FakeTokenEndpoint()
    yield endpoint
    endpoint.close()


@pytest.fixture
def config(upstream, tokens, tmp_path):
    sa = tmp_path / "sa.json"
    sa.write_text(json.dumps(tokens.service_account()))
    return {
        "model_list": [
            {"model_name": "claude", "dheera_ai_params": {"model": f"anthropic/{MODEL}", "api_key": SERVER_KEY,
                                                          "api_base": upstream.url}},
            {"model_name": "gemini", "dheera_ai_params": {"model": "gemini/gemini-2.0-flash",
                                                          "api_key": "gemini-server-key-0001",
                                                          "api_base": upstream.url}},
            {"model_name": "vertex", "dheera_ai_params": {"model": "vertex_ai/gemini-2.0-flash-001",
                                                          "vertex_project": "dheera-test",
                                                          "vertex_credentials": str(sa), "api_base": upstream.url}},
            {"model_name": "nova", "dheera_ai_params": {
                "model": "bedrock/amazon.nova-lite-v1:0", "aws_access_key_id": "AKIDEXAMPLEDHEERA01",
                "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                "aws_region_name": "us-east-1", "aws_bedrock_runtime_endpoint": upstream.url}},
        ],
        "general_settings": {
            "master_key": MASTER_KEY, "database_url": f"sqlite:///{tmp_path}/state.sqlite3",
            "spend_flush_seconds": 3600,
            "pass_through_endpoints": [{"path": "/ocr", "target": upstream.url + "/service",
                                        "headers": {"Authorization": "Bearer ocr-server-key-0001"},
                                        "include_subpath": True},
                                       {"path": "/translate", "target": upstream.url + "/translate",
                                        "cost_per_request": 0.002}],
        },
    }


@pytest.fixture
def app(make_app, config):
    return make_app(config)


@pytest.fixture
def gateway(app):
    server = LiveServer(app)
    yield server
    server.close()


def new_key(app, **limits):
    response = app.test_client().post("/key/generate", headers=AUTH, json=limits)
    assert response.status_code == 200, response.json
    return response.json["key"]


def claude_client(gateway, key):
    return anthropic.Anthropic(base_url=gateway.url + "/anthropic", api_key=key, max_retries=0, timeout=10)


def test_the_anthropic_sdk_reaches_anthropic_with_the_servers_key(app, gateway, upstream):
    key = new_key(app)
    upstream.respond(message())
    answer = claude_client(gateway, key).messages.create(model=MODEL, max_tokens=50,
                                                         messages=[{"role": "user", "content": "Hi"}])

    assert answer.content[0].text == "Hi from Anthropic."
    seen = upstream.last
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == SERVER_KEY
    assert key not in json.dumps(seen.headers)
    assert json.loads(seen.body)["messages"] == [{"role": "user", "content": "Hi"}]
    row = stored(app)[0]
    assert (row["prompt_tokens"], row["completion_tokens"]) == (12, 7)
    assert row["priced"] is True and row["cost"] > 0


def test_an_anthropic_stream_is_relayed_event_by_event_and_priced(app, gateway, upstream):
    key = new_key(app)
    upstream.binary(message_stream(), content_type="text/event-stream")
    with claude_client(gateway, key).messages.stream(model=MODEL, max_tokens=50,
                                                     messages=[{"role": "user", "content": "Hi"}]) as stream:
        text = "".join(stream.text_stream)

    assert text == "Hello"
    assert upstream.last.headers["x-api-key"] == SERVER_KEY
    row = stored(app)[0]
    assert (row["prompt_tokens"], row["completion_tokens"]) == (9, 5)
    assert row["priced"] is True and row["cost"] > 0


def test_gemini_with_the_key_in_the_query(app, gateway, upstream):
    key = new_key(app)
    upstream.respond({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]}}],
                      "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2, "totalTokenCount": 6},
                      "modelVersion": "gemini-2.0-flash"})
    response = requests.post(f"{gateway.url}/gemini/v1beta/models/gemini-2.0-flash:generateContent",
                             params={"key": key}, json={"contents": [{"parts": [{"text": "Hi"}]}]}, timeout=10)

    assert response.status_code == 200, response.text
    assert response.json()["candidates"][0]["content"]["parts"][0]["text"] == "Hi"
    seen = upstream.last
    assert seen.path == "/v1beta/models/gemini-2.0-flash:generateContent"  # no ?key= of the caller's
    assert seen.headers["x-goog-api-key"] == "gemini-server-key-0001"
    row = stored(app)[0]
    assert (row["prompt_tokens"], row["completion_tokens"]) == (4, 2)


def test_vertex_gets_a_google_token_from_the_service_account(app, gateway, upstream, tokens):
    path = "/v1/projects/dheera-test/locations/us-central1/publishers/google/models/gemini-2.0-flash-001:countTokens"
    upstream.respond({"totalTokens": 3})
    response = requests.post(gateway.url + "/vertex_ai" + path, headers={"x-goog-api-key": MASTER_KEY},
                             json={"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}, timeout=10)

    assert response.status_code == 200, response.text
    assert response.json() == {"totalTokens": 3}
    assert upstream.last.path == path
    assert upstream.last.headers["authorization"] == "Bearer ya29.test-1"
    assert stored(app)[0]["priced"] is False  # the answer carries no usage


def test_bedrock_is_signed_with_sigv4_that_the_fake_verifies(app, gateway, upstream):
    bedrock = FakeBedrock(upstream)
    bedrock.serve("amazon.nova-lite-v1:0")
    bedrock.respond({"output": {"message": {"role": "assistant", "content": [{"text": "Hi"}]}},
                     "stopReason": "end_turn", "usage": {"inputTokens": 5, "outputTokens": 2, "totalTokens": 7}})
    response = requests.post(gateway.url + "/bedrock/model/amazon.nova-lite-v1%3A0/converse", headers=AUTH,
                             json={"messages": [{"role": "user", "content": [{"text": "Hi"}]}]}, timeout=10)

    assert response.status_code == 200, response.text
    assert response.json()["output"]["message"]["content"][0]["text"] == "Hi"
    assert bedrock.signed_by == ["AKIDEXAMPLEDHEERA01"]
    row = stored(app)[0]
    assert (row["prompt_tokens"], row["completion_tokens"]) == (5, 2)


def test_a_configured_endpoint_forwards_below_its_path_with_its_headers(app, gateway, upstream):
    upstream.respond({"pages": 1})
    response = requests.post(gateway.url + "/ocr/v1/read?lang=en", headers={**AUTH, "Content-Type": "application/json"},
                             data=b'{"document": "x"}', timeout=10)

    assert response.status_code == 200, response.text
    assert response.json() == {"pages": 1}
    seen = upstream.last
    assert seen.path == "/service/v1/read?lang=en"
    assert seen.body == b'{"document": "x"}'
    assert seen.headers["authorization"] == "Bearer ocr-server-key-0001"
    assert stored(app)[0]["priced"] is False


def test_an_endpoint_with_cost_per_request_bills_each_call_that(app, gateway, upstream):
    # LiteLLM's `cost_per_request`: the service's answer carries no usage, the config says the price.
    upstream.respond({"text": "Hallo"})
    response = requests.post(gateway.url + "/translate", headers=AUTH, json={"text": "Hello"}, timeout=10)

    assert response.status_code == 200, response.text
    row = stored(app)[0]
    assert row["priced"] is True
    assert row["cost"] == pytest.approx(0.002)


def test_an_upstream_error_is_relayed_with_its_status_and_body(app, gateway, upstream):
    body = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    upstream.respond(body, status=429, headers={"Content-Type": "application/json"})
    response = requests.post(gateway.url + "/anthropic/v1/messages", headers={"x-api-key": MASTER_KEY},
                             json={"model": MODEL, "max_tokens": 5, "messages": []}, timeout=10)
    assert response.status_code == 429
    assert response.json() == body


def test_a_wrong_key_is_401_and_nothing_goes_upstream(gateway, upstream):
    response = requests.post(gateway.url + "/anthropic/v1/messages", headers={"x-api-key": "sk-wrong"},
                             json={"model": MODEL}, timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert upstream.requests == []


def test_a_key_over_its_budget_is_refused(app, gateway, upstream):
    key = new_key(app, max_budget=0.0000001)
    upstream.respond(message())
    client = claude_client(gateway, key)
    client.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "Hi"}])
    stored(app)
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "Hi"}])
    assert "Budget exceeded" in str(refused.value)
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("target", ["ftp://files.example", "not a url", "http://"])
def test_a_bad_target_stops_start_up_naming_it(make_app, config, target):
    config["general_settings"]["pass_through_endpoints"] = [{"path": "/x", "target": target}]
    with pytest.raises(ConfigError) as stopped:
        make_app(config)
    assert "pass_through_endpoints" in str(stopped.value) and target in str(stopped.value)


def test_the_keys_rate_limit_applies(app, gateway, upstream):
    key = new_key(app, rpm_limit=1)
    upstream.respond(message())
    client = claude_client(gateway, key)
    client.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "Hi"}])
    assert len(upstream.requests) == 1


def test_a_model_named_pass_through_is_no_route_to_it(app, upstream):
    response = app.test_client().post("/v1/chat/completions", headers=AUTH,
                                      json={"model": "pass_through/x", "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code in (400, 404)
    assert upstream.requests == []
