"""Wildcard model names (`*`, `openai/*`, `team-a/*`) and `model_group_alias`, as LiteLLM configs
write them: which deployment a requested name reaches, what /v1/models lists, what a key may call."""

import json

import openai
import pytest

from dheera_ai.config import ConfigError, build_config
from tests.conftest import MASTER_KEY
from tests.support.fake_upstream import Script
from tests.support.servers import LiveServer

ANTHROPIC_MESSAGE = {"id": "msg_wild", "type": "message", "role": "assistant", "model": "claude-3-5-haiku",
                     "content": [{"type": "text", "text": "from anthropic"}], "stop_reason": "end_turn",
                     "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 2}}


@pytest.fixture
def gateway(make_app, upstream, tmp_path, monkeypatch):
    # `model: "*"` uses each provider's environment: pointed at the fake upstream here.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", upstream.url + "/v1")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-env")
    monkeypatch.setenv("ANTHROPIC_API_BASE", upstream.url)
    upstream.route("/v1/messages", lambda recorded: Script(body=json.dumps(ANTHROPIC_MESSAGE).encode()))
    openai_at = {"api_base": upstream.url + "/v1"}
    config = {"model_list": [
        {"model_name": "gpt-4o", "dheera_ai_params": {"model": "openai/gpt-4o", "api_key": "sk-specific", **openai_at}},
        {"model_name": "openai/*", "dheera_ai_params": {"model": "openai/*", "api_key": "sk-openai-wild", **openai_at}},
        {"model_name": "team-a/*", "dheera_ai_params": {"model": "openai/*", "api_key": "sk-team-a", **openai_at}},
        {"model_name": "*", "litellm_params": {"model": "*"}},
    ], "router_settings": {"model_group_alias": {"gpt-4": "gpt-4o",
                                                 "cheap": {"model": "openai/gpt-4o-mini", "hidden": True}}},
        "general_settings": {"master_key": MASTER_KEY, "database_url": f"sqlite:///{tmp_path}/state.sqlite3"}}
    server = LiveServer(make_app(config))
    yield server
    server.close()


@pytest.fixture
def client(gateway):
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)


@pytest.mark.parametrize("requested,model_sent,key_sent", [
    ("gpt-4o", "gpt-4o", "sk-specific"),                 # a configured name wins over every pattern
    ("openai/gpt-4.1", "gpt-4.1", "sk-openai-wild"),     # openai/* beats * (more specific)
    ("team-a/gpt-4o-mini", "gpt-4o-mini", "sk-team-a"),  # the * of the name fills the * of the model
    ("gpt-4", "gpt-4o", "sk-specific"),                  # an alias reaches its group
    ("cheap", "gpt-4o-mini", "sk-openai-wild"),          # a hidden alias still works, through a pattern
    ("groq/llama-3.1-8b", None, None),                   # the catch-all: groq's own environment (unset here)
])
def test_which_deployment_a_name_reaches(client, upstream, requested, model_sent, key_sent):
    if model_sent is None:
        with pytest.raises(openai.AuthenticationError) as caught:
            client.chat.completions.create(model=requested, messages=[{"role": "user", "content": "Hi"}])
        assert "GROQ_API_KEY" in caught.value.message and upstream.requests == []
        return
    client.chat.completions.create(model=requested, messages=[{"role": "user", "content": "Hi"}])
    assert upstream.last.json["model"] == model_sent
    assert upstream.last.headers["authorization"] == f"Bearer {key_sent}"


def test_the_catch_all_takes_any_provider_with_its_environment_keys(client, upstream):
    answer = client.chat.completions.create(model="anthropic/claude-3-5-haiku",
                                            messages=[{"role": "user", "content": "Hi"}])
    assert answer.choices[0].message.content == "from anthropic"
    assert upstream.last.path == "/v1/messages" and upstream.last.headers["x-api-key"] == "sk-ant-from-env"
    assert upstream.last.json["model"] == "claude-3-5-haiku"


def test_a_name_without_a_known_provider_is_a_400_listing_them(client, upstream):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="nosuchcloud/model-x", messages=[{"role": "user", "content": "Hi"}])
    assert "names no provider" in caught.value.message and "bedrock" in caught.value.message
    assert upstream.requests == []


def test_models_lists_names_aliases_and_wildcards_but_not_hidden_aliases(client):
    listed = [m.id for m in client.models.list()]
    assert sorted(listed) == sorted(["gpt-4o", "gpt-4", "openai/*", "team-a/*", "*"])
    assert client.models.retrieve("openai/gpt-4.1").id == "openai/gpt-4.1"  # any name a pattern serves


def test_a_key_limited_to_a_pattern_may_call_what_it_matches(gateway, client):
    import requests

    created = requests.post(gateway.url + "/key/generate", headers={"Authorization": f"Bearer {MASTER_KEY}"},
                            json={"models": ["openai/*"]}, timeout=10).json()
    limited = openai.OpenAI(base_url=gateway.url + "/v1", api_key=created["key"], max_retries=0, timeout=10)
    limited.chat.completions.create(model="openai/gpt-4.1", messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(openai.AuthenticationError):
        limited.chat.completions.create(model="anthropic/claude-3-5-haiku",
                                        messages=[{"role": "user", "content": "Hi"}])
    assert [m.id for m in limited.models.list()] == ["openai/*"]


def test_an_alias_to_nothing_stops_start_up():
    raw = {"model_list": [{"model_name": "gpt-4o", "dheera_ai_params": {"model": "openai/gpt-4o"}}],
           "router_settings": {"model_group_alias": {"gpt-4": "gpt-5-typo"}}}
    with pytest.raises(ConfigError) as caught:
        build_config(raw, ["openai"])
    assert "model_group_alias" in str(caught.value) and "gpt-5-typo" in str(caught.value)
