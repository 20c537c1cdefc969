"""Legacy text completions through the gateway, plain and streamed."""

import pytest

from tests.support.openapi import assert_valid


def test_a_plain_completion_passes_through(openai_client, upstream, call_log):
    raw = openai_client.completions.with_raw_response.create(model="gpt-4o-mini", prompt="Say hi", max_tokens=5)

    assert_valid("CreateCompletionResponse", raw.http_response.json())
    assert raw.parse().choices[0].text == "Hello from the fake upstream."
    assert upstream.last.path == "/v1/completions"
    assert upstream.last.json == {"model": "gpt-4o-mini", "prompt": "Say hi", "max_tokens": 5}
    assert call_log()[-1]["completion_tokens"] == 6


def test_a_streamed_completion_arrives_in_pieces_and_is_billed(openai_client, upstream, call_log):
    chunks = list(openai_client.completions.create(model="gpt-4o-mini", prompt="Say hi", stream=True))

    assert "".join(c.choices[0].text for c in chunks) == "Hello there."
    assert all(c.choices for c in chunks), "usage was not asked for by the client"
    assert upstream.last.json["stream_options"] == {"include_usage": True}
    # The spec types finish_reason as a string; like the live API, only the last chunk has one.
    assert_valid("CreateCompletionResponse", chunks[-1].model_dump(exclude_unset=True))
    assert call_log()[-1]["completion_tokens"] == 3


@pytest.mark.parametrize("stream", [False, True])
def test_the_mock_completes_text(openai_client, stream):
    answer = openai_client.completions.create(model="demo", prompt="Hello", stream=stream,
                                              extra_body={"mock_response": "one two three"})
    text = "".join(c.choices[0].text for c in answer) if stream else answer.choices[0].text
    assert text == "one two three"
    if not stream:
        assert_valid("CreateCompletionResponse", answer.model_dump(exclude_unset=True))


def test_a_wrong_prompt_type_is_a_400(client, auth):
    response = client.post("/completions", headers=auth, json={"model": "demo", "prompt": 3})
    assert response.status_code == 400 and response.json["error"]["param"] == "prompt"
