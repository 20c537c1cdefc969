"""Embeddings through the gateway, as the official OpenAI SDK sees them."""

import base64
import struct

import openai
import pytest

from tests.support.fake_upstream import FAKE_VECTOR
from tests.support.openapi import assert_valid


def test_embeddings_reach_the_upstream_and_decode_in_the_sdk(openai_client, upstream, call_log):
    # The SDK asks for base64 by default and decodes it itself.
    response = openai_client.embeddings.create(model="gpt-4o-mini", input=["hello", "world"])

    assert [d.embedding for d in response.data] == [FAKE_VECTOR, FAKE_VECTOR]
    sent = upstream.last
    assert sent.path == "/v1/embeddings"
    assert sent.json == {"model": "gpt-4o-mini", "input": ["hello", "world"], "encoding_format": "base64"}
    assert call_log()[-1]["prompt_tokens"] == 8


def test_encoding_format_dimensions_and_unknown_fields_pass_through(openai_client, upstream):
    raw = openai_client.embeddings.with_raw_response.create(
        model="gpt-4o-mini", input=[[1, 2, 3]], encoding_format="float", dimensions=3,
        extra_body={"input_type": "query"})
    assert_valid("CreateEmbeddingResponse", raw.http_response.json())
    assert upstream.last.json == {"model": "gpt-4o-mini", "input": [[1, 2, 3]], "encoding_format": "float",
                                  "dimensions": 3, "input_type": "query"}


@pytest.mark.parametrize("input_", ["one string", ["a", "b", "c"], [5, 6, 7], [[1, 2], [3]]])
def test_the_mock_embeds_every_input_shape_deterministically(openai_client, input_):
    first = openai_client.embeddings.create(model="demo", input=input_, dimensions=8)
    again = openai_client.embeddings.create(model="demo", input=input_, dimensions=8)

    count = 1 if isinstance(input_, str) or isinstance(input_[0], int) else len(input_)
    assert len(first.data) == count
    assert all(len(d.embedding) == 8 for d in first.data)
    assert [d.embedding for d in first.data] == [d.embedding for d in again.data]
    norm = sum(v * v for v in first.data[0].embedding) ** 0.5
    assert abs(norm - 1) < 1e-3


def test_mock_embeddings_differ_by_input_and_validate_against_the_spec(client, auth):
    response = client.post("/v1/embeddings", headers=auth, json={"model": "demo", "input": ["cat", "dog"]})
    body = response.get_json()
    assert_valid("CreateEmbeddingResponse", body)
    assert body["data"][0]["embedding"] != body["data"][1]["embedding"]
    encoded = client.post("/embeddings", headers=auth,
                          json={"model": "demo", "input": "cat", "encoding_format": "base64"}).get_json()
    floats = struct.unpack("<16f", base64.b64decode(encoded["data"][0]["embedding"]))
    assert [round(f, 5) for f in floats] == [round(f, 5) for f in body["data"][0]["embedding"]]


@pytest.mark.parametrize("body, field", [
    ({"model": "demo"}, "input"),
    ({"model": "demo", "input": 5}, "input"),
    ({"model": "demo", "input": "x", "dimensions": "many"}, "dimensions"),
    ({"model": "demo", "input": "x", "encoding_format": "hex"}, "encoding_format"),
])
def test_wrong_fields_are_a_400_naming_them(client, auth, body, field):
    response = client.post("/v1/embeddings", headers=auth, json=body)
    assert response.status_code == 400
    assert response.json["error"]["param"] == field


def test_an_upstream_error_keeps_its_status(openai_client, upstream):
    upstream.fail(429, "slow down", code="rate_limit_exceeded")
    with pytest.raises(openai.RateLimitError):
        openai_client.embeddings.create(model="gpt-4o-mini", input="x")
