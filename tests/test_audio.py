"""Speech (audio streamed out) and transcriptions/translations (multipart in) through the gateway."""

import io
import json
import socket
import struct

import pytest

from tests.conftest import MASTER_KEY
from tests.support.fake_upstream import FAKE_AUDIO
from tests.support.openapi import assert_valid

AUDIO = b"RIFF" + bytes(range(256)) * 200


def test_speech_is_relayed_with_the_upstreams_content_type(openai_client, upstream):
    with openai_client.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini", voice="alloy", input="Hello there") as response:
        assert response.headers["content-type"] == "audio/mpeg"
        audio = b"".join(response.iter_bytes())

    assert audio == b"".join(FAKE_AUDIO)
    assert upstream.last.path == "/v1/audio/speech"
    assert upstream.last.json == {"model": "gpt-4o-mini", "voice": "alloy", "input": "Hello there"}


def test_speech_reaches_the_client_before_the_upstream_has_finished(live, upstream):
    """The first bytes arrive while the upstream is still sending: nothing is buffered whole."""
    upstream.binary([b"first-part", b"second-part"], event_delay=0.5)
    body = json.dumps({"model": "gpt-4o-mini", "voice": "alloy", "input": "hi"}).encode()
    with socket.create_connection(("127.0.0.1", int(live.url.rsplit(":", 1)[1])), timeout=5) as sock:
        sock.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + MASTER_KEY.encode() + b"\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        received = b""
        while b"first-part" not in received:
            received += sock.recv(4096)
        # The upstream is now waiting before its second part; we already have the first.
        assert b"second-part" not in received


def test_the_mock_speaks_a_valid_wav(openai_client):
    audio = openai_client.audio.speech.create(model="demo", voice="alloy", input="Hello world").content
    assert audio[:4] == b"RIFF" and audio[8:12] == b"WAVE"
    assert struct.unpack("<I", audio[40:44])[0] == len(audio) - 44


@pytest.mark.parametrize("model", ["gpt-4o-mini", "demo"])
def test_transcription_text_and_json(openai_client, upstream, model):
    text = openai_client.audio.transcriptions.create(model=model, file=("talk.wav", AUDIO, "audio/wav"),
                                                     response_format="text")
    assert isinstance(text, str) and "talk.wav" in text

    raw = openai_client.audio.transcriptions.with_raw_response.create(
        model=model, file=("talk.wav", AUDIO, "audio/wav"), response_format="json", language="en")
    body = raw.http_response.json()
    assert_valid("CreateTranscriptionResponseJson", body)
    assert "talk.wav" in raw.parse().text
    if model == "gpt-4o-mini":
        fields, files = upstream.last.form
        assert fields == {"model": "gpt-4o-mini", "response_format": "json", "language": "en"}
        assert files == [("file", "talk.wav", "audio/wav", AUDIO)]


def test_verbose_json_and_subtitles_from_the_mock(openai_client):
    verbose = openai_client.audio.transcriptions.with_raw_response.create(
        model="demo", file=("a.wav", AUDIO, "audio/wav"), response_format="verbose_json")
    assert_valid("CreateTranscriptionResponseVerboseJson", verbose.http_response.json())
    srt = openai_client.audio.transcriptions.create(model="demo", file=("a.wav", AUDIO), response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> ")
    vtt = openai_client.audio.transcriptions.create(model="demo", file=("a.wav", AUDIO), response_format="vtt")
    assert vtt.startswith("WEBVTT")


@pytest.mark.parametrize("model", ["gpt-4o-mini", "demo"])
def test_translation(openai_client, upstream, model):
    raw = openai_client.audio.translations.with_raw_response.create(model=model, file=("de.wav", AUDIO, "audio/wav"))
    assert_valid("CreateTranslationResponseJson", raw.http_response.json())
    assert "de.wav" in raw.parse().text


def test_an_oversized_audio_upload_is_a_413(make_app, base_config, auth, upstream):
    base_config["general_settings"]["max_request_size_mb"] = 0.01
    client = make_app(base_config).test_client()
    response = client.post("/v1/audio/transcriptions", headers=auth, content_type="multipart/form-data",
                           data={"model": "gpt-4o-mini", "file": (io.BytesIO(AUDIO), "big.wav")})
    assert response.status_code == 413 and upstream.requests == []


def test_a_wrong_response_format_is_a_400(client, auth):
    response = client.post("/v1/audio/transcriptions", headers=auth, content_type="multipart/form-data",
                           data={"model": "demo", "response_format": "mp3", "file": (io.BytesIO(AUDIO), "a.wav")})
    assert response.status_code == 400 and response.json["error"]["param"] == "response_format"


def test_speech_without_input_is_a_400(client, auth):
    response = client.post("/v1/audio/speech", headers=auth, json={"model": "demo", "voice": "alloy"})
    assert response.status_code == 400 and response.json["error"]["param"] == "input"


def test_a_large_upload_arrives_upstream_byte_for_byte_with_its_length(openai_client, upstream):
    # Beyond the form parser's 500 KB in memory, so it is spooled to a temporary file and sent from there.
    audio = bytes(range(256)) * 8192  # 2 MB
    openai_client.audio.transcriptions.create(model="gpt-4o-mini", file=("long.wav", audio, "audio/wav"))

    sent = upstream.last
    assert "transfer-encoding" not in sent.headers and int(sent.headers["content-length"]) == len(sent.body)
    assert sent.form[1] == [("file", "long.wav", "audio/wav", audio)]
    assert upstream.chunked_uploads == 0
