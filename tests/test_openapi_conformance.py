"""What the gateway answers validates against OpenAI's own OpenAPI schemas."""

import json

from tests.support.openapi import assert_valid


def test_mock_chat_answers_match_the_spec(client, auth):
    body = client.post("/v1/chat/completions", headers=auth,
                       json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]}).json
    assert_valid("CreateChatCompletionResponse", body)


def test_mock_stream_chunks_match_the_spec(client, auth):
    response = client.post("/v1/chat/completions", headers=auth,
                           json={"model": "demo", "stream": True, "stream_options": {"include_usage": True},
                                 "messages": [{"role": "user", "content": "hi"}]})
    events = [e[len("data: "):] for e in response.get_data(as_text=True).split("\n\n") if e]
    assert events[-1] == "[DONE]"
    for payload in events[:-1]:
        assert_valid("CreateChatCompletionStreamResponse", json.loads(payload))


def test_errors_match_the_spec(client, auth):
    body = client.post("/v1/chat/completions", headers=auth, json={"model": "nope", "messages": [
        {"role": "user", "content": "hi"}]}).json
    assert_valid("ErrorResponse", body)
