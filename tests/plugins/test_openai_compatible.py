"""The OpenAI-compatible family: one table of addresses, keys and known limits over the openai provider."""

import openai
import pytest

from dheera_ai.errors import AuthenticationError
from dheera_ai.types import Deployment
from plugins.providers.openai import OpenAIProvider
from plugins.providers.openai_compatible import TABLE, OpenAICompatibleProvider
from tests.conftest import MASTER_KEY
from tests.support.servers import LiveServer

DEFAULTS = {
    "groq": ("https://api.groq.com/openai/v1/chat/completions", "GROQ_API_KEY"),
    "together_ai": ("https://api.together.xyz/v1/chat/completions", "TOGETHER_API_KEY"),
    "deepseek": ("https://api.deepseek.com/v1/chat/completions", "DEEPSEEK_API_KEY"),
    "mistral": ("https://api.mistral.ai/v1/chat/completions", "MISTRAL_API_KEY"),
    "fireworks_ai": ("https://api.fireworks.ai/inference/v1/chat/completions", "FIREWORKS_API_KEY"),
    "openrouter": ("https://openrouter.ai/api/v1/chat/completions", "OPENROUTER_API_KEY"),
    "perplexity": ("https://api.perplexity.ai/chat/completions", "PERPLEXITYAI_API_KEY"),
    "xai": ("https://api.x.ai/v1/chat/completions", "XAI_API_KEY"),
    "deepinfra": ("https://api.deepinfra.com/v1/openai/chat/completions", "DEEPINFRA_API_KEY"),
    "cerebras": ("https://api.cerebras.ai/v1/chat/completions", "CEREBRAS_API_KEY"),
    "ollama": ("http://localhost:11434/v1/chat/completions", "OLLAMA_API_KEY"),
    "lm_studio": ("http://localhost:1234/v1/chat/completions", "LM_STUDIO_API_KEY"),
}
SPECS = {spec.name: spec for spec in TABLE}


def deployment(provider, **params):
    return Deployment(id="d", model_name="m", provider=provider, model="some-model", params=params)


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_each_provider_has_its_documented_address_and_key_variable(name, monkeypatch):
    url, key_env = DEFAULTS[name]
    monkeypatch.setenv(key_env, "key-" + name)
    provider = OpenAICompatibleProvider(SPECS[name])

    assert isinstance(provider, OpenAIProvider)
    assert provider.url(deployment(name), "chat/completions") == url
    assert provider.auth_headers(deployment(name)) == {"Authorization": f"Bearer key-{name}"}


def test_the_keys_other_names_are_accepted_the_main_one_first(monkeypatch):
    monkeypatch.delenv("TOGETHER_API_KEY", raising=False)
    monkeypatch.setenv("TOGETHERAI_API_KEY", "litellm-spelling")
    provider = OpenAICompatibleProvider(SPECS["together_ai"])
    assert provider.auth_headers(deployment("together_ai")) == {"Authorization": "Bearer litellm-spelling"}
    monkeypatch.setenv("TOGETHER_API_KEY", "main")
    assert provider.auth_headers(deployment("together_ai")) == {"Authorization": "Bearer main"}


def test_a_hosted_server_without_an_address_says_which_variable_to_set(monkeypatch):
    monkeypatch.delenv("HOSTED_VLLM_API_BASE", raising=False)
    with pytest.raises(AuthenticationError, match="HOSTED_VLLM_API_BASE"):
        OpenAICompatibleProvider(SPECS["hosted_vllm"]).url(deployment("hosted_vllm"), "chat/completions")


def test_a_hosted_key_is_required_but_a_local_server_goes_without(monkeypatch):
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    with pytest.raises(AuthenticationError, match="GROQ_API_KEY"):
        OpenAICompatibleProvider(SPECS["groq"]).auth_headers(deployment("groq"))
    assert OpenAICompatibleProvider(SPECS["ollama"]).auth_headers(deployment("ollama")) == {}


# -- through the gateway ------------------------------------------------------------------------------

def gateway(make_app, upstream, provider="groq", settings=None, **params):
    config = {"model_list": [{"model_name": "fast", "dheera_ai_params": {
        "model": f"{provider}/llama-3.3-70b-versatile", "api_base": upstream.url + "/openai/v1",
        "api_key": "gsk_secret", **params}}], "general_settings": {"master_key": MASTER_KEY}}
    if settings:
        config["dheera_ai_settings"] = settings
    server = LiveServer(make_app(config))
    return server, openai.OpenAI(base_url=server.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)


@pytest.fixture
def servers():
    started = []
    yield started
    for server in started:
        server.close()


def ask(client, **kwargs):
    return client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "Hi"}], **kwargs)


def test_chat_reaches_the_provider_as_openai_would_send_it(make_app, upstream, servers):
    server, client = gateway(make_app, upstream)
    servers.append(server)
    assert ask(client).choices[0].message.content == "Hello from the fake upstream."
    chunks = list(ask(client, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from the stream."

    sent = upstream.last
    assert (sent.method, sent.path) == ("POST", "/openai/v1/chat/completions")
    assert sent.headers["authorization"] == "Bearer gsk_secret"
    assert sent.json["model"] == "llama-3.3-70b-versatile"


def test_a_parameter_the_provider_rejects_is_a_400_naming_it(make_app, upstream, servers):
    server, client = gateway(make_app, upstream)
    servers.append(server)
    with pytest.raises(openai.BadRequestError) as exc:
        ask(client, logit_bias={"1": 5})
    assert exc.value.param == "logit_bias" and "groq" in exc.value.message
    assert upstream.requests == []
    # An explicit default is not a rejected value.
    ask(client, n=1, logprobs=False)
    assert upstream.last.json["n"] == 1


def test_drop_params_drops_what_the_provider_rejects(make_app, upstream, servers):
    server, client = gateway(make_app, upstream, settings={"drop_params": True})
    servers.append(server)
    ask(client, logit_bias={"1": 5}, n=2, temperature=0.1)
    assert "logit_bias" not in upstream.last.json and "n" not in upstream.last.json
    assert upstream.last.json["temperature"] == 0.1


def test_drop_params_per_deployment_overrides_the_setting(make_app, upstream, servers):
    server, client = gateway(make_app, upstream, drop_params=True)
    servers.append(server)
    ask(client, top_logprobs=3)
    assert "top_logprobs" not in upstream.last.json

    server, client = gateway(make_app, upstream, settings={"drop_params": True}, drop_params=False)
    servers.append(server)
    with pytest.raises(openai.BadRequestError):
        ask(client, top_logprobs=3)


def test_upstream_errors_keep_their_status_and_message(make_app, upstream, servers):
    server, client = gateway(make_app, upstream, provider="cerebras")
    servers.append(server)
    upstream.fail(429, "Tokens per minute limit exceeded", headers={"Retry-After": "3"}, code="rate_limit_exceeded")
    with pytest.raises(openai.RateLimitError) as exc:
        ask(client)
    assert exc.value.response.headers["retry-after"] == "3" and "Tokens per minute" in exc.value.message
