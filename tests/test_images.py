"""Image generation and edits (multipart uploads) through the gateway."""

import base64
import io

import openai
import pytest

from tests.support.openapi import assert_valid

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


def test_generation_passes_through_and_counts_images(openai_client, upstream, caplog, call_log):
    raw = openai_client.images.with_raw_response.generate(model="gpt-4o-mini", prompt="a red fox", n=2,
                                                          size="1024x1024")
    assert_valid("ImagesResponse", raw.http_response.json())
    assert len(raw.parse().data) == 2
    assert upstream.last.path == "/v1/images/generations"
    assert upstream.last.json == {"model": "gpt-4o-mini", "prompt": "a red fox", "n": 2, "size": "1024x1024"}
    assert call_log()[-1]["prompt_tokens"] == 50


def test_an_edit_with_several_images_and_a_mask_streams_every_file_upstream(openai_client, upstream):
    images = [("one.png", PNG, "image/png"), ("two.png", PNG[::-1], "image/png")]
    raw = openai_client.images.with_raw_response.edit(
        model="gpt-4o-mini", prompt="merge them", image=images, mask=("mask.png", b"MASK", "image/png"), n=1)

    assert_valid("ImagesResponse", raw.http_response.json())
    sent = upstream.last
    assert sent.path == "/v1/images/edits"
    assert sent.headers["authorization"] == "Bearer sk-upstream-secret"
    assert int(sent.headers["content-length"]) == len(sent.body), "sent with a length, not chunked"
    fields, files = sent.form
    assert fields == {"model": "gpt-4o-mini", "prompt": "merge them", "n": "1"}
    assert [(f[0], f[1], f[3]) for f in files] == [
        ("image[]", "one.png", PNG), ("image[]", "two.png", PNG[::-1]), ("mask", "mask.png", b"MASK")]


def test_the_mock_generates_a_real_png(openai_client):
    response = openai_client.images.generate(model="demo", prompt="a cat", response_format="b64_json")
    assert base64.b64decode(response.data[0].b64_json).startswith(b"\x89PNG\r\n\x1a\n")
    assert_valid("ImagesResponse", response.model_dump(exclude_unset=True))

    edited = openai_client.images.edit(model="demo", prompt="hat", image=io.BytesIO(PNG), n=3)
    assert len(edited.data) == 3


def test_an_upload_over_the_limit_is_a_413_and_never_reaches_the_upstream(make_app, base_config, auth, upstream):
    base_config["general_settings"]["max_request_size_mb"] = 0.01
    client = make_app(base_config).test_client()
    response = client.post("/v1/images/edits", headers=auth, content_type="multipart/form-data",
                           data={"model": "gpt-4o-mini", "prompt": "x",
                                 "image": (io.BytesIO(b"x" * 20000), "big.png", "image/png")})
    assert response.status_code == 413
    assert response.json["error"]["type"] == "invalid_request_error"
    assert upstream.requests == []


@pytest.mark.parametrize("data, field", [
    ({"model": "demo", "prompt": "x", "n": "several"}, "n"),
    ({"model": "demo"}, "prompt"),
])
def test_wrong_form_fields_are_a_400_naming_them(client, auth, data, field):
    data = dict(data, image=(io.BytesIO(PNG), "a.png", "image/png"))
    response = client.post("/v1/images/edits", headers=auth, content_type="multipart/form-data", data=data)
    assert response.status_code == 400 and response.json["error"]["param"] == field


def test_a_json_body_on_a_multipart_route_is_a_400(client, auth):
    response = client.post("/v1/images/edits", headers=auth, json={"model": "demo", "prompt": "x"})
    assert response.status_code == 400 and "multipart/form-data" in response.json["error"]["message"]


def test_wrong_generation_fields_are_a_400(openai_client):
    with pytest.raises(openai.BadRequestError) as exc:
        openai_client.images.generate(model="demo", prompt="x", n="two")
    assert exc.value.body["param"] == "n"
