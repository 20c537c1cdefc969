"""Tests for the OpenAI <-> Gemini (Generative Language API v1beta) translation."""

import json

import pytest

from dheera_ai.translate.gemini import (
    GeminiContentBlockedError,
    GeminiStreamToChat,
    UnsupportedParamError,
    chat_request_to_gemini,
    embedding_request_to_gemini,
    gemini_embeddings_to_openai,
    gemini_error_to_status,
    gemini_response_to_chat,
)

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"], "additionalProperties": False}}}


def _convert(**body):
    return chat_request_to_gemini({"model": "gemini-2.5-flash", **body})


# --- requests -------------------------------------------------------------------------------

def test_multi_turn_with_system_and_developer_messages():
    out = _convert(messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        {"role": "user", "content": "How are you?"},
        {"role": "user", "content": [{"type": "text", "text": "Be honest."}]},
    ])
    assert out["systemInstruction"] == {"parts": [{"text": "Be brief."},
                                                  {"text": "Answer in French."}]}
    assert out["contents"] == [
        {"role": "user", "parts": [{"text": "Hi"}]},
        {"role": "model", "parts": [{"text": "Hello!"}]},
        # consecutive user turns are merged: Gemini wants alternating roles
        {"role": "user", "parts": [{"text": "How are you?"}, {"text": "Be honest."}]},
    ]
    assert "generationConfig" not in out and "tools" not in out


def test_images_from_data_url_and_https():
    out = _convert(messages=[{"role": "user", "content": [
        {"type": "text", "text": "Compare these"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.JPG?size=large",
                                            "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/render"}},
    ]}])
    assert out["contents"][0]["parts"] == [
        {"text": "Compare these"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.JPG?size=large"}},
        {"fileData": {"fileUri": "https://example.com/render"}},
    ]


def test_non_base64_data_url_and_image_in_system_are_refused():
    with pytest.raises(UnsupportedParamError) as err:
        _convert(messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:text/plain,hello"}}]}])
    assert err.value.param == "messages"
    with pytest.raises(UnsupportedParamError):
        _convert(messages=[{"role": "system", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}])


def test_tool_round_trip_recovers_names_and_merges_parallel_results():
    out = _convert(tools=[WEATHER_TOOL], messages=[
        {"role": "user", "content": "Weather in Paris and Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_a", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_b", "type": "function",
             "function": {"name": "get_time", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": '{"temp_c": 21}'},
        {"role": "tool", "tool_call_id": "call_b", "content": "12:00"},
    ])
    user, model, results = out["contents"]
    assert user["role"] == "user"
    assert model == {"role": "model", "parts": [
        # history without a signature gets Google's documented placeholder on the first call
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
         "thoughtSignature": "skip_thought_signature_validator"},
        {"functionCall": {"name": "get_time", "args": {}}},
    ]}
    assert results == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}}},
        {"functionResponse": {"name": "get_time", "response": {"output": "12:00"}}},
    ]}
    assert out["tools"] == [{"functionDeclarations": [{
        "name": "get_weather", "description": "Weather for a city",
        "parametersJsonSchema": WEATHER_TOOL["function"]["parameters"]}]}]


def test_thought_signature_survives_the_round_trip():
    resp = {"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
         "thoughtSignature": "c2lnbmF0dXJl"}]}, "finishReason": "STOP"}]}
    message = gemini_response_to_chat(resp, "gemini-3-pro", 1, "r1")["choices"][0]["message"]
    call = message["tool_calls"][0]
    assert call["extra_content"] == {"google": {"thought_signature": "c2lnbmF0dXJl"}}
    out = _convert(messages=[{"role": "user", "content": "Oslo?"}, message,
                             {"role": "tool", "tool_call_id": call["id"], "content": "cold"}])
    assert out["contents"][1]["parts"][0]["thoughtSignature"] == "c2lnbmF0dXJl"
    assert out["contents"][2]["parts"][0]["functionResponse"]["name"] == "get_weather"


def test_tool_message_for_unknown_call_is_refused():
    with pytest.raises(UnsupportedParamError, match="tool_call_id"):
        _convert(messages=[{"role": "tool", "tool_call_id": "nope", "content": "x"}])


def test_invalid_tool_arguments_are_refused():
    with pytest.raises(UnsupportedParamError, match="arguments"):
        _convert(messages=[{"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1, 2]"}}]}])


@pytest.mark.parametrize("choice, expected", [
    ("auto", {"mode": "AUTO"}),
    ("none", {"mode": "NONE"}),
    ("required", {"mode": "ANY"}),
    ({"type": "function", "function": {"name": "get_weather"}},
     {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
])
def test_tool_choice(choice, expected):
    out = _convert(messages=[{"role": "user", "content": "x"}], tools=[WEATHER_TOOL],
                   tool_choice=choice)
    assert out["toolConfig"] == {"functionCallingConfig": expected}


def test_unknown_tool_choice_and_tool_type_are_refused():
    with pytest.raises(UnsupportedParamError) as err:
        _convert(messages=[], tool_choice="sometimes")
    assert err.value.param == "tool_choice"
    with pytest.raises(UnsupportedParamError) as err:
        _convert(messages=[], tools=[{"type": "web_search"}])
    assert err.value.param == "tools"


def test_generation_config_mapping():
    out = _convert(messages=[{"role": "user", "content": "x"}], temperature=0.2, top_p=0.9,
                   n=2, seed=7, presence_penalty=0.5, frequency_penalty=-0.5, max_tokens=50,
                   max_completion_tokens=100, stop="END", response_format={"type": "json_object"})
    assert out["generationConfig"] == {
        "temperature": 0.2, "topP": 0.9, "candidateCount": 2, "seed": 7,
        "presencePenalty": 0.5, "frequencyPenalty": -0.5,
        "maxOutputTokens": 100,  # max_completion_tokens wins over the legacy max_tokens
        "stopSequences": ["END"], "responseMimeType": "application/json"}


def test_max_tokens_and_stop_list_and_json_schema():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}},
              "additionalProperties": False}
    out = _convert(messages=[{"role": "user", "content": "x"}], max_tokens=64,
                   stop=["a", "b"], response_format={"type": "json_schema", "json_schema": {
                       "name": "thing", "strict": True, "schema": schema}})
    assert out["generationConfig"] == {"maxOutputTokens": 64, "stopSequences": ["a", "b"],
                                       "responseMimeType": "application/json",
                                       "responseJsonSchema": schema}


def test_unsupported_params_raise_unless_dropped():
    body = {"messages": [{"role": "user", "content": "x"}], "logit_bias": {"1": 5}}
    with pytest.raises(UnsupportedParamError) as err:
        chat_request_to_gemini(body)
    assert err.value.param == "logit_bias" and isinstance(err.value, ValueError)
    assert chat_request_to_gemini(body, drop_unsupported=True)["contents"][0]["role"] == "user"
    with pytest.raises(UnsupportedParamError) as err:
        _convert(messages=[], parallel_tool_calls=False)
    assert err.value.param == "parallel_tool_calls"


def test_explicit_defaults_and_bookkeeping_params_are_accepted():
    out = _convert(messages=[{"role": "user", "content": "x"}], stream=True, user="u1",
                   stream_options={"include_usage": True}, logprobs=False,
                   parallel_tool_calls=True, logit_bias=None)
    assert out == {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}


# --- responses ------------------------------------------------------------------------------

def test_response_with_text_and_function_call():
    resp = {"candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [
        {"text": "Let me "}, {"text": "check."}, {"text": "hidden musing", "thought": True},
        {"functionCall": {"name": "get_weather", "args": {"city": "Zürich"}}}]}}],
        "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 20,
                          "thoughtsTokenCount": 30, "cachedContentTokenCount": 40,
                          "totalTokenCount": 150}}
    out = gemini_response_to_chat(resp, "gemini-2.5-pro", 1700000000, "chatcmpl-1")
    assert (out["id"], out["object"], out["created"], out["model"]) == (
        "chatcmpl-1", "chat.completion", 1700000000, "gemini-2.5-pro")
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    call = choice["message"]["tool_calls"][0]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Zürich"}
    assert out["usage"] == {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150,
                            "prompt_tokens_details": {"cached_tokens": 40},
                            "completion_tokens_details": {"reasoning_tokens": 30}}


def test_tool_call_ids_are_unique():
    part = {"functionCall": {"name": "f", "args": {}}}
    resp = {"candidates": [{"content": {"parts": [part, part]}, "finishReason": "STOP"}]}
    calls = gemini_response_to_chat(resp, "m", 0, "r")["choices"][0]["message"]["tool_calls"]
    assert calls[0]["id"] != calls[1]["id"]


@pytest.mark.parametrize("reason, expected", [
    ("SAFETY", "content_filter"), ("RECITATION", "content_filter"),
    ("PROHIBITED_CONTENT", "content_filter"), ("MAX_TOKENS", "length"), ("STOP", "stop"),
    ("MALFORMED_FUNCTION_CALL", "stop"),
])
def test_finish_reasons(reason, expected):
    resp = {"candidates": [{"finishReason": reason, "safetyRatings": []}]}
    choice = gemini_response_to_chat(resp, "m", 0, "r")["choices"][0]
    assert choice["finish_reason"] == expected
    assert choice["message"] == {"role": "assistant", "content": ""}


def test_multiple_candidates_become_choices():
    resp = {"candidates": [{"index": i, "content": {"parts": [{"text": t}]}, "finishReason": "STOP"}
                           for i, t in enumerate(["a", "b"])]}
    out = gemini_response_to_chat(resp, "m", 0, "r")
    assert [(c["index"], c["message"]["content"]) for c in out["choices"]] == [(0, "a"), (1, "b")]


def test_blocked_prompt_raises():
    resp = {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
            "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}}
    with pytest.raises(GeminiContentBlockedError) as err:
        gemini_response_to_chat(resp, "m", 0, "r")
    assert err.value.reason == "SAFETY"
    with pytest.raises(GeminiContentBlockedError):
        GeminiStreamToChat("m", 0, "r").feed(resp)


# --- streaming ------------------------------------------------------------------------------

def _event(parts=None, finish=None, usage=None):
    cand = {"content": {"role": "model", "parts": parts or []}}
    if finish:
        cand["finishReason"] = finish
    event = {"candidates": [cand], "modelVersion": "gemini-2.5-flash"}
    if usage:
        event["usageMetadata"] = usage
    return event


def test_stream_text_chunks_concatenate():
    stream = GeminiStreamToChat("gemini-2.5-flash", 1700000000, "chatcmpl-9")
    events = [_event([{"text": "The sky"}], usage={"promptTokenCount": 4, "totalTokenCount": 4}),
              _event([{"text": " is blue"}]),
              _event([{"text": "."}], "STOP", {"promptTokenCount": 4, "candidatesTokenCount": 5,
                                               "totalTokenCount": 9})]
    chunks = [c for e in events for c in stream.feed(e)]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "chatcmpl-9" for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0]["role"] == "assistant"
    assert sum("role" in d for d in deltas) == 1
    assert "".join(d.get("content", "") for d in deltas) == "The sky is blue."
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "stop"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert stream.usage == {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9,
                            "prompt_tokens_details": {"cached_tokens": 0},
                            "completion_tokens_details": {"reasoning_tokens": 0}}
    final = stream.usage_chunk()
    assert final["choices"] == [] and final["usage"]["total_tokens"] == 9


def test_stream_function_calls_are_complete_deltas():
    stream = GeminiStreamToChat("m", 0, "r")
    first = stream.feed(_event([{"functionCall": {"name": "a", "args": {"x": 1}},
                                 "thoughtSignature": "sig"}]))
    second = stream.feed(_event([{"functionCall": {"name": "b", "args": {}}}], "STOP"))
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in first + second
             if "tool_calls" in c["choices"][0]["delta"]]
    assert [(c["index"], c["function"]["name"]) for c in calls] == [(0, "a"), (1, "b")]
    assert json.loads(calls[0]["function"]["arguments"]) == {"x": 1}
    assert calls[0]["extra_content"]["google"]["thought_signature"] == "sig"
    assert second[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None,
                                        "finish_reason": "tool_calls"}


def test_stream_usage_is_none_before_any_metadata():
    stream = GeminiStreamToChat("m", 0, "r")
    assert stream.feed({"candidates": [{"content": {"parts": [{"text": "hi"}]}}]})
    assert stream.usage is None


# --- embeddings -----------------------------------------------------------------------------

def test_embedding_request():
    out = embedding_request_to_gemini(["a", "b"], "gemini-embedding-001", 768, "retrieval_query")
    assert out == {"requests": [
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": t}]},
         "outputDimensionality": 768, "taskType": "RETRIEVAL_QUERY"} for t in ("a", "b")]}
    plain = embedding_request_to_gemini(["a"], "models/text-embedding-004", None, None)
    assert plain == {"requests": [{"model": "models/text-embedding-004",
                                   "content": {"parts": [{"text": "a"}]}}]}


def test_embedding_response():
    resp = {"embeddings": [{"values": [0.1, 0.2]}, {"values": [0.3, 0.4]}]}
    assert gemini_embeddings_to_openai(resp, "gemini-embedding-001") == {
        "object": "list", "model": "gemini-embedding-001",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]},
                 {"object": "embedding", "index": 1, "embedding": [0.3, 0.4]}],
        "usage": {"prompt_tokens": 0, "total_tokens": 0}}


# --- errors ---------------------------------------------------------------------------------

def _google_error(code, status, message, reason=None):
    error = {"code": code, "message": message, "status": status}
    if reason:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                             "reason": reason, "domain": "googleapis.com"}]
    return {"error": error}


@pytest.mark.parametrize("body, status, expected", [
    (_google_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
                   "API_KEY_INVALID"), 400, "authentication"),
    (_google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received."), 400, "bad_request"),
    (_google_error(400, "INVALID_ARGUMENT", "The input token count (1200000) exceeds the maximum "
                   "number of tokens allowed (1048576)."), 400, "context_window"),
    (_google_error(400, "FAILED_PRECONDITION", "User location is not supported for the API use."),
     400, "permission"),
    (_google_error(403, "PERMISSION_DENIED", "Permission denied."), 403, "permission"),
    (_google_error(401, "UNAUTHENTICATED", "Request had invalid credentials."), 401,
     "authentication"),
    (_google_error(404, "NOT_FOUND", "models/gemini-9 is not found"), 404, "not_found"),
    (_google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded"), 429, "rate_limit"),
    (_google_error(500, "INTERNAL", "An internal error has occurred."), 500, "server"),
    (_google_error(503, "UNAVAILABLE", "The model is overloaded."), 503, "unavailable"),
    (_google_error(504, "DEADLINE_EXCEEDED", "Deadline expired."), 504, "timeout"),
    ({"error": "upstream exploded"}, 500, "server"),
    ({}, 502, "server"),
    ({}, 429, "rate_limit"),
])
def test_error_mapping(body, status, expected):
    kind, message = gemini_error_to_status(body, status)
    assert kind == expected
    assert message


def test_error_message_is_googles_or_a_fallback():
    body = _google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for metric")
    assert gemini_error_to_status(body, 429)[1] == "Quota exceeded for metric"
    assert "502" in gemini_error_to_status({}, 502)[1]
