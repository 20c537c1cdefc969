"""`/v1/messages`: the Anthropic SDK against the gateway, on OpenAI-style deployments (translated
both ways) and on the mock model."""

import json

import anthropic
import pytest

from tests.conftest import MASTER_KEY
from tests.support.fake_upstream import chat_chunks, chat_completion

WEATHER_TOOL = {"name": "get_weather", "description": "Weather in a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


@pytest.fixture
def claude(live):
    return anthropic.Anthropic(base_url=live.url, api_key=MASTER_KEY, max_retries=0, timeout=10)


def test_a_message_is_translated_to_chat_and_back(claude, upstream, call_log):
    message = claude.messages.create(model="gpt-4o-mini", max_tokens=50, system="Be brief.",
                                     messages=[{"role": "user", "content": "Hi there"}])

    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert message.content[0].text == "Hello from the fake upstream."
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 9 and message.usage.output_tokens == 7
    sent = upstream.last
    assert sent.path == "/v1/chat/completions"
    assert sent.json["messages"] == [{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": "Hi there"}]
    assert sent.json["max_tokens"] == 50
    assert call_log()[-1]["call_type"] == "anthropic_messages"


def test_a_stream_has_anthropics_named_events(claude, upstream):
    with claude.messages.stream(model="gpt-4o-mini", max_tokens=50,
                                messages=[{"role": "user", "content": "Hi"}]) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()

    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert "content_block_delta" in events and "message_delta" in events
    assert final.content[0].text == "Hello from the stream."
    assert final.usage.output_tokens == 4
    assert upstream.last.json["stream_options"] == {"include_usage": True}


def test_a_tool_use_round_trip(claude, upstream):
    tool_call = {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}
    upstream.respond(chat_completion(tool_calls=[tool_call]))
    asked = claude.messages.create(model="gpt-4o-mini", max_tokens=50, tools=[WEATHER_TOOL],
                                   messages=[{"role": "user", "content": "Weather in Paris?"}])
    use = asked.content[0]
    assert asked.stop_reason == "tool_use"
    assert use.type == "tool_use" and use.name == "get_weather" and use.input == {"city": "Paris"}
    assert upstream.last.json["tools"][0]["function"]["name"] == "get_weather"

    upstream.respond(chat_completion("Sunny in Paris."))
    answer = claude.messages.create(model="gpt-4o-mini", max_tokens=50, tools=[WEATHER_TOOL], messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [use.model_dump()]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
    ])
    assert answer.content[0].text == "Sunny in Paris."
    messages = upstream.last.json["messages"]
    assert messages[1]["tool_calls"][0]["id"] == "call_1"
    assert json.loads(messages[1]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert messages[2] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}


def test_a_streamed_tool_use_arrives_as_input_json_deltas(claude, upstream):
    base = chat_chunks()[0]
    calls = [{"index": 0, "id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
             {"index": 0, "function": {"arguments": "{\"city\": "}},
             {"index": 0, "function": {"arguments": "\"Oslo\"}"}}]
    chunks = [dict(base, choices=[{"index": 0, "delta": {"tool_calls": [c]}, "finish_reason": None}]) for c in calls]
    chunks.append(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]))
    upstream.stream(chunks + ["[DONE]"])
    with claude.messages.stream(model="gpt-4o-mini", max_tokens=50, tools=[WEATHER_TOOL],
                                messages=[{"role": "user", "content": "Oslo?"}]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[0].input == {"city": "Oslo"}


@pytest.mark.parametrize("stream", [False, True])
def test_the_mock_answers_the_anthropic_sdk(claude, stream):
    if stream:
        with claude.messages.stream(model="demo", max_tokens=20, messages=[{"role": "user", "content": "Hi"}]) as s:
            text = s.get_final_text()
    else:
        text = claude.messages.create(model="demo", max_tokens=20,
                                      messages=[{"role": "user", "content": "Hi"}]).content[0].text
    assert "mock model" in text


def test_errors_are_in_anthropics_shape(claude, live, upstream):
    bad_key = anthropic.Anthropic(base_url=live.url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as exc:
        bad_key.messages.create(model="demo", max_tokens=5, messages=[{"role": "user", "content": "Hi"}])
    assert exc.value.body == {"type": "error", "error": {"type": "authentication_error",
                                                         "message": exc.value.body["error"]["message"]}}

    with pytest.raises(anthropic.BadRequestError) as exc:
        claude.messages.create(model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "Hi"}])
    assert exc.value.body["error"]["type"] == "invalid_request_error"
    assert "demo" in exc.value.body["error"]["message"]

    upstream.fail(429, "Rate limit reached", headers={"Retry-After": "3"})
    with pytest.raises(anthropic.RateLimitError) as exc:
        claude.messages.create(model="gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": "Hi"}])
    assert exc.value.body["error"]["type"] == "rate_limit_error"
    assert exc.value.response.headers["retry-after"] == "3"


def test_a_missing_max_tokens_is_a_400_naming_it(client, auth):
    response = client.post("/v1/messages", headers=auth,
                           json={"model": "demo", "messages": [{"role": "user", "content": "Hi"}]})
    assert response.status_code == 400
    assert response.json["type"] == "error" and "max_tokens" in response.json["error"]["message"]


def test_an_error_mid_stream_is_an_anthropic_error_event(live, upstream):
    upstream.stream(chat_chunks()[:2] + ['{"error": {"message": "upstream fell over"}}'])
    import requests

    response = requests.post(live.url + "/v1/messages", headers={"x-api-key": MASTER_KEY}, stream=True, json={
        "model": "gpt-4o-mini", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "Hi"}]})
    text = response.text
    assert text.startswith("event: message_start")
    assert "event: error\ndata: " in text
    error = json.loads(text.split("event: error\ndata: ", 1)[1].split("\n", 1)[0])
    assert error["type"] == "error" and "upstream fell over" in error["error"]["message"]


def test_metadata_user_id_becomes_the_chat_user(claude, upstream):
    claude.messages.create(model="gpt-4o-mini", max_tokens=5, metadata={"user_id": "u-42"},
                           messages=[{"role": "user", "content": "Hi"}])
    assert upstream.last.json["user"] == "u-42"
