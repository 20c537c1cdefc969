"""The SDK beyond the pages' examples: result objects, cost, where a call goes, what it sends, and
that importing `dheera_ai` starts nothing."""

import asyncio
import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

import dheera_ai
from dheera_ai.cost import DEFAULT_PRICES
from tests.support.fake_upstream import chat_completion

HI = [{"role": "user", "content": "Hi"}]
ROOT = Path(__file__).resolve().parents[2]


def prices(model):
    with open(DEFAULT_PRICES, encoding="utf-8") as f:
        return yaml.safe_load(f)[model]


def direct(upstream, **kwargs):
    return dheera_ai.completion(**{"model": "openai/gpt-4o-mini", "messages": HI, "api_base": upstream.url + "/v1",
                                   "api_key": "sk-upstream-secret", **kwargs})


# -- results --------------------------------------------------------------------------------------

def test_a_result_is_the_answer_read_as_attributes_or_as_a_dict(upstream):
    response = direct(upstream)

    assert response == chat_completion()  # the provider's JSON, nothing added or lost
    assert json.loads(json.dumps(response)) == chat_completion()
    assert response.choices[0].message.content == response["choices"][0]["message"]["content"]
    assert response.choices[0].message.tool_calls is None  # a field the answer left out
    assert response.usage.prompt_tokens == 9
    assert type(response.model_dump()["choices"][0]) is dict
    assert repr(response).startswith("ModelResponse({")
    with pytest.raises(AttributeError):
        response._not_a_field  # noqa: B018


def test_the_cost_of_a_call_from_the_price_table(upstream):
    response = direct(upstream)

    price = prices("gpt-4o-mini")
    expected = 9 * price["input_cost_per_token"] + 7 * price["output_cost_per_token"]
    assert response.response_cost == pytest.approx(expected) and expected > 0
    assert response._hidden_params["response_cost"] == pytest.approx(expected)
    assert dheera_ai.completion_cost(completion_response=response) == pytest.approx(expected)
    assert response._hidden_params["custom_llm_provider"] == "openai"
    assert response._hidden_params["api_base"] == upstream.url + "/v1"


def test_an_installed_wheel_prices_a_call_as_a_checkout_does(upstream, tmp_path):
    """`pip install dheera-ai` (a wheel, no checkout beside it) ships the price table: the same
    call costs the same there as here, not 0."""
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*_cache", "*.sqlite3*", "dheera_ai-spool",
        "tests"))
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run(pip[:3] + ["wheel"] + pip[3:] + ["--no-deps", "--no-build-isolation", "--no-index",
                                                    "-w", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True, timeout=180)
    (wheel,) = (tmp_path / "dist").glob("dheera_ai-*.whl")
    target = tmp_path / "site"
    subprocess.run(pip[:3] + ["install"] + pip[3:] + ["--no-deps", "--no-index", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=120)
    shutil.rmtree(source)

    script = textwrap.dedent(f"""
        import json, sys
        import dheera_ai
        from dheera_ai.cost import DEFAULT_PRICES
        r = dheera_ai.completion(model="openai/gpt-4o-mini", messages={HI!r}, api_base="{upstream.url}/v1",
                                 api_key="sk-upstream-secret")
        print(json.dumps({{"cost": dheera_ai.completion_cost(completion_response=r), "module": dheera_ai.__file__,
                          "prices": DEFAULT_PRICES, "path": sys.path}}))
    """)
    # -S: the dependencies come from this venv's site-packages as a plain path, without its .pth
    # files, so the editable install's finder (which maps `dheera_ai` to the checkout) never runs.
    result = subprocess.run([sys.executable, "-S", "-c", script], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path, env={"PYTHONPATH": os.pathsep.join([str(target), *site.getsitepackages()]),
                                               "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    installed = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(installed["module"]).parent == target / "dheera_ai"
    assert Path(installed["prices"]) == target / "dheera_ai" / "model_prices.yaml"
    # Nothing else on the path holds a `dheera_ai` package (the checkout least of all).
    assert [p for p in installed["path"] if (Path(p or tmp_path) / "dheera_ai").exists()] == [str(target)]

    here = direct(upstream).response_cost
    assert here > 0 and installed["cost"] == here


def test_a_streams_usage_and_cost_once_it_has_ended(upstream):
    stream = direct(upstream, stream=True)
    assert stream.usage is None and stream.response_cost == 0.0
    chunks = list(stream)

    assert all(isinstance(c, dheera_ai.ModelResponseStream) for c in chunks)
    # The client did not ask for usage, so no usage chunk; the SDK still knows the usage.
    assert all(c.choices for c in chunks)
    assert stream.usage.total_tokens == 13
    price = prices("gpt-4o-mini")
    assert stream.response_cost == pytest.approx(9 * price["input_cost_per_token"] + 4 * price["output_cost_per_token"])


def test_text_completion_plain_and_streamed(upstream):
    plain = dheera_ai.text_completion(model="openai/gpt-3.5-turbo-instruct", prompt="Say hi",
                                      api_base=upstream.url + "/v1", api_key="k")
    chunks = list(dheera_ai.text_completion(model="openai/gpt-3.5-turbo-instruct", prompt="Say hi", stream=True,
                                            api_base=upstream.url + "/v1", api_key="k"))

    assert plain.choices[0].text == "Hello from the fake upstream."
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Hello there."
    assert upstream.last.path == "/v1/completions" and upstream.last.json["prompt"] == "Say hi"


def test_a_transcript_asked_for_as_text_is_a_string(upstream):
    text = dheera_ai.transcription(model="openai/whisper-1", file=("talk.wav", b"RIFF"), response_format="text",
                                   api_base=upstream.url + "/v1", api_key="k")
    assert text == "Transcribed talk.wav\n"


def test_moderation(upstream):
    result = dheera_ai.moderation(input="I will hurt you", api_base=upstream.url + "/v1", api_key="k")
    assert result.results[0].categories["violence"] is True
    assert upstream.last.json == {"input": "I will hurt you", "model": "omni-moderation-latest"}


@pytest.mark.parametrize("image", [b"\x89PNG-bytes", ("photo.png", b"\x89PNG-bytes", "image/png"), "photo.png"])
def test_an_image_may_be_bytes_a_tuple_or_a_path(upstream, image):
    with open("photo.png", "wb") as f:
        f.write(b"\x89PNG-bytes")
    dheera_ai.image_edit(model="openai/gpt-image-1", image=image, prompt="p", api_base=upstream.url + "/v1",
                         api_key="k")
    _, files = upstream.last.form
    assert [(name, content) for name, _, _, content in files] == [("image", b"\x89PNG-bytes")]


def test_several_images_and_a_mask(upstream):
    dheera_ai.image_edit(model="openai/gpt-image-1", image=[("a.png", b"A"), ("b.png", b"B")],
                         mask=("m.png", b"M"), prompt="p", api_base=upstream.url + "/v1", api_key="k")
    _, files = upstream.last.form
    assert [(name, filename, content) for name, filename, _, content in files] == \
        [("image[]", "a.png", b"A"), ("image[]", "b.png", b"B"), ("mask", "m.png", b"M")]


# -- where a call goes, and what it sends ---------------------------------------------------------

def test_a_gateways_address_and_key_per_call_then_set_in_code_then_from_the_environment(upstream, monkeypatch):
    # The fake upstream stands in for the gateway: it answers /chat/completions under any path.
    monkeypatch.setenv("DHEERA_AI_PROXY_API_BASE", upstream.url + "/env")
    monkeypatch.setenv("DHEERA_AI_PROXY_API_KEY", "sk-from-env")
    dheera_ai.completion(model="dheera_ai_proxy/m", messages=HI)
    assert (upstream.last.path, upstream.last.headers["authorization"]) == \
        ("/env/chat/completions", "Bearer sk-from-env")

    dheera_ai.api_base, dheera_ai.api_key = upstream.url + "/module", "sk-from-module"
    dheera_ai.completion(model="dheera_ai_proxy/m", messages=HI)
    assert (upstream.last.path, upstream.last.headers["authorization"]) == \
        ("/module/chat/completions", "Bearer sk-from-module")

    dheera_ai.completion(model="dheera_ai_proxy/m", messages=HI, api_base=upstream.url + "/call", api_key="sk-call")
    assert (upstream.last.path, upstream.last.headers["authorization"]) == ("/call/chat/completions", "Bearer sk-call")
    assert upstream.last.json["model"] == "m"


def test_tags_and_metadata_reach_the_gateway_in_the_body(upstream):
    dheera_ai.completion(model="dheera_ai_proxy/m", messages=HI, api_base=upstream.url, api_key="k",
                         metadata={"trace_id": "t-1"}, extra_body={"tags": ["team:search"], "top_k": 3})
    sent = upstream.last.json
    assert sent["metadata"] == {"trace_id": "t-1"}
    assert sent["tags"] == ["team:search"]
    assert sent["top_k"] == 3  # extra_body is merged into the body as it is


def test_a_direct_provider_gets_no_metadata(upstream):
    direct(upstream, metadata={"trace_id": "t-1"}, user="u-1")
    assert "metadata" not in upstream.last.json
    assert upstream.last.json["user"] == "u-1"


@pytest.mark.parametrize("how", ["module", "environment", "argument"])
def test_every_model_string_goes_to_the_gateway_unchanged(upstream, monkeypatch, how):
    monkeypatch.setenv("DHEERA_AI_PROXY_API_BASE", upstream.url)
    monkeypatch.setenv("DHEERA_AI_PROXY_API_KEY", "sk-gw")
    kwargs = {}
    if how == "module":
        dheera_ai.use_dheera_ai_proxy = True
    elif how == "environment":
        monkeypatch.setenv("USE_DHEERA_AI_PROXY", "true")
    else:
        kwargs["use_dheera_ai_proxy"] = True
    dheera_ai.embedding("anthropic/claude-sonnet-4", "x", **kwargs)

    assert upstream.last.path == "/embeddings"
    assert upstream.last.json["model"] == "anthropic/claude-sonnet-4"
    assert upstream.last.headers["authorization"] == "Bearer sk-gw"


def test_drop_params_leaves_out_what_the_provider_rejects(upstream):
    kwargs = {"model": "groq/llama-3.3-70b", "messages": HI, "api_base": upstream.url, "api_key": "k",
              "logit_bias": {"50256": -100}}
    with pytest.raises(dheera_ai.BadRequestError, match="logit_bias"):
        dheera_ai.completion(**kwargs)
    dheera_ai.drop_params = True
    dheera_ai.completion(**kwargs)
    assert "logit_bias" not in upstream.last.json and upstream.last.json["messages"] == HI


def test_azure_keys_and_addresses_from_the_environment(upstream, monkeypatch):
    monkeypatch.setenv("AZURE_API_BASE", upstream.url)
    monkeypatch.setenv("AZURE_API_KEY", "azure-env-key")
    monkeypatch.setenv("AZURE_API_VERSION", "2024-10-21")
    dheera_ai.embedding("azure/my-embedder", ["a", "b"])
    assert upstream.last.path == "/openai/deployments/my-embedder/embeddings?api-version=2024-10-21"
    assert upstream.last.headers["api-key"] == "azure-env-key"


# -- nothing at import time ----------------------------------------------------------------------

def loaded_after(code: str) -> set:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_importing_dheera_ai_imports_no_http_no_flask_and_builds_nothing():
    loaded = loaded_after("import dheera_ai")
    assert not {"flask", "requests", "proxy_app", "pluggy", "dheera_ai.engine", "dheera_ai.sdk"} & loaded

    loaded = loaded_after("from dheera_ai import completion, acompletion, ModelResponse, hookimpl")
    assert "dheera_ai.sdk.api" in loaded
    assert not {"flask", "requests", "proxy_app", "dheera_ai.engine", "asyncio"} & loaded


def test_a_call_never_imports_flask_or_the_gateway():
    loaded = loaded_after("import dheera_ai\n"
                          "r = dheera_ai.completion(model='mock/demo', messages=[{'role': 'user', 'content': 'Hi'}])\n"
                          "assert r.choices[0].message.content")
    assert "dheera_ai.engine" in loaded and "requests" in loaded
    assert not {"flask", "werkzeug", "proxy_app", "gunicorn", "gevent"} & loaded


def test_sdk_calls_run_the_plugins_hooks(upstream, call_log):
    # The enrichment plugin merges the call's tags; the call-log plugin records the call.
    direct(upstream, metadata={"tags": ["from-metadata"]}, extra_body={"tags": ["team:search"]})
    with pytest.raises(dheera_ai.RateLimitError):
        dheera_ai.completion(model="mock/demo", messages=HI, mock_response="dheera_ai.RateLimitError")

    success, failure = call_log(2)
    assert success["provider"] == "openai" and success["deployment"].startswith("sdk-")
    assert success["model"] == "openai/gpt-4o-mini" and success["status"] == 200
    assert success["tags"] == ["team:search", "from-metadata"]
    assert (success["prompt_tokens"], success["completion_tokens"]) == (9, 7)
    assert (failure["model"], failure["status"], failure["error_type"]) == ("mock/demo", 429, "RateLimitError")


def test_a_response_made_through_the_gateway_is_fetched_from_there(upstream):
    made = dheera_ai.responses(model="vertex_ai/gemini-2.0-flash-001", input="Hi", use_dheera_ai_proxy=True,
                               api_base=upstream.url, api_key="sk-gw", metadata={"run": "r-1"})
    assert upstream.last.json["model"] == "vertex_ai/gemini-2.0-flash-001"
    assert upstream.last.json["metadata"] == {"run": "r-1"}

    fetched = asyncio.run(dheera_ai.aget_responses(made.id))
    assert (upstream.last.method, upstream.last.path) == ("GET", "/responses/resp_fake123")
    assert upstream.last.headers["authorization"] == "Bearer sk-gw"
    assert fetched.id == made.id


def test_a_call_is_one_attempt(upstream):
    upstream.fail(429, "Rate limit reached for requests")
    with pytest.raises(dheera_ai.RateLimitError):
        direct(upstream)
    assert upstream.count("/v1/chat/completions") == 1  # not retried: retries and fallbacks are a gateway's
    assert direct(upstream).choices[0].message.content == "Hello from the fake upstream."


def test_an_installed_provider_plugin_serves_sdk_calls(tmp_path):
    """The SDK loads the `dheera_ai` entry-point group as the gateway does: a third party's
    provider, pip-installed, answers `dheera_ai.completion(model="<its name>/...")`."""
    from tests.support.plugin_dist import install_plugin, run_with

    site = install_plugin(tmp_path, "dheera-ai-echo-provider", "dheera_ai_echo_provider", """
        from dheera_ai import hookimpl
        from dheera_ai.providers import Provider
        from dheera_ai.types import Reply

        class Echo(Provider):
            key_params = ()

            def chat_completions(self, call, deployment):
                text = call.body["messages"][-1]["content"]
                return Reply(data={"object": "chat.completion", "model": deployment.model, "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text[::-1]}, "finish_reason": "stop"}]})

        @hookimpl
        def dheera_ai_register_providers(register):
            register("echo", Echo())
    """)
    answer = run_with(site, tmp_path, """
        import sys
        import dheera_ai
        r = dheera_ai.completion(model="echo/backwards", messages=[{"role": "user", "content": "hello"}])
        print(r.model, r.choices[0].message.content, "plugins" in sys.modules)
    """)
    assert answer == "backwards olleh True"  # the built-in plugins came through their entry points too
