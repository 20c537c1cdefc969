"""Tests for the Chat Completions <-> Responses translation, checked against the OpenAI spec."""

from __future__ import annotations

import functools
import json
import os

import pytest
import yaml

from dheera_ai.translate.responses import (
    ChatStreamToResponses,
    ResponsesStreamError,
    ResponsesStreamToChat,
    chat_request_to_responses,
    chat_response_to_responses,
    format_sse,
    responses_request_to_chat,
    responses_response_to_chat,
)

SPEC_PATH = os.environ.get(
    "OPENAI_OPENAPI_SPEC", os.path.join(os.path.dirname(__file__), "..", "data", "openai-openapi.yaml"))


# --- a small, honest checker for the spec's schemas -----------------------------------------

@functools.lru_cache(maxsize=1)
def _schemas() -> dict:
    with open(SPEC_PATH, encoding="utf-8") as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))["components"]["schemas"]


def _resolve(schema: dict) -> dict:
    while "$ref" in schema:
        target = _schemas()[schema["$ref"].rsplit("/", 1)[-1]]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


_TYPES = {"string": str, "object": dict, "array": list, "boolean": bool, "null": type(None)}


def _has_type(value, kind) -> bool:
    if isinstance(kind, list):
        return any(_has_type(value, k) for k in kind)
    if kind in ("integer", "number"):
        ok = int if kind == "integer" else (int, float)
        return isinstance(value, ok) and not isinstance(value, bool)
    return isinstance(value, _TYPES[kind])


def spec_errors(value, schema, path="$") -> list[str]:
    """Required fields, types and enums, recursively; a oneOf/anyOf must fit at least one branch."""
    if isinstance(schema, str):
        schema = {"$ref": f"#/components/schemas/{schema}"}
    schema = _resolve(schema)
    errors = []
    for sub in schema.get("allOf", []):
        errors += spec_errors(value, sub, path)
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        results = [spec_errors(value, branch, path) for branch in branches]
        if all(results):
            errors.append(f"{path}: fits no branch, nearest: {min(results, key=len)}")
    if value is None and schema.get("nullable"):
        return errors
    if "type" in schema and not _has_type(value, schema["type"]):
        return errors + [f"{path}: expected {schema['type']}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    if isinstance(value, dict):
        errors += [f"{path}: missing {key!r}" for key in schema.get("required", []) if key not in value]
        for key, sub in (schema.get("properties") or {}).items():
            if key in value:
                errors += spec_errors(value[key], sub, f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, element in enumerate(value):
            errors += spec_errors(element, schema["items"], f"{path}[{i}]")
    return errors


def event_schema(event_type: str) -> str:
    """The ResponseStreamEvent branch whose `type` is `event_type`."""
    for branch in _schemas()["ResponseStreamEvent"]["anyOf"]:
        name = branch["$ref"].rsplit("/", 1)[-1]
        if _schemas()[name]["properties"]["type"].get("enum") == [event_type]:
            return name
    raise AssertionError(f"{event_type!r} is not a ResponseStreamEvent in the spec")


def assert_spec(value, schema_name):
    errors = spec_errors(value, schema_name)
    assert not errors, f"{schema_name}: " + "\n".join(errors[:5])


def test_spec_checker_rejects_broken_objects():
    good = chat_response_to_responses(CHAT_COMPLETION, RESPONSES_REQUEST, "resp_1", 100)
    assert_spec(good, "Response")
    missing = {k: v for k, v in good.items() if k != "tools"}
    assert any("missing 'tools'" in e for e in spec_errors(missing, "Response"))
    bad_part = json.loads(json.dumps(good))
    del bad_part["output"][0]["content"][0]["annotations"]
    assert spec_errors(bad_part, "Response")
    bad_event = {"type": "response.output_text.delta", "sequence_number": 0, "item_id": "m",
                 "output_index": 0, "content_index": 0, "delta": "x"}  # no logprobs
    assert spec_errors(bad_event, event_schema("response.output_text.delta"))


# --- fixtures ---------------------------------------------------------------------------------

WEATHER_FN = {"name": "get_weather", "description": "Weather for a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}

CHAT_CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]},
    {"role": "user", "content": [
        {"type": "text", "text": "Weather here?"},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "low"}}]},
    {"role": "assistant", "content": "Checking.", "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
        {"id": "call_2", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "4C"},
    {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
]

RESPONSES_REQUEST = {
    "model": "gpt-test", "instructions": "Be brief.", "input": "hi",
    "tools": [{"type": "function", **WEATHER_FN, "strict": False}],
    "temperature": 0.2, "max_output_tokens": 50, "metadata": {"k": "v"},
}

CHAT_COMPLETION = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 5, "model": "gpt-test",
    "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
        "role": "assistant", "content": "Let me look.", "refusal": None, "tool_calls": [
            {"id": "call_9", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]}}],
    "usage": {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27,
              "prompt_tokens_details": {"cached_tokens": 8},
              "completion_tokens_details": {"reasoning_tokens": 3}},
}


def _response(status="completed", incomplete=None, output=None):
    return {
        "id": "resp_abc", "object": "response", "created_at": 1700000000, "status": status,
        "error": None, "incomplete_details": incomplete, "model": "gpt-test",
        "output": output if output is not None else [
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
             "content": [{"type": "output_text", "text": "Hello ", "annotations": []},
                         {"type": "output_text", "text": "there", "annotations": []}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
             "arguments": '{"city":"Oslo"}', "status": "completed"}],
        "usage": {"input_tokens": 30, "input_tokens_details": {"cached_tokens": 10},
                  "output_tokens": 12, "output_tokens_details": {"reasoning_tokens": 4},
                  "total_tokens": 42},
    }


# --- chat request -> Responses request --------------------------------------------------------

def test_chat_request_instructions_params_and_string_input():
    body = {"model": "alias", "messages": [{"role": "system", "content": "Be brief."},
                                           {"role": "developer", "content": "Use metric."},
                                           {"role": "user", "content": "hi"}],
            "max_tokens": 64, "temperature": 0.3, "top_p": 0.9, "stream": True, "user": "u1",
            "parallel_tool_calls": False, "reasoning_effort": "low", "metadata": {"a": "b"},
            "stop": ["\n"],
            "response_format": {"type": "json_schema", "json_schema": {
                "name": "answer", "strict": True, "schema": {"type": "object"}}}}
    out = chat_request_to_responses(body, "my-deployment")
    assert out["model"] == "my-deployment"
    assert out["instructions"] == "Be brief.\n\nUse metric."
    assert out["input"] == [{"type": "message", "role": "user", "content": "hi"}]
    assert out["max_output_tokens"] == 64
    assert out["reasoning"] == {"effort": "low"}
    assert out["text"]["format"] == {"type": "json_schema", "name": "answer", "strict": True,
                                     "schema": {"type": "object"}}
    assert out["store"] is False
    assert (out["temperature"], out["top_p"], out["stream"], out["user"]) == (0.3, 0.9, True, "u1")
    assert out["parallel_tool_calls"] is False and out["metadata"] == {"a": "b"}
    assert "stop" not in out and "messages" not in out
    assert_spec(out, "CreateResponse")
    # max_completion_tokens wins over the deprecated max_tokens; an explicit store is kept.
    out = chat_request_to_responses({**body, "max_completion_tokens": 9, "store": True}, "m")
    assert out["max_output_tokens"] == 9 and out["store"] is True
    assert chat_request_to_responses({"messages": [], "response_format": {"type": "json_object"}},
                                     "m")["text"] == {"format": {"type": "json_object"}}
    # Only *leading* system messages become instructions; a later one keeps its place.
    mid = chat_request_to_responses({"messages": [{"role": "user", "content": "a"},
                                                  {"role": "system", "content": "b"}]}, "m")
    assert "instructions" not in mid
    assert mid["input"][1] == {"type": "message", "role": "system", "content": "b"}


def test_chat_request_conversation_with_tool_calls_becomes_items():
    body = {"messages": CHAT_CONVERSATION, "tools": [{"type": "function", "function": WEATHER_FN}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}
    out = chat_request_to_responses(body, "m")
    assert out["instructions"] == "Be brief.\n\nUse metric."
    assert out["input"] == [
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Weather here?"},
            {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "low"}]},
        {"type": "message", "role": "assistant", "content": "Checking."},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather",
         "arguments": '{"city":"Oslo"}'},
        {"type": "function_call", "call_id": "call_2", "name": "get_weather",
         "arguments": '{"city":"Rome"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "4C"},
        {"type": "function_call_output", "call_id": "call_2", "output": "21C"},
    ]
    assert out["tools"] == [{"type": "function", **WEATHER_FN, "strict": False}]
    assert out["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert_spec(out, "CreateResponse")


def test_chat_request_tool_choice_strings_and_allowed_tools():
    base = {"messages": [{"role": "user", "content": "x"}]}
    assert chat_request_to_responses({**base, "tool_choice": "required"}, "m")["tool_choice"] == "required"
    allowed = {"type": "allowed_tools", "allowed_tools": {
        "mode": "required", "tools": [{"type": "function", "function": {"name": "f"}}]}}
    out = chat_request_to_responses({**base, "tool_choice": allowed}, "m")
    assert out["tool_choice"] == {"type": "allowed_tools", "mode": "required",
                                  "tools": [{"type": "function", "name": "f"}]}
    assert_spec(out, "CreateResponse")


def test_chat_request_without_equivalent_is_refused():
    with pytest.raises(ValueError):
        chat_request_to_responses({"messages": [], "n": 2}, "m")
    audio = {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}
    with pytest.raises(ValueError):
        chat_request_to_responses({"messages": [{"role": "user", "content": [audio]}]}, "m")


# --- Responses response -> chat completion -----------------------------------------------------

def test_response_with_text_and_function_call_to_chat():
    chat = responses_response_to_chat(_response())
    choice = chat["choices"][0]
    assert choice["message"]["content"] == "Hello there"
    assert choice["message"]["tool_calls"] == [{"id": "call_1", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"city":"Oslo"}'}}]
    assert choice["finish_reason"] == "tool_calls"
    assert (chat["id"], chat["created"], chat["model"]) == ("resp_abc", 1700000000, "gpt-test")
    assert chat["usage"] == {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42,
                             "prompt_tokens_details": {"cached_tokens": 10},
                             "completion_tokens_details": {"reasoning_tokens": 4}}
    assert_spec(chat, "CreateChatCompletionResponse")
    assert responses_response_to_chat(_response(), created=7)["created"] == 7


def test_response_status_maps_to_finish_reason():
    text_only = [{"type": "message", "id": "m", "status": "incomplete", "role": "assistant",
                  "content": [{"type": "output_text", "text": "Hel", "annotations": []}]}]
    cut = responses_response_to_chat(_response("incomplete", {"reason": "max_output_tokens"}, text_only))
    assert cut["choices"][0]["finish_reason"] == "length"
    assert cut["choices"][0]["message"]["content"] == "Hel"
    # A cut-off outranks tool calls: the call's arguments may be truncated.
    filtered = responses_response_to_chat(_response("incomplete", {"reason": "content_filter"}))
    assert filtered["choices"][0]["finish_reason"] == "content_filter"
    done = responses_response_to_chat(_response(output=text_only))
    assert done["choices"][0]["finish_reason"] == "stop"
    assert "tool_calls" not in done["choices"][0]["message"]


# --- Responses stream -> chat chunks -----------------------------------------------------------

def _responses_events():
    resp = _response()
    started = {**resp, "status": "in_progress", "output": []}
    fc_item = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
               "arguments": "", "status": "in_progress"}
    return [
        ("response.created", {"response": started}),
        ("response.in_progress", {"response": started}),
        ("response.output_item.added", {"output_index": 0, "item": {"type": "reasoning", "id": "rs"}}),
        ("response.output_item.added", {"output_index": 1, "item": {
            "type": "message", "id": "msg_1", "role": "assistant", "content": [], "status": "in_progress"}}),
        ("response.content_part.added", {"output_index": 1, "item_id": "msg_1", "content_index": 0,
                                         "part": {"type": "output_text", "text": ""}}),
        ("response.output_text.delta", {"item_id": "msg_1", "output_index": 1, "delta": "Hello "}),
        ("response.output_text.delta", {"item_id": "msg_1", "output_index": 1, "delta": "there"}),
        ("response.output_text.done", {"item_id": "msg_1", "output_index": 1, "text": "Hello there"}),
        ("response.output_item.added", {"output_index": 2, "item": fc_item}),
        ("response.function_call_arguments.delta", {"item_id": "fc_1", "output_index": 2, "delta": '{"city"'}),
        ("response.function_call_arguments.delta", {"item_id": "fc_1", "output_index": 2, "delta": ':"Oslo"}'}),
        ("response.function_call_arguments.done", {"item_id": "fc_1", "output_index": 2,
                                                   "arguments": '{"city":"Oslo"}'}),
        ("response.output_item.done", {"output_index": 2, "item": {**fc_item, "arguments": '{"city":"Oslo"}'}}),
        ("response.completed", {"response": resp}),
    ]


def test_responses_stream_to_chat_chunks():
    stream = ResponsesStreamToChat("alias", 123)
    chunks = [c for event, data in _responses_events() for c in stream.feed(event, data)]
    for chunk in chunks:
        assert_spec(chunk, "CreateChatCompletionStreamResponse")
        assert (chunk["id"], chunk["model"], chunk["created"]) == ("resp_abc", "alias", 123)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert sum("role" in d for d in deltas) == 1
    assert "".join(d.get("content") or "" for d in deltas[1:]) == "Hello there"
    tool_deltas = [t for d in deltas for t in d.get("tool_calls", [])]
    assert tool_deltas[0] == {"index": 0, "id": "call_1", "type": "function",
                              "function": {"name": "get_weather", "arguments": ""}}
    assert all(t["index"] == 0 for t in tool_deltas)
    assert "".join(t["function"]["arguments"] for t in tool_deltas) == '{"city":"Oslo"}'
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "tool_calls"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    final = stream.usage_chunk()
    assert final["choices"] == [] and final["usage"]["prompt_tokens_details"] == {"cached_tokens": 10}
    assert stream.usage["total_tokens"] == 42
    assert_spec(final, "CreateChatCompletionStreamResponse")


def test_responses_stream_arguments_only_on_done_are_not_lost_or_doubled():
    stream = ResponsesStreamToChat("m", 1)
    item = {"type": "function_call", "id": "fc_1", "call_id": "c", "name": "f", "arguments": ""}
    chunks = stream.feed("response.output_item.added", {"output_index": 0, "item": item})
    chunks += stream.feed("response.function_call_arguments.done",
                          {"item_id": "fc_1", "output_index": 0, "arguments": '{"a":1}'})
    chunks += stream.feed("response.output_item.done",
                          {"output_index": 0, "item": {**item, "arguments": '{"a":1}'}})
    args = [t["function"]["arguments"] for c in chunks for t in c["choices"][0]["delta"].get("tool_calls", [])]
    assert "".join(args) == '{"a":1}'
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert stream.usage_chunk() is None


def test_responses_stream_failure_raises():
    stream = ResponsesStreamToChat("m", 1)
    failed = {"response": {**_response("failed"), "error": {"code": "server_error", "message": "boom"}}}
    with pytest.raises(ResponsesStreamError) as info:
        stream.feed("response.failed", failed)
    assert (info.value.code, info.value.message) == ("server_error", "boom")
    with pytest.raises(ResponsesStreamError) as info:
        stream.feed("error", {"code": "rate_limit_exceeded", "message": "slow down", "param": None})
    assert info.value.code == "rate_limit_exceeded"


# --- Responses request -> chat request ---------------------------------------------------------

def test_responses_request_string_input_to_chat():
    body = {**RESPONSES_REQUEST, "stream": True, "top_p": 0.5, "reasoning": {"effort": "high"},
            "tool_choice": {"type": "function", "name": "get_weather"}, "previous_response_id": None,
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"},
                                "strict": True}}}
    chat = responses_request_to_chat(body)
    assert chat["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "hi"}]
    assert chat["max_completion_tokens"] == 50
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True}
    assert chat["tools"] == [{"type": "function", "function": {**WEATHER_FN, "strict": False}}]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert chat["reasoning_effort"] == "high"
    assert chat["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "w", "schema": {"type": "object"}, "strict": True}}
    assert (chat["temperature"], chat["top_p"]) == (0.2, 0.5)
    assert_spec(chat, "CreateChatCompletionRequest")


def test_responses_request_items_to_chat():
    body = {"model": "m", "input": [
        {"type": "message", "role": "developer", "content": "Use metric."},
        {"role": "user", "content": [{"type": "input_text", "text": "What is this?"},
                                     {"type": "input_image", "image_url": "https://x.test/a.png",
                                      "detail": "original"}]},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "call_2", "name": "g", "arguments": '{"x":1}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "one"},
        {"type": "function_call_output", "call_id": "call_2",
         "output": [{"type": "input_text", "text": "two"}]},
        {"type": "function_call", "call_id": "call_3", "name": "f", "arguments": "{}"},
    ]}
    chat = responses_request_to_chat(body)
    assert chat["messages"] == [
        {"role": "system", "content": "Use metric."},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                     {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": '{"x":1}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "one"},
        {"role": "tool", "tool_call_id": "call_2", "content": "two"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_3", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
    ]
    assert "stream_options" not in chat
    assert_spec(chat, "CreateChatCompletionRequest")
    with pytest.raises(ValueError):
        responses_request_to_chat({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]})
    with pytest.raises(ValueError):
        responses_request_to_chat({"model": "m", "input": "x", "tools": [{"type": "web_search"}]})


def test_chat_conversation_survives_a_round_trip_through_responses():
    body = {"model": "m", "messages": CHAT_CONVERSATION,
            "tools": [{"type": "function", "function": {**WEATHER_FN, "strict": False}}]}
    back = responses_request_to_chat(chat_request_to_responses(body, "m"))
    expected = [{"role": "system", "content": "Be brief.\n\nUse metric."},
                {**CHAT_CONVERSATION[2], "content": [
                    {"type": "text", "text": "Weather here?"},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "low"}}]},
                CHAT_CONVERSATION[3], CHAT_CONVERSATION[4],
                {**CHAT_CONVERSATION[5], "content": "21C"}]
    assert back["messages"] == expected
    assert back["tools"] == body["tools"]


# --- chat completion -> Response object --------------------------------------------------------

def test_chat_completion_to_response_object():
    request = {**RESPONSES_REQUEST, "user": "u1"}
    resp = chat_response_to_responses(CHAT_COMPLETION, request, "resp_xyz", 1700000001)
    assert_spec(resp, "Response")
    assert (resp["id"], resp["object"], resp["created_at"], resp["status"]) == \
        ("resp_xyz", "response", 1700000001, "completed")
    message, call = resp["output"]
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["content"] == [{"type": "output_text", "text": "Let me look.",
                                   "annotations": [], "logprobs": []}]
    assert call == {"id": call["id"], "type": "function_call", "status": "completed",
                    "call_id": "call_9", "name": "get_weather", "arguments": '{"city":"Oslo"}'}
    assert message["id"] != call["id"]
    assert resp["usage"] == {"input_tokens": 20, "output_tokens": 7, "total_tokens": 27,
                             "input_tokens_details": {"cached_tokens": 8, "cache_write_tokens": 0},
                             "output_tokens_details": {"reasoning_tokens": 3}}
    for key in ("model", "instructions", "tools", "temperature", "max_output_tokens", "metadata", "user"):
        assert resp[key] == request[key], key
    assert (resp["top_p"], resp["tool_choice"], resp["parallel_tool_calls"]) == (1.0, "auto", True)
    assert resp["incomplete_details"] is None and resp["error"] is None
    # ...and back again to chat: the same answer.
    again = responses_response_to_chat(resp)["choices"][0]
    assert again["message"]["content"] == "Let me look." and again["finish_reason"] == "tool_calls"


def test_chat_completion_cut_off_is_an_incomplete_response():
    chat = {**CHAT_COMPLETION, "choices": [{"index": 0, "finish_reason": "length", "message": {
        "role": "assistant", "content": "Once upon"}}]}
    resp = chat_response_to_responses(chat, {"model": "m", "input": "story"}, "resp_1", 1)
    assert_spec(resp, "Response")
    assert resp["status"] == "incomplete"
    assert resp["incomplete_details"] == {"reason": "max_output_tokens"}
    assert resp["output"][0]["status"] == "incomplete"
    assert responses_response_to_chat(resp)["choices"][0]["finish_reason"] == "length"


# --- chat chunks -> Responses stream -----------------------------------------------------------

def _chunk(delta, finish=None, **extra):
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


CHAT_CHUNKS = [
    _chunk({"role": "assistant", "content": ""}),
    _chunk({"content": "Let me "}),
    _chunk({"content": "look."}),
    _chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                            "function": {"name": "get_weather", "arguments": ""}}]}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
    _chunk({"tool_calls": [{"index": 1, "id": "call_2", "type": "function",
                            "function": {"name": "get_time", "arguments": "{}"}}]}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),  # interleaved
    _chunk({}, "tool_calls"),
    {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
     "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}},
]


def _run_chat_stream(chunks, request=RESPONSES_REQUEST):
    stream = ChatStreamToResponses(request, "resp_s", 1700000002)
    events = stream.start()
    for chunk in chunks:
        events += stream.feed(chunk)
    return events + stream.finish()


def test_chat_stream_to_responses_events():
    events = _run_chat_stream(CHAT_CHUNKS)
    for name, data in events:
        assert name == data["type"]
        assert_spec(data, event_schema(name))
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert [name for name, _ in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed",
    ]
    by_name = {}
    for name, data in events:
        by_name.setdefault(name, []).append(data)
    assert by_name["response.created"][0]["response"]["status"] == "in_progress"
    assert "".join(d["delta"] for d in by_name["response.output_text.delta"]) == "Let me look."
    assert by_name["response.output_text.done"][0]["text"] == "Let me look."
    args = {}
    for d in by_name["response.function_call_arguments.delta"]:
        args[d["output_index"]] = args.get(d["output_index"], "") + d["delta"]
    assert args == {1: '{"city":"Oslo"}', 2: "{}"}
    done = {d["output_index"]: d for d in by_name["response.function_call_arguments.done"]}
    assert (done[1]["name"], done[1]["arguments"]) == ("get_weather", '{"city":"Oslo"}')
    added = by_name["response.output_item.added"]
    assert [a["item"]["status"] for a in added] == ["in_progress"] * 3
    assert added[0]["item"]["content"] == [] and added[1]["item"]["arguments"] == ""
    final = by_name["response.completed"][0]["response"]
    assert final["status"] == "completed"
    assert [item["type"] for item in final["output"]] == ["message", "function_call", "function_call"]
    assert final["output"][0]["content"][0]["text"] == "Let me look."
    assert [i["call_id"] for i in final["output"][1:]] == ["call_1", "call_2"]
    assert final["usage"]["input_tokens"] == 9 and final["usage"]["total_tokens"] == 13
    assert responses_response_to_chat(final)["choices"][0]["message"]["tool_calls"][0]["function"] \
        == {"name": "get_weather", "arguments": '{"city":"Oslo"}'}


def test_chat_stream_cut_off_ends_with_response_incomplete():
    events = _run_chat_stream([_chunk({"content": "Once"}), _chunk({}, "length")],
                              {"model": "m", "input": "story"})
    name, data = events[-1]
    assert name == "response.incomplete"
    assert_spec(data, event_schema(name))
    assert data["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert data["response"]["output"][0]["status"] == "incomplete"


def test_chat_stream_with_nothing_still_completes():
    events = _run_chat_stream([])
    assert [name for name, _ in events] == ["response.created", "response.in_progress",
                                            "response.completed"]
    assert events[-1][1]["response"]["output"] == []
    assert_spec(events[-1][1], "ResponseCompletedEvent")


def test_format_sse():
    raw = format_sse("response.output_text.delta", {"type": "response.output_text.delta", "delta": "é"})
    assert raw.startswith(b"event: response.output_text.delta\ndata: ") and raw.endswith(b"\n\n")
    assert raw.count(b"\n") == 3
    data = raw.decode("utf-8").split("data: ", 1)[1]
    assert json.loads(data) == {"type": "response.output_text.delta", "delta": "é"}
