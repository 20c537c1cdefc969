"""Gemini (Google AI Studio): generateContent, streamGenerateContent?alt=sse and batchEmbedContents
as ai.google.dev/api documents them, driven by OpenAI clients."""

import base64
import json
import struct

import openai
import pytest

from dheera_ai.errors import ContentPolicyViolationError
from tests.conftest import MASTER_KEY
from tests.support.engine import answer, assert_valid_chat_stream, make_engine, run, streamed
from tests.support.openapi import assert_valid
from tests.support.servers import LiveServer

KEY = "AIzaSyA-fake-gemini-key-0123456789"


def generated(text="Hello from Gemini.", finish="STOP", usage=(8, 4), parts=None):
    return {"candidates": [{"content": {"parts": parts or [{"text": text}], "role": "model"},
                            "finishReason": finish, "index": 0}],
            "usageMetadata": {"promptTokenCount": usage[0], "candidatesTokenCount": usage[1],
                              "totalTokenCount": sum(usage)},
            "modelVersion": "gemini-2.0-flash"}


def google_error(upstream, status, code_name, message, reason=None):
    error = {"code": status, "message": message, "status": code_name}
    if reason:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                             "domain": "googleapis.com"}]
    upstream.respond({"error": error}, status=status)


@pytest.fixture
def model_list(upstream):
    return [{"model_name": "gemini", "dheera_ai_params": {"model": "gemini/gemini-2.0-flash",
                                                          "api_base": upstream.url, "api_key": KEY}},
            {"model_name": "gemini-embed", "dheera_ai_params": {"model": "gemini/text-embedding-004",
                                                                "api_base": upstream.url, "api_key": KEY}}]


@pytest.fixture
def client(make_app, model_list):
    server = LiveServer(make_app({"model_list": model_list, "general_settings": {"master_key": MASTER_KEY}}))
    yield openai.OpenAI(base_url=server.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)
    server.close()


def ask(client, **kwargs):
    kwargs.setdefault("messages", [{"role": "user", "content": "Hi"}])
    return client.chat.completions.create(model="gemini", **kwargs)


def test_chat_is_a_generate_content_call_with_the_key_in_a_header(client, upstream):
    upstream.respond(generated())
    response = ask(client, max_tokens=20, temperature=0.3, messages=[
        {"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}])

    assert response.choices[0].message.content == "Hello from Gemini."
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.total_tokens == 12
    sent = upstream.last
    assert (sent.method, sent.path) == ("POST", "/v1beta/models/gemini-2.0-flash:generateContent")
    assert sent.headers["x-goog-api-key"] == KEY and "key=" not in sent.path
    assert sent.json == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
                         "systemInstruction": {"parts": [{"text": "Be kind."}]},
                         "generationConfig": {"temperature": 0.3, "maxOutputTokens": 20}}


def test_tools_become_function_declarations_and_calls_come_back(client, upstream):
    upstream.respond(generated(parts=[{"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]))
    response = ask(client, tools=[{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])

    call = response.choices[0].message.tool_calls[0]
    assert response.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Rome"}
    assert upstream.last.json["tools"] == [{"functionDeclarations": [{"name": "get_weather", "parametersJsonSchema": {
        "type": "object", "properties": {"city": {"type": "string"}}}}]}]


def test_a_stream_uses_sse_and_becomes_openai_chunks(client, upstream):
    upstream.stream([generated("Hello", finish=None, usage=(8, 1)), generated(" world", usage=(8, 2))])
    chunks = list(ask(client, stream=True, stream_options={"include_usage": True}))

    assert upstream.last.path == "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello world"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == 2 and chunks[-1].usage.prompt_tokens == 8


def test_an_invalid_key_is_a_401_though_google_says_400(client, upstream):
    google_error(upstream, 400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
                 reason="API_KEY_INVALID")
    with pytest.raises(openai.AuthenticationError) as exc:
        ask(client)
    assert "API key not valid" in exc.value.message


def test_quota_exhausted_is_a_rate_limit(client, upstream):
    google_error(upstream, 429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).")
    with pytest.raises(openai.RateLimitError):
        ask(client)


def test_a_blocked_prompt_is_a_content_policy_error(upstream, model_list):
    upstream.respond({"promptFeedback": {"blockReason": "SAFETY"},
                      "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}})
    with pytest.raises(ContentPolicyViolationError, match="SAFETY"):
        run(make_engine(model_list), "chat_completions", "gemini", {"messages": [{"role": "user", "content": "x"}]})


def test_embeddings_are_a_batch_embed_call(upstream, model_list):
    upstream.respond({"embeddings": [{"values": [0.5, -0.25]}, {"values": [1.0, 2.0]}]})
    reply = run(make_engine(model_list), "embeddings", "gemini-embed",
                {"input": ["first", "second"], "dimensions": 2})

    data = answer(reply)
    assert [d["embedding"] for d in data["data"]] == [[0.5, -0.25], [1.0, 2.0]]
    assert upstream.last.path == "/v1beta/models/text-embedding-004:batchEmbedContents"
    assert upstream.last.headers["x-goog-api-key"] == KEY
    assert upstream.last.json == {"requests": [
        {"model": "models/text-embedding-004", "content": {"parts": [{"text": "first"}]}, "outputDimensionality": 2},
        {"model": "models/text-embedding-004", "content": {"parts": [{"text": "second"}]}, "outputDimensionality": 2}]}


def test_embeddings_in_base64_as_the_openai_sdk_asks_by_default(upstream, model_list):
    upstream.respond({"embeddings": [{"values": [0.5, -0.25]}]})
    reply = run(make_engine(model_list), "embeddings", "gemini-embed", {"input": "x", "encoding_format": "base64"})
    encoded = answer(reply)["data"][0]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(encoded)) == (0.5, -0.25)


def test_a_parameter_gemini_lacks_is_a_400_naming_it_unless_dropped(client, upstream, make_app, model_list):
    with pytest.raises(openai.BadRequestError) as exc:
        ask(client, logit_bias={"1": 2})
    assert exc.value.param == "logit_bias"
    assert upstream.requests == []

    upstream.respond(generated())
    model_list[0]["dheera_ai_params"]["drop_params"] = True
    run(make_engine(model_list), "chat_completions", "gemini",
        {"messages": [{"role": "user", "content": "x"}], "logit_bias": {"1": 2}})
    assert "logit_bias" not in json.dumps(upstream.last.json)


def test_a_base_with_the_version_segment_is_accepted(upstream, model_list):
    model_list[0]["dheera_ai_params"]["api_base"] = upstream.url + "/v1beta/"
    upstream.respond(generated())
    run(make_engine(model_list), "chat_completions", "gemini", {"messages": [{"role": "user", "content": "x"}]})
    assert upstream.last.path == "/v1beta/models/gemini-2.0-flash:generateContent"


def test_translated_answers_and_chunks_match_openais_spec(upstream, model_list):

    engine = make_engine(model_list)
    upstream.respond(generated())
    assert_valid("CreateChatCompletionResponse", answer(run(engine, "chat_completions", "gemini", {
        "messages": [{"role": "user", "content": "x"}]})))
    upstream.stream([generated("Hel", finish=None), generated("lo")])
    raw = streamed(run(engine, "chat_completions", "gemini", {
        "messages": [{"role": "user", "content": "x"}], "stream": True, "stream_options": {"include_usage": True}}))
    assert_valid_chat_stream(raw)
    upstream.respond({"embeddings": [{"values": [0.5]}]})
    assert_valid("CreateEmbeddingResponse", answer(run(engine, "embeddings", "gemini-embed", {"input": "x"})))
