"""Vertex AI through the OpenAI and Anthropic SDKs: Gemini (generateContent, streamed), Claude
(rawPredict, streamRawPredict) and embeddings (predict), with tokens from a service account made
in the test whose JWT a fake token endpoint verifies; tokens are cached and refreshed only when due."""

import json
import time

import anthropic
import openai
import pytest

from tests.conftest import MASTER_KEY
from tests.support.fake_google import FakeTokenEndpoint
from tests.support.servers import LiveServer

PROJECT = "dheera-test"
BASE = f"/v1/projects/{PROJECT}/locations/us-central1"


def generated(text="Hello from Vertex.", usage=(8, 4), parts=None):
    return {"candidates": [{"content": {"role": "model", "parts": parts or [{"text": text}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": usage[0], "candidatesTokenCount": usage[1],
                              "totalTokenCount": sum(usage)}}


def claude_message(text="Hi from Claude on Vertex."):
    return {"id": "msg_vrtx_1", "type": "message", "role": "assistant", "model": "claude-3-5-sonnet-v2-20241022",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 6}}


@pytest.fixture
def tokens():
    endpoint = FakeTokenEndpoint()
    yield endpoint
    endpoint.close()


@pytest.fixture
def credentials_file(tokens, tmp_path):
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(tokens.service_account()))
    return str(path)


def vertex(name, model, **params):
    return {"model_name": name, "dheera_ai_params": {"model": f"vertex_ai/{model}", **params}}


@pytest.fixture
def gateway(make_app, upstream, credentials_file, tmp_path):
    common = {"vertex_project": PROJECT, "vertex_location": "us-central1", "vertex_credentials": credentials_file,
              "api_base": upstream.url}
    config = {"model_list": [vertex("gemini", "gemini-2.0-flash-001", **common),
                             vertex("claude", "claude-3-5-sonnet-v2@20241022", **common),
                             vertex("embed", "text-embedding-005", **common)],
              "general_settings": {"master_key": MASTER_KEY, "database_url": f"sqlite:///{tmp_path}/state.sqlite3"}}
    server = LiveServer(make_app(config))
    yield server
    server.close()


@pytest.fixture
def client(gateway):
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)


def test_gemini_chat_uses_a_token_from_the_service_account(client, upstream, tokens):
    upstream.respond(generated())
    response = client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": "Hi"}])

    assert response.choices[0].message.content == "Hello from Vertex."
    assert response.usage.total_tokens == 12
    assert upstream.last.path == f"{BASE}/publishers/google/models/gemini-2.0-flash-001:generateContent"
    assert upstream.last.headers["authorization"] == "Bearer ya29.test-1"
    assert tokens.issued == ["ya29.test-1"] and tokens.refused == []


def test_one_token_serves_many_calls(client, upstream, tokens):
    for _ in range(4):
        upstream.respond(generated())
        client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": "Hi"}])
    assert tokens.issued == ["ya29.test-1"]
    assert {r.headers["authorization"] for r in upstream.requests} == {"Bearer ya29.test-1"}


def test_a_token_near_expiry_is_refreshed_exactly_once(make_app, upstream, tmp_path):
    # google-auth counts a token as expired 3m45s (225 s) early: one issued for 228 s is good for ~3 s.
    short = FakeTokenEndpoint(expires_in=228)
    config = {"model_list": [vertex("gemini", "gemini-2.0-flash-001", vertex_project=PROJECT, api_base=upstream.url,
                                    vertex_credentials=json.dumps(short.service_account()))],
              "general_settings": {"master_key": MASTER_KEY, "database_url": f"sqlite:///{tmp_path}/s.sqlite3"}}
    server = LiveServer(make_app(config))
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)
    try:
        for _ in range(2):
            upstream.respond(generated())
            client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": "Hi"}])
        time.sleep(3.5)
        for _ in range(3):
            upstream.respond(generated())
            client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": "Hi"}])
    finally:
        server.close()
        short.close()
    assert short.issued == ["ya29.test-1", "ya29.test-2"]
    assert [r.headers["authorization"][7:] for r in upstream.requests][-3:] == ["ya29.test-2"] * 3


def test_a_refused_assertion_is_a_401_naming_google(make_app, upstream, tokens, tmp_path):
    other = FakeTokenEndpoint()  # its own key: the token endpoint of `tokens` cannot verify this one
    account = dict(other.service_account(), token_uri=tokens.token_uri)
    other.close()
    config = {"model_list": [vertex("gemini", "gemini-2.0-flash-001", vertex_project=PROJECT, api_base=upstream.url,
                                    vertex_credentials=json.dumps(account))],
              "general_settings": {"master_key": MASTER_KEY, "database_url": f"sqlite:///{tmp_path}/s.sqlite3"}}
    server = LiveServer(make_app(config))
    try:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)
        with pytest.raises(openai.AuthenticationError) as caught:
            client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": "Hi"}])
    finally:
        server.close()
    assert "Google access token" in caught.value.message and "PRIVATE KEY" not in caught.value.message
    assert tokens.refused and upstream.requests == []


def test_gemini_streams_and_tools(client, upstream):
    upstream.stream([generated("Hel", usage=(5, 1)), generated("lo", usage=(5, 2))])
    chunks = list(client.chat.completions.create(model="gemini", stream=True, stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": "Hi"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
    assert chunks[-1].usage.total_tokens == 7
    assert upstream.last.path == f"{BASE}/publishers/google/models/gemini-2.0-flash-001:streamGenerateContent?alt=sse"

    upstream.respond(generated(parts=[{"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]))
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    answer = client.chat.completions.create(model="gemini", tools=[tool], messages=[{"role": "user", "content": "?"}])
    assert answer.choices[0].message.tool_calls[0].function.name == "get_weather"
    assert upstream.last.json["tools"] == [{"functionDeclarations": [{"name": "get_weather",
                                                                       "parametersJsonSchema": {"type": "object"}}]}]


def test_the_global_location_has_its_own_host(make_app, credentials_file, tmp_path):
    from dheera_ai.types import Deployment
    from plugins.providers.vertex_ai import model_url

    deployment = Deployment(id="d", model_name="g", provider="vertex_ai", model="gemini-2.5-pro",
                            params={"vertex_project": "p1", "vertex_location": "global"})
    assert model_url(deployment, "google", "generateContent") == \
        "https://aiplatform.googleapis.com/v1/projects/p1/locations/global/publishers/google/models/" \
        "gemini-2.5-pro:generateContent"
    regional = Deployment(id="d", model_name="g", provider="vertex_ai", model="text-embedding-005",
                          params={"vertex_location": "europe-west4", "vertex_credentials": credentials_file})
    assert model_url(regional, "google", "predict").startswith(  # the project comes from the service account
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/dheera-test/locations/europe-west4/")


def test_claude_on_vertex_through_openai_and_anthropic_clients(gateway, client, upstream):
    upstream.respond(claude_message())
    answer = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "Hi"}])
    assert answer.choices[0].message.content == "Hi from Claude on Vertex."
    assert upstream.last.path == f"{BASE}/publishers/anthropic/models/claude-3-5-sonnet-v2@20241022:rawPredict"
    sent = upstream.last.json
    assert sent["anthropic_version"] == "vertex-2023-10-16" and "model" not in sent and sent["max_tokens"] == 4096

    upstream.respond(claude_message("Native."))
    native = anthropic.Anthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0)
    reply = native.messages.create(model="claude", max_tokens=64, messages=[{"role": "user", "content": "Hi"}])
    assert reply.content[0].text == "Native." and "model" not in upstream.last.json

    start = dict(claude_message(), content=[], stop_reason=None)
    upstream.stream([("message_start", {"type": "message_start", "message": start}),
                     ("content_block_start", {"type": "content_block_start", "index": 0,
                                              "content_block": {"type": "text", "text": ""}}),
                     ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                              "delta": {"type": "text_delta", "text": "Streamed"}}),
                     ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                        "usage": {"output_tokens": 2}}),
                     ("message_stop", {"type": "message_stop"})])
    chunks = list(client.chat.completions.create(model="claude", stream=True,
                                                 messages=[{"role": "user", "content": "Hi"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Streamed"
    assert upstream.last.path.endswith(":streamRawPredict")


def test_embeddings_are_a_predict_call(client, upstream):
    upstream.respond({"predictions": [
        {"embeddings": {"values": [0.1, 0.2], "statistics": {"token_count": 2, "truncated": False}}},
        {"embeddings": {"values": [0.3, 0.4], "statistics": {"token_count": 3, "truncated": False}}}]})
    result = client.embeddings.create(model="embed", input=["one", "two"], dimensions=256, encoding_format="float")
    assert [d.embedding for d in result.data] == [[0.1, 0.2], [0.3, 0.4]] and result.usage.prompt_tokens == 5
    assert upstream.last.path == f"{BASE}/publishers/google/models/text-embedding-005:predict"
    assert upstream.last.json == {"instances": [{"content": "one"}, {"content": "two"}],
                                  "parameters": {"outputDimensionality": 256}}


def test_google_errors_keep_their_meaning(client, upstream):
    upstream.respond({"error": {"code": 429, "message": "Quota exceeded for aiplatform.googleapis.com",
                                "status": "RESOURCE_EXHAUSTED"}}, status=429)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": "Hi"}])
    assert "Quota exceeded" in caught.value.message
