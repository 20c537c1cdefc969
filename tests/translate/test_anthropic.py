"""Tests for the OpenAI <-> Anthropic wire-format translation."""

import json

import pytest

from dheera_ai.translate.anthropic import (
    AnthropicStreamError,
    AnthropicStreamToChat,
    ChatStreamToAnthropic,
    UnsupportedParamError,
    anthropic_request_to_chat,
    anthropic_response_to_chat,
    chat_request_to_anthropic,
    chat_response_to_anthropic,
    format_sse,
)

MODEL = "claude-sonnet-4-5"
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


def to_anthropic(**body):
    """Translate a minimal OpenAI body with the given overrides."""
    body.setdefault("messages", [{"role": "user", "content": "hi"}])
    return chat_request_to_anthropic(body, MODEL)


# ---------------------------------------------------------------- OpenAI request -> Anthropic

def test_multi_turn_with_system_and_developer_hoisted_and_same_roles_merged():
    out = chat_request_to_anthropic({"model": "gw-alias", "messages": [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hello"},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        {"role": "user", "content": [{"type": "text", "text": "How are you?"}]},
        {"role": "assistant", "content": "Bien."},
        {"role": "user", "content": "Merci"},
    ]}, MODEL)
    assert out == {
        "model": MODEL,
        "max_tokens": 4096,
        "system": "Be terse.\n\nAnswer in French.",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hello"},
                                         {"type": "text", "text": "How are you?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Bien."}]},
            {"role": "user", "content": [{"type": "text", "text": "Merci"}]},
        ],
    }


def test_system_with_cache_control_stays_as_blocks():
    out = to_anthropic(messages=[
        {"role": "system", "content": [
            {"type": "text", "text": "Long policy", "cache_control": {"type": "ephemeral"}}]},
        {"role": "system", "content": "Short note"},
        {"role": "user", "content": "hi"},
    ])
    assert out["system"] == [
        {"type": "text", "text": "Long policy", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Short note"},
    ]


def test_no_system_key_without_system_messages():
    assert "system" not in to_anthropic()


def test_images_data_url_and_http_url():
    out = to_anthropic(messages=[{"role": "user", "content": [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg",
                                            "detail": "high"}},
    ]}])
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "Compare"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": PNG_B64}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "data:image/png,rawbytes"])
def test_unusable_image_urls_raise(url):
    with pytest.raises(ValueError):
        to_anthropic(messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}}]}])


def test_unknown_content_part_raises():
    with pytest.raises(ValueError, match="input_audio"):
        to_anthropic(messages=[{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]}])


def test_tool_conversation_becomes_tool_use_and_merged_tool_results():
    out = to_anthropic(tools=[WEATHER_TOOL], messages=[
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_2", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2",
         "content": [{"type": "text", "text": "24C"}]},
        {"role": "user", "content": "Which is warmer?"},
    ])
    assert out["tools"] == [{
        "name": "get_weather", "description": "Current weather for a city",
        "input_schema": WEATHER_TOOL["function"]["parameters"]}]
    assert out["messages"][1:] == [
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "call_1", "name": "get_weather",
             "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "get_weather",
             "input": {"city": "Rome"}},
        ]},
        # Anthropic wants tool_result blocks first in the user turn, text after them.
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "call_2",
             "content": [{"type": "text", "text": "24C"}]},
            {"type": "text", "text": "Which is warmer?"},
        ]},
    ]
    assert "tool_choice" not in out


def test_tool_without_parameters_gets_empty_object_schema():
    out = to_anthropic(tools=[{"type": "function", "function": {"name": "ping"}}])
    assert out["tools"] == [{"name": "ping",
                             "input_schema": {"type": "object", "properties": {}}}]


def test_invalid_tool_arguments_raise_value_error_naming_the_tool():
    with pytest.raises(ValueError, match="get_weather.*invalid JSON"):
        to_anthropic(messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {
                "name": "get_weather", "arguments": '{"city": '}}]},
        ])


def test_empty_tool_arguments_mean_no_input():
    out = to_anthropic(messages=[
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "ping", "arguments": ""}}]},
    ])
    assert out["messages"][1]["content"] == [
        {"type": "tool_use", "id": "c", "name": "ping", "input": {}}]


@pytest.mark.parametrize("choice, parallel, expected", [
    ("auto", None, {"type": "auto"}),
    ("none", None, {"type": "none"}),
    ("required", None, {"type": "any"}),
    ({"type": "function", "function": {"name": "get_weather"}}, None,
     {"type": "tool", "name": "get_weather"}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ("none", False, {"type": "none"}),
])
def test_tool_choice_mapping(choice, parallel, expected):
    out = to_anthropic(tools=[WEATHER_TOOL], tool_choice=choice, parallel_tool_calls=parallel)
    assert out["tool_choice"] == expected


@pytest.mark.parametrize("stop, expected", [
    ("END", ["END"]), (["\n\n", "Human:"], ["\n\n", "Human:"])])
def test_stop_becomes_list_of_stop_sequences(stop, expected):
    assert to_anthropic(stop=stop)["stop_sequences"] == expected


def test_max_tokens_default_and_precedence():
    assert to_anthropic()["max_tokens"] == 4096
    assert chat_request_to_anthropic({"messages": []}, MODEL, default_max_tokens=77)[
        "max_tokens"] == 77
    assert to_anthropic(max_tokens=100)["max_tokens"] == 100
    assert to_anthropic(max_tokens=100, max_completion_tokens=50)["max_tokens"] == 50


def test_sampling_user_and_stream_are_forwarded():
    out = to_anthropic(temperature=0.2, top_p=0.9, top_k=40, user="u-42", stream=True,
                       stream_options={"include_usage": True})
    assert (out["temperature"], out["top_p"], out["top_k"]) == (0.2, 0.9, 40)
    assert out["metadata"] == {"user_id": "u-42"}
    assert out["stream"] is True
    assert "stream_options" not in out


@pytest.mark.parametrize("param, value", [
    ("n", 2), ("logprobs", True), ("presence_penalty", 0.5), ("frequency_penalty", 1.0),
    ("seed", 7), ("response_format", {"type": "json_object"}), ("logit_bias", {"1": 5}),
])
def test_unsupported_params_raise_with_param_name(param, value):
    with pytest.raises(UnsupportedParamError) as info:
        to_anthropic(**{param: value})
    assert info.value.param == param
    assert isinstance(info.value, ValueError)


def test_unsupported_params_dropped_on_request():
    body = {"messages": [{"role": "user", "content": "hi"}], "seed": 7, "n": 3,
            "response_format": {"type": "json_object"}, "temperature": 0.5}
    out = chat_request_to_anthropic(body, MODEL, drop_unsupported=True)
    assert not {"seed", "n", "response_format"} & out.keys()
    assert out["temperature"] == 0.5


def test_neutral_defaults_and_nulls_are_accepted():
    out = to_anthropic(n=1, logprobs=False, presence_penalty=0, frequency_penalty=0, seed=None)
    assert not {"n", "logprobs", "presence_penalty", "frequency_penalty", "seed"} & out.keys()


# ---------------------------------------------------------------- Anthropic response -> OpenAI

ANTHROPIC_MESSAGE = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "text", "text": "Let me check "},
        {"type": "text", "text": "the weather."},
        {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
         "input": {"city": "Paris", "unit": "celsius"}},
    ],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 40, "cache_creation_input_tokens": 100,
              "cache_read_input_tokens": 2000},
}


def test_response_with_text_and_tool_use():
    out = anthropic_response_to_chat(ANTHROPIC_MESSAGE, "gw-alias", 1700000000)
    assert out["id"] == "msg_01XFDUDYJgAACzvnptvVoYEL"
    assert (out["object"], out["created"], out["model"]) == (
        "chat.completion", 1700000000, "gw-alias")
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "Let me check the weather."
    [call] = choice["message"]["tool_calls"]
    assert call["id"] == "toolu_01A09q90qw90lq917835lq9"
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris", "unit": "celsius"}


def test_response_usage_counts_cache_tokens_as_prompt():
    usage = anthropic_response_to_chat(ANTHROPIC_MESSAGE, MODEL, 0)["usage"]
    assert usage == {
        "prompt_tokens": 2112, "completion_tokens": 40, "total_tokens": 2152,
        "prompt_tokens_details": {"cached_tokens": 2000},
        "cache_creation_input_tokens": 100, "cache_read_input_tokens": 2000,
    }


def test_response_without_text_has_null_content_and_no_tool_calls_key():
    resp = {**ANTHROPIC_MESSAGE, "content": [], "stop_reason": "end_turn",
            "usage": {"input_tokens": 3, "output_tokens": 0}}
    message = anthropic_response_to_chat(resp, MODEL, 0)["choices"][0]["message"]
    assert message["content"] is None
    assert "tool_calls" not in message


@pytest.mark.parametrize("stop_reason, finish_reason", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
    ("tool_use", "tool_calls"), ("refusal", "content_filter"), ("pause_turn", "stop"),
    ("some_future_reason", "stop")])
def test_stop_reason_to_finish_reason(stop_reason, finish_reason):
    resp = {**ANTHROPIC_MESSAGE, "stop_reason": stop_reason}
    assert anthropic_response_to_chat(resp, MODEL, 0)["choices"][0][
        "finish_reason"] == finish_reason


# ---------------------------------------------------------------- Anthropic stream -> OpenAI

# Shaped like a recorded Messages stream: text block, then a tool_use block.
ANTHROPIC_EVENTS = [
    ("message_start", {"type": "message_start", "message": {
        "id": "msg_014p7gG3wDgGV9EUtLvnow3U", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5-20250929", "content": [], "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 472, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 1024, "output_tokens": 2}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0,
                             "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": "Okay, let"}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": "'s check the weather."}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather",
        "input": {}}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta", "partial_json": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta", "partial_json": '{"city"'}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta",
                                       "partial_json": ': "San Fra'}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta", "partial_json": 'ncisco"}'}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ("message_delta", {"type": "message_delta",
                       "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                       "usage": {"output_tokens": 89}}),
    ("message_stop", {"type": "message_stop"}),
]


def run_anthropic_stream(events):
    """Feed every event and return (translator, chunks)."""
    translator = AnthropicStreamToChat("gw-alias", 1700000000)
    chunks = [c for event, data in events for c in translator.feed(event, data)]
    return translator, chunks


def test_stream_text_then_tool_use_translates_to_chunks():
    translator, chunks = run_anthropic_stream(ANTHROPIC_EVENTS)
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "msg_014p7gG3wDgGV9EUtLvnow3U"
               and c["created"] == 1700000000 and c["model"] == "gw-alias" for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content") or "" for d in deltas) == "Okay, let's check the weather."

    tool_deltas = [tc for d in deltas for tc in d.get("tool_calls", [])]
    assert tool_deltas[0] == {"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                              "type": "function",
                              "function": {"name": "get_weather", "arguments": ""}}
    assert all(set(tc) == {"index", "function"} and tc["index"] == 0 for tc in tool_deltas[1:])
    arguments = "".join(tc["function"]["arguments"] for tc in tool_deltas)
    assert json.loads(arguments) == {"city": "San Francisco"}

    finishes = [c["choices"][0]["finish_reason"] for c in chunks]
    assert finishes[-1] == "tool_calls" and finishes.count(None) == len(chunks) - 1
    assert translator.usage == {
        "prompt_tokens": 1496, "completion_tokens": 89, "total_tokens": 1585,
        "prompt_tokens_details": {"cached_tokens": 1024},
        "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1024}


def test_stream_second_tool_gets_next_tool_call_index():
    events = ANTHROPIC_EVENTS[:12] + [
        ("content_block_start", {"type": "content_block_start", "index": 2, "content_block": {
            "type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 2,
                                 "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
    ]
    _, chunks = run_anthropic_stream(events)
    last_two = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks[-2:]]
    assert last_two[0]["index"] == 1 and last_two[0]["id"] == "toolu_2"
    assert last_two[1] == {"index": 1, "function": {"arguments": "{}"}}


def test_stream_usage_unknown_before_message_start_and_usage_chunk():
    translator = AnthropicStreamToChat(MODEL, 1)
    assert translator.usage is None
    for event, data in ANTHROPIC_EVENTS:
        translator.feed(event, data)
    final = translator.usage_chunk()
    assert final["choices"] == []
    assert final["object"] == "chat.completion.chunk"
    assert final["usage"]["completion_tokens"] == 89
    assert final["id"] == "msg_014p7gG3wDgGV9EUtLvnow3U"


def test_stream_message_delta_with_cumulative_input_usage_replaces_start_values():
    events = ANTHROPIC_EVENTS[:1] + [("message_delta", {
        "type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
        "usage": {"input_tokens": 500, "cache_read_input_tokens": 1024, "output_tokens": 9}})]
    translator, chunks = run_anthropic_stream(events)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert translator.usage["prompt_tokens"] == 1524
    assert translator.usage["completion_tokens"] == 9


def test_stream_error_event_raises():
    translator = AnthropicStreamToChat(MODEL, 1)
    translator.feed(*ANTHROPIC_EVENTS[0])
    with pytest.raises(AnthropicStreamError) as info:
        translator.feed("error", {"type": "error", "error": {
            "type": "overloaded_error", "message": "Overloaded"}})
    assert (info.value.type, info.value.message) == ("overloaded_error", "Overloaded")


def test_stream_server_tool_input_is_not_reported_as_tool_call():
    translator = AnthropicStreamToChat(MODEL, 1)
    translator.feed(*ANTHROPIC_EVENTS[0])
    assert translator.feed("content_block_start", {
        "type": "content_block_start", "index": 0, "content_block": {
            "type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
            "input": {}}}) == []
    assert translator.feed("content_block_delta", {
        "type": "content_block_delta", "index": 0,
        "delta": {"type": "input_json_delta", "partial_json": '{"query": "x"}'}}) == []


def test_stream_ignores_unknown_and_thinking_events():
    translator = AnthropicStreamToChat(MODEL, 1)
    translator.feed(*ANTHROPIC_EVENTS[0])
    assert translator.feed("some_future_event", {"type": "some_future_event"}) == []
    assert translator.feed("content_block_delta", {
        "type": "content_block_delta", "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "hmm"}}) == []


# ---------------------------------------------------------------- Anthropic request -> OpenAI

def test_anthropic_request_to_chat_full_conversation():
    body = {
        "model": "claude-via-openai", "max_tokens": 1024,
        "system": [{"type": "text", "text": "Be terse."},
                   {"type": "text", "text": "Use metric.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": PNG_B64}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "...", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                 "input": {"city": "Paris"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {"type": "text", "text": "And now?"},
            ]},
        ],
        "tools": [{"name": "get_weather", "description": "Weather",
                   "input_schema": {"type": "object", "properties": {}}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stop_sequences": ["END"], "temperature": 0.3, "top_p": 0.8,
        "metadata": {"user_id": "u-7"}, "stream": True,
    }
    out = anthropic_request_to_chat(body)
    assert out["messages"] == [
        {"role": "system", "content": "Be terse.\n\nUse metric."},
        {"role": "user", "content": [
            {"type": "text", "text": "What is in these?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
        ]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "toolu_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
        {"role": "user", "content": "And now?"},
    ]
    assert out["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {}}}}]
    assert out["tool_choice"] == "required"
    assert out["parallel_tool_calls"] is False
    assert out["stop"] == ["END"]
    assert (out["model"], out["max_tokens"], out["temperature"], out["top_p"]) == (
        "claude-via-openai", 1024, 0.3, 0.8)
    assert out["user"] == "u-7"
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("choice, expected", [
    ({"type": "auto"}, "auto"), ({"type": "none"}, "none"), ({"type": "any"}, "required"),
    ({"type": "tool", "name": "get_weather"},
     {"type": "function", "function": {"name": "get_weather"}})])
def test_anthropic_tool_choice_to_chat(choice, expected):
    out = anthropic_request_to_chat({"model": "m", "max_tokens": 5, "messages": [],
                                     "tool_choice": choice})
    assert out["tool_choice"] == expected
    assert "parallel_tool_calls" not in out


def test_anthropic_unknown_tool_choice_raises():
    with pytest.raises(ValueError, match="bogus"):
        anthropic_request_to_chat({"model": "m", "max_tokens": 5, "messages": [],
                                   "tool_choice": {"type": "bogus"}})


def test_tool_result_images_move_to_following_user_message():
    out = anthropic_request_to_chat({"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
            {"type": "text", "text": "screenshot taken"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                         "data": "AAAA"}}]}]}]})
    assert out["messages"] == [
        {"role": "tool", "tool_call_id": "t1", "content": "screenshot taken"},
        {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}}]},
    ]


def test_anthropic_request_unsupported_params_raise_or_drop():
    body = {"model": "m", "max_tokens": 5, "messages": [], "top_k": 5,
            "thinking": {"type": "enabled", "budget_tokens": 1024}}
    with pytest.raises(UnsupportedParamError) as info:
        anthropic_request_to_chat(body)
    assert info.value.param == "top_k"
    assert not {"top_k", "thinking"} & anthropic_request_to_chat(body, drop_unsupported=True).keys()


def test_server_tools_are_refused():
    with pytest.raises(ValueError, match="web_search"):
        anthropic_request_to_chat({"model": "m", "max_tokens": 5, "messages": [], "tools": [
            {"type": "web_search_20250305", "name": "web_search"}]})


def test_round_trip_openai_request_through_anthropic_keeps_conversation():
    messages = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    ]
    anthropic = chat_request_to_anthropic(
        {"messages": messages, "tools": [WEATHER_TOOL], "tool_choice": "required",
         "stop": "END", "max_tokens": 64}, MODEL)
    back = anthropic_request_to_chat(anthropic)
    assert back["messages"] == messages
    assert back["tools"] == [WEATHER_TOOL]
    assert (back["tool_choice"], back["stop"], back["max_tokens"]) == ("required", ["END"], 64)


# ---------------------------------------------------------------- OpenAI response -> Anthropic

OPENAI_COMPLETION = {
    "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion",
    "created": 1741570283, "model": "gpt-4o-2024-08-06",
    "choices": [{"index": 0, "logprobs": None, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "Looking it up.", "refusal": None,
        "tool_calls": [{"id": "call_abc", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city":"Paris"}'}}]}}],
    "usage": {"prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
              "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0}},
}


def test_chat_response_to_anthropic_message():
    out = chat_response_to_anthropic(OPENAI_COMPLETION, "claude-alias")
    assert out == {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "type": "message",
        "role": "assistant", "model": "claude-alias",
        "content": [
            {"type": "text", "text": "Looking it up."},
            {"type": "tool_use", "id": "call_abc", "name": "get_weather",
             "input": {"city": "Paris"}},
        ],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 93, "output_tokens": 46,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1024},
    }


@pytest.mark.parametrize("finish_reason, stop_reason", [
    ("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"),
    ("content_filter", "refusal")])
def test_finish_reason_to_stop_reason(finish_reason, stop_reason):
    resp = {**OPENAI_COMPLETION, "choices": [
        {**OPENAI_COMPLETION["choices"][0], "finish_reason": finish_reason}]}
    assert chat_response_to_anthropic(resp, MODEL)["stop_reason"] == stop_reason


def test_chat_response_with_bad_tool_arguments_raises():
    choice = OPENAI_COMPLETION["choices"][0]
    bad_call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
    resp = {**OPENAI_COMPLETION, "choices": [
        {**choice, "message": {**choice["message"], "tool_calls": [bad_call]}}]}
    with pytest.raises(ValueError, match="'f'"):
        chat_response_to_anthropic(resp, MODEL)


# ---------------------------------------------------------------- OpenAI stream -> Anthropic

def openai_chunk(delta=None, finish_reason=None, usage=None, choices=True):
    """Build a chat.completion.chunk shaped like the ones OpenAI streams."""
    chunk = {"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1,
             "model": "gpt-4o", "choices": [], "usage": usage}
    if choices:
        chunk["choices"] = [{"index": 0, "delta": delta or {}, "logprobs": None,
                             "finish_reason": finish_reason}]
    return chunk


OPENAI_CHUNKS = [
    openai_chunk({"role": "assistant", "content": "", "refusal": None}),
    openai_chunk({"content": "Let me "}),
    openai_chunk({"content": "check."}),
    openai_chunk({"tool_calls": [{"index": 0, "id": "call_A", "type": "function",
                                  "function": {"name": "get_weather", "arguments": ""}}]}),
    openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
    openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Paris"}'}}]}),
    openai_chunk({"tool_calls": [{"index": 1, "id": "call_B", "type": "function",
                                  "function": {"name": "get_time", "arguments": "{}"}}]}),
    openai_chunk({}, finish_reason="tool_calls"),
    openai_chunk(usage={"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70,
                        "prompt_tokens_details": {"cached_tokens": 10}}, choices=False),
]


def run_chat_stream(chunks):
    """Feed every chunk, then finish; return the Anthropic events."""
    translator = ChatStreamToAnthropic("claude-alias", "msg_gw_1")
    events = [e for chunk in chunks for e in translator.feed(chunk)]
    return events + translator.finish()


def test_chat_stream_to_anthropic_event_order_and_content():
    events = run_chat_stream(OPENAI_CHUNKS)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert (start["id"], start["model"], start["role"], start["content"]) == (
        "msg_gw_1", "claude-alias", "assistant", [])

    starts = [d for n, d in events if n == "content_block_start"]
    assert [s["index"] for s in starts] == [0, 1, 2]
    assert starts[0]["content_block"] == {"type": "text", "text": ""}
    assert starts[1]["content_block"] == {"type": "tool_use", "id": "call_A",
                                          "name": "get_weather", "input": {}}
    assert starts[2]["content_block"]["id"] == "call_B"

    deltas = [d for n, d in events if n == "content_block_delta"]
    text = "".join(d["delta"]["text"] for d in deltas if d["delta"]["type"] == "text_delta")
    assert text == "Let me check."
    args = "".join(d["delta"]["partial_json"] for d in deltas if d["index"] == 1)
    assert json.loads(args) == {"city": "Paris"}
    assert [d["delta"]["partial_json"] for d in deltas if d["index"] == 2] == ["{}"]

    message_delta = events[-2][1]
    assert message_delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert message_delta["usage"] == {"input_tokens": 40, "output_tokens": 20,
                                      "cache_creation_input_tokens": 0,
                                      "cache_read_input_tokens": 10}


def test_chat_stream_finish_without_finish_reason_or_chunks():
    translator = ChatStreamToAnthropic("m", "msg_1")
    events = translator.finish()
    assert [n for n, _ in events] == ["message_start", "message_delta", "message_stop"]
    assert events[1][1]["delta"]["stop_reason"] == "end_turn"
    assert translator.finish() == []

    truncated = run_chat_stream(OPENAI_CHUNKS[:3])
    assert [n for n, _ in truncated][-3:] == [
        "content_block_stop", "message_delta", "message_stop"]
    assert truncated[-2][1]["usage"]["output_tokens"] == 0


def test_chat_stream_length_stop():
    events = run_chat_stream([openai_chunk({"content": "abc"}),
                              openai_chunk({}, finish_reason="length")])
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens"


def test_format_sse():
    raw = format_sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                             "delta": {"type": "text_delta", "text": "hé"}})
    assert raw.startswith(b"event: content_block_delta\ndata: {")
    assert raw.endswith(b"\n\n")
    payload = raw.decode().split("data: ", 1)[1]
    assert json.loads(payload)["delta"]["text"] == "hé"
    assert raw.count(b"\n") == 3
