"""Anthropic: OpenAI chat in, the Messages API upstream (docs.claude.com/en/api/messages), and back."""

import json

import openai
import pytest

from dheera_ai.errors import ContextWindowExceededError, ServiceUnavailableError
from tests.conftest import MASTER_KEY
from tests.support.engine import answer, assert_valid_chat_stream, make_engine, run, streamed
from tests.support.openapi import assert_valid
from tests.support.servers import LiveServer

CLAUDE = "claude-sonnet-4-5"


def message(content=None, stop_reason="end_turn", usage=None):
    return {"id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant", "model": CLAUDE,
            "content": content if content is not None else [{"type": "text", "text": "Hello from Claude."}],
            "stop_reason": stop_reason, "stop_sequence": None,
            "usage": usage or {"input_tokens": 12, "output_tokens": 6, "cache_creation_input_tokens": 0,
                               "cache_read_input_tokens": 0}}


def stream_events(words=("Hello", " there"), usage_out=7):
    start = message(content=[], stop_reason=None, usage={"input_tokens": 20, "output_tokens": 1,
                                                         "cache_read_input_tokens": 8,
                                                         "cache_creation_input_tokens": 0})
    events = [("message_start", {"type": "message_start", "message": start}),
              ("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}}),
              ("ping", {"type": "ping"})]
    events += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta", "text": w}}) for w in words]
    events += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
               ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                                     "stop_sequence": None},
                                  "usage": {"output_tokens": usage_out}}),
               ("message_stop", {"type": "message_stop"})]
    return events


def anthropic_error(upstream, status, err_type, message, headers=None):
    upstream.respond({"type": "error", "error": {"type": err_type, "message": message},
                      "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}, status=status, headers=headers)


@pytest.fixture
def config(upstream):
    return {"model_list": [{"model_name": "claude", "dheera_ai_params": {
        "model": f"anthropic/{CLAUDE}", "api_base": upstream.url, "api_key": "sk-ant-api03-secretsecret"}}],
        "general_settings": {"master_key": MASTER_KEY}}


@pytest.fixture
def client(make_app, config):
    server = LiveServer(make_app(config))
    yield openai.OpenAI(base_url=server.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)
    server.close()


def ask(client, **kwargs):
    kwargs.setdefault("messages", [{"role": "user", "content": "Hi"}])
    return client.chat.completions.create(model="claude", **kwargs)


def test_chat_becomes_a_messages_request_with_anthropics_headers(client, upstream):
    upstream.respond(message())
    response = ask(client, temperature=0.5, stop=["END"], messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])

    assert response.choices[0].message.content == "Hello from Claude."
    assert response.choices[0].finish_reason == "stop"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (12, 6)
    sent = upstream.last
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    assert sent.headers["x-api-key"] == "sk-ant-api03-secretsecret"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    assert sent.json == {"model": CLAUDE, "max_tokens": 4096, "system": "Be brief.", "temperature": 0.5,
                         "stop_sequences": ["END"],
                         "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}


def test_max_tokens_and_images_are_sent_as_anthropic_wants_them(client, upstream):
    upstream.respond(message())
    ask(client, max_tokens=33, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}])

    sent = upstream.last.json
    assert sent["max_tokens"] == 33
    assert sent["messages"][0]["content"][1] == {"type": "image", "source": {
        "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}


def test_tool_use_round_trips(client, upstream):
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                               "parameters": {"type": "object",
                                                              "properties": {"city": {"type": "string"}}}}}]
    upstream.respond(message(content=[{"type": "tool_use", "id": "toolu_01", "name": "get_weather",
                                       "input": {"city": "Paris"}}], stop_reason="tool_use"))
    first = ask(client, tools=tools, tool_choice="required")

    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == ("toolu_01", "get_weather",
                                                                                 {"city": "Paris"})
    assert upstream.last.json["tools"] == [{"name": "get_weather", "description": "Weather", "input_schema": {
        "type": "object", "properties": {"city": {"type": "string"}}}}]
    assert upstream.last.json["tool_choice"] == {"type": "any"}

    upstream.respond(message())
    ask(client, tools=tools, messages=[{"role": "user", "content": "Weather?"},
                                       {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                                       {"role": "tool", "tool_call_id": "toolu_01", "content": "sunny"}])
    sent = upstream.last.json["messages"]
    assert sent[1] == {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01",
                                                         "name": "get_weather", "input": {"city": "Paris"}}]}
    assert sent[2] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01",
                                                    "content": "sunny"}]}


def test_a_stream_becomes_openai_chunks_with_usage_including_cache_reads(client, upstream):
    upstream.stream(stream_events())
    chunks = list(ask(client, stream=True, stream_options={"include_usage": True}))

    assert upstream.last.json["stream"] is True
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello there"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage.prompt_tokens == 28 and usage.completion_tokens == 7
    assert usage.prompt_tokens_details.cached_tokens == 8


def test_no_usage_chunk_unless_asked(client, upstream):
    upstream.stream(stream_events())
    chunks = list(ask(client, stream=True))
    assert all(c.choices for c in chunks)


def test_an_unsupported_parameter_is_a_400_naming_it_unless_dropped(client, upstream, make_app, config):
    with pytest.raises(openai.BadRequestError) as exc:
        ask(client, logit_bias={"50256": -100})
    assert exc.value.param == "logit_bias" and "drop_params" in exc.value.message
    assert upstream.requests == []

    config["dheera_ai_settings"] = {"drop_params": True}
    upstream.respond(message())
    response = make_app(config).test_client().post(
        "/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER_KEY}"},
        json={"model": "claude", "messages": [{"role": "user", "content": "Hi"}], "logit_bias": {"1": 1}})
    assert response.status_code == 200 and "logit_bias" not in upstream.last.json


# -- errors ---------------------------------------------------------------------------------------------

def test_overloaded_is_service_unavailable(client, upstream):
    anthropic_error(upstream, 529, "overloaded_error", "Overloaded")
    with pytest.raises(openai.InternalServerError) as exc:
        ask(client)
    assert exc.value.status_code == 503 and "Overloaded" in exc.value.message


def test_a_rate_limit_keeps_retry_after(client, upstream):
    anthropic_error(upstream, 429, "rate_limit_error", "Number of request tokens has exceeded your limit",
                    headers={"retry-after": "30"})
    with pytest.raises(openai.RateLimitError) as exc:
        ask(client)
    assert exc.value.response.headers["retry-after"] == "30"


def test_a_bad_key_is_a_401_that_does_not_echo_it(client, upstream):
    anthropic_error(upstream, 401, "authentication_error", "invalid x-api-key sk-ant-api03-secretsecret")
    with pytest.raises(openai.AuthenticationError) as exc:
        ask(client)
    assert "invalid x-api-key" in exc.value.message and "secretsecret" not in exc.value.message


def test_a_prompt_too_long_is_a_context_window_error(upstream, config):
    engine = make_engine(config["model_list"])
    anthropic_error(upstream, 400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum")
    with pytest.raises(ContextWindowExceededError, match="prompt is too long"):
        run(engine, "chat_completions", "claude", {"messages": [{"role": "user", "content": "x"}]})


def test_an_error_event_mid_stream_reaches_the_client_as_an_error_event(upstream, config):
    engine = make_engine(config["model_list"])
    upstream.stream(stream_events()[:3] + [("error", {"type": "error", "error": {
        "type": "overloaded_error", "message": "Overloaded"}})])
    raw = streamed(run(engine, "chat_completions", "claude",
                       {"messages": [{"role": "user", "content": "x"}], "stream": True}))
    last = json.loads(raw.strip().split(b"\n\n")[-1][6:])
    assert last["error"]["type"] == ServiceUnavailableError.error_type
    assert "Overloaded" in last["error"]["message"]


# -- /v1/messages passed through ------------------------------------------------------------------------

def test_a_messages_call_passes_through_untouched(upstream, config):
    engine = make_engine(config["model_list"])
    body = {"max_tokens": 1024, "messages": [{"role": "user", "content": "Hello"}],
            "thinking": {"type": "enabled", "budget_tokens": 512}, "top_k": 5}
    upstream.respond(message(usage={"input_tokens": 3, "output_tokens": 4, "cache_read_input_tokens": 10,
                                    "cache_creation_input_tokens": 2}))
    reply = run(engine, "anthropic_messages", "claude", body,
                headers={"anthropic-beta": "interleaved-thinking-2025-05-14"})

    assert json.loads(reply.body) == message(usage={"input_tokens": 3, "output_tokens": 4,
                                                    "cache_read_input_tokens": 10,
                                                    "cache_creation_input_tokens": 2})
    assert upstream.last.json == dict(body, model=CLAUDE)
    assert upstream.last.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert reply.usage.prompt_tokens == 15 and reply.usage.completion_tokens == 4


def test_a_streamed_messages_call_is_relayed_byte_for_byte(upstream, config):
    engine = make_engine(config["model_list"])
    events = stream_events()
    upstream.stream(events)
    reply = run(engine, "anthropic_messages", "claude",
                {"max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": "Hi"}]})
    raw = streamed(reply)

    expected = b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events)
    assert raw == expected
    assert reply.usage.prompt_tokens == 28 and reply.usage.completion_tokens == 7


@pytest.mark.parametrize("status, err_type, message, kind", [
    (400, "invalid_request_error", "max_tokens: Field required", "bad_request"),
    (400, "invalid_request_error", "prompt is too long: 201000 tokens > 200000 maximum", "context_window"),
    (401, "authentication_error", "invalid x-api-key", "authentication"),
    (402, "billing_error", "credit balance too low", "permission"),
    (403, "permission_error", "no access to this model", "permission"),
    (404, "not_found_error", "model: claude-x", "not_found"),
    (413, "request_too_large", "Request exceeds the maximum size", None),  # the 413 itself says it
    (429, "rate_limit_error", "rate limited", "rate_limit"),
    (500, "api_error", "Internal server error", "server"),
    (504, "timeout_error", "Request timed out", "timeout"),
    (529, "overloaded_error", "Overloaded", "unavailable"),
])
def test_anthropic_error_types_map_onto_error_kinds(status, err_type, message, kind):
    from plugins.providers.anthropic import error_kind

    assert error_kind(status, {"type": "error", "error": {"type": err_type, "message": message}}) == kind


def test_translated_answers_and_chunks_match_openais_spec(upstream, config):

    engine = make_engine(config["model_list"])
    upstream.respond(message())
    assert_valid("CreateChatCompletionResponse", answer(run(engine, "chat_completions", "claude", {
        "messages": [{"role": "user", "content": "x"}]})))
    upstream.stream(stream_events())
    raw = streamed(run(engine, "chat_completions", "claude", {
        "messages": [{"role": "user", "content": "x"}], "stream": True, "stream_options": {"include_usage": True}}))
    assert_valid_chat_stream(raw)
