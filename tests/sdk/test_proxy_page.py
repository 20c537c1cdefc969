"""The `dheera_ai_proxy/` provider page: every Python block, run against a real gateway.

Only placeholders change: the gateway's address for `your-...-url` and `http://localhost:4000`,
its key for `your-...-api-key`, for `sk-1234` (too short to be a gateway's key) and for the empty
`DHEERA_AI_PROXY_API_KEY` where the block relies on it. Anything else is named where it happens.
"""

import asyncio
import base64
import json

import pytest
import yaml

import dheera_ai
from dheera_ai.cost import DEFAULT_PRICES
from tests.sdk.conftest import GATEWAY_KEY
from tests.sdk.seed_pages import PROXY_PAGE, adapted, python_blocks, run
from tests.support.fake_upstream import FAKE_AUDIO, FAKE_PNG_B64, FAKE_VECTOR
from tests.support.process import GatewayProcess

BLOCKS = python_blocks(PROXY_PAGE)
SEND_ALL = "Send all SDK requests to Dheera AI Proxy"
TAGS = "Sending `tags` to Dheera AI Proxy"
EXAMPLES = [
    ("Required Variables", None, None, None),
    ("Usage (Non Streaming)", None, None, None),
    ("Usage - passing `api_base`, `api_key` per request", None, None, None),
    ("Usage - Streaming", None, None, None),
    ("Embeddings", None, None, None),
    ("Image Generation", None, None, None),
    ("Image Edit", None, None, None),
    ("Audio Transcription", None, None, None),
    ("Text to Speech", None, None, None),
    ("Rerank", None, None, None),
    (SEND_ALL, "Option 1: Set Globally in Code", None, None),
    (SEND_ALL, "Option 2: Control via Environment Variable", None, None),
    (SEND_ALL, "Option 3: Set Per Request", None, None),
    (TAGS, "Usage", None, None),
    (TAGS, "Async Usage", None, None),
]


# The blocks that call without api_key empty DHEERA_AI_PROXY_API_KEY first: its placeholder.
KEY_IN_ENVIRONMENT = {
    'os.environ["DHEERA_AI_PROXY_API_KEY"] = ""': f'os.environ["DHEERA_AI_PROXY_API_KEY"] = "{GATEWAY_KEY}"'}


def block(heading, subheading=None):
    return BLOCKS[(heading, subheading, None, None)]


def gateway_placeholders(gateway):
    return {"your-dheera_ai-proxy-url": gateway.url, "your-dheera_ai-proxy-api-key": GATEWAY_KEY}


def tags_placeholders(gateway):
    return {"http://localhost:4000": gateway.url, "sk-1234": GATEWAY_KEY}


def test_every_python_block_of_the_page_is_run_here():
    assert list(BLOCKS) == EXAMPLES


def required_variables(gateway):
    """The page's "Required Variables" block, with the gateway's key and address filled in."""
    run(adapted(block("Required Variables"), {
        **KEY_IN_ENVIRONMENT,
        'os.environ["DHEERA_AI_PROXY_API_BASE"] = ""': f'os.environ["DHEERA_AI_PROXY_API_BASE"] = "{gateway.url}"',
    }), {"os": __import__("os")})  # the block is a fragment: it uses `os` without importing it


def test_usage_non_streaming(gateway, upstream, gateway_calls):
    code = block("Usage (Non Streaming)")
    # As printed, the call is a SyntaxError: a positional argument (`messages`) after a keyword one.
    with pytest.raises(SyntaxError, match="positional argument follows keyword argument"):
        compile(code, "<seed block>", "exec")
    # The nearest valid form passes the list as `messages=`; `completion(model, messages)` works positionally too.
    code = adapted(code, {
        'completion(model="dheera_ai_proxy/your-model-name", messages)':
            'completion(model="dheera_ai_proxy/your-model-name", messages=messages)',
        **KEY_IN_ENVIRONMENT, "your-openai-proxy-url": gateway.url})
    response = run(code)["response"]

    assert isinstance(response, dheera_ai.ModelResponse)
    assert response.choices[0].message.content == "Hello from the fake upstream."
    assert response["choices"][0]["message"]["content"] == "Hello from the fake upstream."
    assert response.usage.total_tokens == 16
    # The gateway's own deployment for the model group answered: its upstream, its upstream key.
    assert upstream.last.json["model"] == "gpt-4o-mini"
    assert upstream.last.json["messages"] == [{"content": "Hello, how are you?", "role": "user"}]
    assert upstream.last.headers["authorization"] == "Bearer sk-upstream-secret"
    assert gateway_calls(1)[0]["model"] == "your-model-name"

    positional = dheera_ai.completion("dheera_ai_proxy/your-model-name", [{"role": "user", "content": "Hi"}])
    assert positional.choices[0].message.content == "Hello from the fake upstream."


def test_api_base_and_api_key_per_request(gateway, upstream):
    # The block empties DHEERA_AI_PROXY_API_KEY: the key passed with the call is what gets through.
    response = run(adapted(block("Usage - passing `api_base`, `api_key` per request"),
                           gateway_placeholders(gateway)))["response"]

    assert response.choices[0].message.content == "Hello from the fake upstream."
    assert upstream.last.json["model"] == "gpt-4o-mini"


def test_a_per_request_key_is_really_sent(gateway):
    with pytest.raises(dheera_ai.AuthenticationError):
        dheera_ai.completion(model="dheera_ai_proxy/your-model-name", messages=[{"role": "user", "content": "Hi"}],
                             api_base=gateway.url, api_key="sk-not-the-gateways-key")


def test_streaming(gateway, capsys):
    code = adapted(block("Usage - Streaming"), {
        "your-dheera_ai-proxy-url": gateway.url, **KEY_IN_ENVIRONMENT})
    response = run(code)["response"]

    printed = capsys.readouterr().out.splitlines()
    assert printed and all(line.startswith("ModelResponseStream(") for line in printed)
    chunks = [json.loads(line[len("ModelResponseStream("):-1]) for line in printed]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == \
        "Hello from the stream."
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    # Once the stream has ended, what it used (the gateway asked its upstream for usage).
    assert isinstance(response, dheera_ai.Stream)
    assert response.usage.total_tokens == 13


def test_embeddings(gateway, upstream):
    response = run(adapted(block("Embeddings"), gateway_placeholders(gateway)))["response"]

    assert isinstance(response, dheera_ai.EmbeddingResponse)
    assert response.data[0].embedding == FAKE_VECTOR
    assert upstream.last.path == "/v1/embeddings"
    assert upstream.last.json["input"] == "Hello world"
    assert upstream.last.json["model"] == "text-embedding-3-small"


def test_image_generation(gateway, upstream):
    response = run(adapted(block("Image Generation"), gateway_placeholders(gateway)))["response"]

    assert response.data[0].b64_json == FAKE_PNG_B64
    assert upstream.last.path == "/v1/images/generations"
    assert upstream.last.json["prompt"] == "A beautiful sunset over mountains"
    with open(DEFAULT_PRICES, encoding="utf-8") as f:
        per_image = yaml.safe_load(f)["dall-e-3"]["output_cost_per_image"]["1024x1024/standard"]
    assert response.response_cost == pytest.approx(per_image)
    assert response._hidden_params["response_cost"] == pytest.approx(per_image)


def test_image_edit(gateway, upstream):
    # The block opens "your-image.png" from the working directory; the test puts one there.
    png = base64.b64decode(FAKE_PNG_B64)
    with open("your-image.png", "wb") as f:
        f.write(png)
    response = run(adapted(block("Image Edit"), gateway_placeholders(gateway)))["response"]

    assert response.data[0].b64_json == FAKE_PNG_B64
    sent = upstream.last
    assert sent.path == "/v1/images/edits"
    fields, files = sent.form
    assert fields["prompt"] == "Make this image a watercolor painting"
    assert fields["model"] == "gpt-image-1"
    assert files == [("image", "your-image.png", "image/png", png)]


def test_audio_transcription(gateway, upstream):
    # `file="your-audio-file"` names a file: the SDK opens a path it is given. The test makes one.
    with open("your-audio-file", "wb") as f:
        f.write(b"RIFF-fake-audio")
    response = run(adapted(block("Audio Transcription"), gateway_placeholders(gateway)))["response"]

    assert isinstance(response, dheera_ai.TranscriptionResponse)
    assert response.text == "Transcribed your-audio-file"
    fields, files = upstream.last.form
    assert fields["model"] == "whisper-1"
    assert [(name, filename, content) for name, filename, _, content in files] == \
        [("file", "your-audio-file", b"RIFF-fake-audio")]


def test_text_to_speech(gateway, upstream, tmp_path):
    response = run(adapted(block("Text to Speech"), gateway_placeholders(gateway)))["response"]

    assert response.content == b"".join(FAKE_AUDIO)
    assert response.read() == b"".join(FAKE_AUDIO)
    response.stream_to_file(tmp_path / "speech.mp3")
    assert (tmp_path / "speech.mp3").read_bytes() == b"".join(FAKE_AUDIO)
    # The page gives no voice; the API needs one, and the SDK's default is OpenAI's first, "alloy".
    assert upstream.last.json == {"model": "tts-1", "input": "Hello world", "voice": "alloy"}


def test_rerank(gateway, upstream):
    response = run(adapted(block("Rerank"), gateway_placeholders(gateway)))["response"]

    assert isinstance(response, dheera_ai.RerankResponse)
    assert [r.index for r in response.results] == [0, 1]
    assert response.results[0].relevance_score > response.results[1].relevance_score
    assert upstream.last.path == "/v1/rerank"
    assert upstream.last.json["query"] == "What is machine learning?"
    assert len(upstream.last.json["documents"]) == 2


@pytest.mark.parametrize("option", ["Option 1: Set Globally in Code", "Option 2: Control via Environment Variable",
                                    "Option 3: Set Per Request"])
def test_send_every_request_to_the_gateway(option, gateway, upstream, gateway_calls):
    # These blocks continue the page: the gateway comes from its "Required Variables" block, and
    # `dheera_ai` and `os` from the blocks before (they are fragments, not scripts).
    required_variables(gateway)
    response = run(block(SEND_ALL, option), {"dheera_ai": dheera_ai, "os": __import__("os")})["response"]

    assert response.choices[0].message.content == "Hello from the fake upstream."
    # The model string reached the gateway unchanged: its group of that exact name answered.
    assert gateway_calls(1)[0]["model"] == "vertex_ai/gemini-2.0-flash-001"
    assert upstream.last.json["model"] == "gemini-2.0-flash-001"


def test_without_the_flag_the_sdk_calls_vertex_itself_and_says_what_it_lacks(gateway, monkeypatch):
    required_variables(gateway)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    # The SDK has a vertex_ai provider of its own: without the flag it never goes to the gateway,
    # and with no Google credentials here it says so before anything is sent.
    with pytest.raises(dheera_ai.AuthenticationError, match="vertex_ai: Application Default Credentials"):
        dheera_ai.completion(model="vertex_ai/gemini-2.0-flash-001", messages=[{"role": "user", "content": "Hi"}])


def test_tags_reach_the_gateway(gateway, upstream, gateway_calls):
    # `model="gpt-4"` with an api_base: an OpenAI-compatible server at that address (the gateway).
    response = run(adapted(block(TAGS, "Usage"), tags_placeholders(gateway)))["response"]

    assert response.choices[0].message.content == "Hello from the fake upstream."
    line = gateway_calls(1)[0]
    assert line["model"] == "gpt-4"
    assert line["tags"] == ["user:ishaan", "department:engineering", "priority:high"]
    # The gateway keeps tags to itself: its upstream does not see them.
    assert "tags" not in upstream.last.json


def test_tags_reach_the_gateway_async(gateway, gateway_calls):
    # The block awaits at top level, as in a notebook or `python -m asyncio`; run it that way.
    response = run(adapted(block(TAGS, "Async Usage"), tags_placeholders(gateway)))["response"]

    assert response.choices[0].message.content == "Hello from the fake upstream."
    assert gateway_calls(1)[0]["tags"] == ["user:ishaan", "department:engineering"]


def test_the_streaming_example_async(gateway):
    async def main():
        response = await dheera_ai.acompletion(model="dheera_ai_proxy/your-model-name", stream=True,
                                               messages=[{"content": "Hello, how are you?", "role": "user"}],
                                               api_base=gateway.url, api_key=GATEWAY_KEY)
        return response, [chunk async for chunk in response]

    response, chunks = asyncio.run(main())
    assert isinstance(response, dheera_ai.AsyncStream)
    assert all(isinstance(c, dheera_ai.ModelResponseStream) for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from the stream."
    assert response.usage.total_tokens == 13


@pytest.mark.parametrize("name, kwargs, check", [
    ("aembedding", {"model": "dheera_ai_proxy/your-embedding-model", "input": "Hello world"},
     lambda r: r.data[0].embedding == FAKE_VECTOR),
    ("aimage_generation", {"model": "dheera_ai_proxy/dall-e-3", "prompt": "A sunset"},
     lambda r: r.data[0].b64_json == FAKE_PNG_B64),
    ("aimage_edit", {"model": "dheera_ai_proxy/gpt-image-1", "prompt": "Watercolor", "image": [b"\x89PNGfake"]},
     lambda r: r.data[0].b64_json == FAKE_PNG_B64),
    ("atranscription", {"model": "dheera_ai_proxy/whisper-1", "file": ("a.wav", b"RIFF")},
     lambda r: r.text == "Transcribed a.wav"),
    ("aspeech", {"model": "dheera_ai_proxy/tts-1", "input": "Hello world"},
     lambda r: r.content == b"".join(FAKE_AUDIO)),
    ("arerank", {"model": "dheera_ai_proxy/rerank-english-v2.0", "query": "q", "documents": ["a", "b"]},
     lambda r: len(r.results) == 2),
    ("amoderation", {"model": "dheera_ai_proxy/demo", "input": "I will kill you"},
     lambda r: r.results[0].flagged is True),
    ("atext_completion", {"model": "dheera_ai_proxy/demo", "prompt": "Say hi",
                          "extra_body": {"mock_response": "hi there"}},
     lambda r: r.choices[0].text == "hi there"),
])
def test_the_async_twins_through_the_gateway(gateway, name, kwargs, check):
    result = asyncio.run(getattr(dheera_ai, name)(**kwargs, api_base=gateway.url, api_key=GATEWAY_KEY))
    assert check(result)


def test_the_page_against_the_real_dheera_ai_command(gateway_config, tmp_path, upstream, capsys):
    """The same blocks against `dheera_ai --config ...` (gunicorn, a gevent worker, a real socket)."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(gateway_config))
    process = GatewayProcess("--config", str(config), "--workers", "1", "--host", "127.0.0.1")
    try:
        process.wait_ready()
        tags = run(adapted(block(TAGS, "Usage"), tags_placeholders(process)))["response"]
        required_variables(process)
        run(block(SEND_ALL, "Option 3: Set Per Request"), {"dheera_ai": dheera_ai, "os": __import__("os")})
        run(adapted(block("Usage - Streaming"), {"your-dheera_ai-proxy-url": process.url, **KEY_IN_ENVIRONMENT}))
    finally:
        process.close()

    assert tags.choices[0].message.content == "Hello from the fake upstream."
    assert [r.json["model"] for r in upstream.requests] == ["gpt-4", "gemini-2.0-flash-001", "gpt-4o-mini"]
    printed = capsys.readouterr().out
    assert printed.count("ModelResponseStream(") == len(printed.splitlines()) > 0
