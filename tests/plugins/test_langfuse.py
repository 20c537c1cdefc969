"""Langfuse through its OpenTelemetry endpoint: a fake Langfuse (the OTLP receiver at Langfuse's path)
checks the auth, the ingestion-version header, the attribute mapping and the `trace_id` grouping."""

import base64
import json

import pytest

from tests.conftest import MASTER_KEY
from tests.support.fake_upstream import chat_chunks
from tests.support.otlp import OtlpReceiver

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hi"}]}
SEED_METADATA = {"generation_name": "ishaan-test-generation", "generation_id": "gen-id22",
                 "trace_id": "trace-id22", "trace_user_id": "user-id2", "session_id": "session-1"}


@pytest.fixture(autouse=True)
def quick_batches(monkeypatch):
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")


@pytest.fixture
def langfuse():
    receiver = OtlpReceiver(path="/api/public/otel/v1/traces")
    yield receiver
    receiver.close()


def with_langfuse(config, langfuse, key="callbacks", **settings):
    return {**config, "litellm_settings": {key: ["langfuse"]},
            "callback_settings": {"langfuse": {"public_key": "pk-lf-123", "secret_key": "sk-lf-456",
                                               "host": langfuse.url, **settings}}}


def call(gateway, body=CHAT):
    response = gateway.post("/v1/chat/completions", json=body, headers=AUTH)
    response.get_data()
    return response


def generations(langfuse, count):
    return langfuse.wait_for(count, kind="SERVER")


def test_spans_reach_langfuse_with_its_auth_and_header(make_app, base_config, langfuse):
    gateway = make_app(with_langfuse(base_config, langfuse)).test_client()
    call(gateway)

    [generation] = generations(langfuse, 1)
    headers = generation.headers
    assert headers["authorization"] == "Basic " + base64.b64encode(b"pk-lf-123:sk-lf-456").decode()
    assert headers["x-langfuse-ingestion-version"] == "4"
    assert headers["content-type"] == "application/x-protobuf"


def test_the_environment_names_langfuse_as_litellm_does(make_app, base_config, langfuse, monkeypatch):
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-env")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-env")
    monkeypatch.setenv("LANGFUSE_HOST", langfuse.url)
    gateway = make_app({**base_config, "dheera_ai_settings": {"success_callback": ["langfuse"]}}).test_client()
    call(gateway)

    [generation] = generations(langfuse, 1)
    assert generation.headers["authorization"] == "Basic " + base64.b64encode(b"pk-env:sk-env").decode()


def test_a_call_is_a_generation_with_the_seed_metadata_mapped(make_app, base_config, langfuse):
    gateway = make_app(with_langfuse(base_config, langfuse)).test_client()
    response = call(gateway, {**CHAT, "tags": ["prod"], "metadata": {**SEED_METADATA, "tags": ["chat-ui"],
                                                                      "ticket": "T-1", "api_key": "sk-no-123456789"}})

    [generation] = generations(langfuse, 1)
    a = generation.attributes
    assert generation.name == "ishaan-test-generation"
    assert a["langfuse.observation.type"] == "generation"
    assert [s for s in langfuse.spans if s.kind == "CLIENT"] == []  # answered at once: the generation alone
    assert a["langfuse.observation.model.name"] == "gpt-4o-mini-2024-07-18"
    assert json.loads(a["langfuse.observation.usage_details"]) == {"input": 9, "output": 7, "total": 16}
    assert json.loads(a["langfuse.observation.cost_details"]) == {
        "total": float(response.headers["x-dheera-ai-response-cost"])}
    assert a["langfuse.observation.metadata.generation_id"] == "gen-id22"
    assert a["user.id"] == "user-id2"
    assert a["session.id"] == "session-1"
    assert sorted(a["langfuse.trace.tags"]) == ["chat-ui", "prod"]
    assert a["langfuse.observation.metadata.ticket"] == "T-1"
    assert a["langfuse.observation.metadata.trace_id"] == "trace-id22"  # the original id, kept
    assert a["langfuse.observation.metadata.key_alias"] == "master_key"
    assert a["langfuse.observation.metadata.call_id"] == response.headers["x-dheera-ai-call-id"]
    assert "sk-no-123456789" not in json.dumps(a)
    # Content is on by default for Langfuse, as LiteLLM sends it.
    assert json.loads(a["langfuse.observation.input"])[0]["parts"][0]["content"] == "Say hi"
    assert json.loads(a["langfuse.observation.output"])[0]["parts"][0]["content"] == "Hello from the fake upstream."


def test_a_retried_call_shows_its_attempts_as_spans_under_the_generation(make_app, langfuse, upstream, tmp_path):
    config = {"model_list": [
        {"model_name": "primary", "dheera_ai_params": {"model": "openai/gpt-4o", "api_base": upstream.url + "/p/v1",
                                                        "api_key": "sk-a"}},
        {"model_name": "backup", "dheera_ai_params": {"model": "openai/gpt-4o-mini", "api_base": upstream.url + "/b/v1",
                                                       "api_key": "sk-b"}}],
        "router_settings": {"num_retries": 1, "retry_after": 0, "fallbacks": [{"primary": ["backup"]}]},
        "general_settings": {"master_key": MASTER_KEY, "database_url": f"sqlite:///{tmp_path}/s.sqlite3"}}
    upstream.always("/p/", status=503)
    gateway = make_app(with_langfuse(config, langfuse)).test_client()
    assert call(gateway, {**CHAT, "model": "primary"}).status_code == 200

    [generation] = generations(langfuse, 1)
    attempts = sorted(langfuse.wait_for(3, kind="CLIENT"), key=lambda s: s.start_ns)
    assert [s.parent_id for s in attempts] == [generation.span_id] * 3
    assert [s.attributes["langfuse.observation.type"] for s in attempts] == ["span"] * 3  # usage and cost once
    assert [s.failed for s in attempts] == [True, True, False]


def test_calls_sending_one_trace_id_are_one_trace(make_app, base_config, langfuse):
    gateway = make_app(with_langfuse(base_config, langfuse)).test_client()
    for _ in range(3):
        call(gateway, {**CHAT, "metadata": {"trace_id": "trace-id22"}})
    call(gateway, {**CHAT, "metadata": {"trace_id": "another"}})

    found = sorted(generations(langfuse, 4), key=lambda s: s.start_ns)
    assert len({s.trace_id for s in found[:3]}) == 1
    assert found[3].trace_id != found[0].trace_id
    # The mapping is deterministic: a restarted gateway (or another instance) picks the same trace.
    from plugins.observability.tracing import trace_id_for
    assert found[0].trace_id == f"{trace_id_for('trace-id22'):032x}"


def test_a_failure_is_an_error_level_generation(make_app, base_config, langfuse, upstream):
    upstream.always("/v1/", status=400, message="the prompt is rude")
    gateway = make_app(with_langfuse(base_config, langfuse)).test_client()
    assert call(gateway).status_code == 400

    [generation] = generations(langfuse, 1)
    assert generation.attributes["langfuse.observation.level"] == "ERROR"
    assert "the prompt is rude" in generation.attributes["langfuse.observation.status_message"]


def test_content_can_be_turned_off(make_app, base_config, langfuse, upstream):
    upstream.stream(chat_chunks())
    gateway = make_app(with_langfuse(base_config, langfuse, capture_content=False)).test_client()
    call(gateway, {**CHAT, "stream": True})

    spans = langfuse.wait_for(1)
    text = json.dumps([s.attributes for s in spans])
    assert "Say hi" not in text and "Hello" not in text and "stream." not in text
    assert not [k for s in spans for k in s.attributes if k.startswith("gen_ai.") and "messages" in k]


def test_secrets_in_the_messages_are_masked_in_the_content(make_app, base_config, langfuse):
    gateway = make_app(with_langfuse(base_config, langfuse)).test_client()
    messages = [
        {"role": "user", "content": "my key is sk-proj-abcdefghijklmnop, the gateway's sk-upstream-secret"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call-1", "type": "function", "function": {
            "name": "login", "arguments": json.dumps({"api_key": "hunter2-hunter2", "user": "ann"})}}]},
        {"role": "user", "content": [{"type": "text", "text": "Authorization: Bearer tok-0123456789"},
                                     {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]
    call(gateway, {**CHAT, "messages": messages})

    [generation] = generations(langfuse, 1)
    said = generation.attributes["langfuse.observation.input"]
    for secret in ("abcdefghijklmnop", "sk-upstream-secret", "hunter2-hunter2", "tok-0123456789"):
        assert secret not in said
    first, called, parts = json.loads(said)
    assert first["parts"][0]["content"].startswith("my key is sk-proj****")
    assert called["parts"] == [{"type": "tool_call", "id": "call-1", "name": "login",
                                "arguments": called["parts"][0]["arguments"]}]
    assert '"user": "ann"' in called["parts"][0]["arguments"]
    assert [p["type"] for p in parts["parts"]] == ["text", "image_url"]


def test_a_streamed_answer_is_the_generations_output(make_app, base_config, langfuse, upstream):
    upstream.stream(chat_chunks())
    gateway = make_app(with_langfuse(base_config, langfuse)).test_client()
    call(gateway, {**CHAT, "stream": True})

    [generation] = generations(langfuse, 1)
    output = json.loads(generation.attributes["langfuse.observation.output"])
    assert output == [{"role": "assistant", "parts": [{"type": "text", "content": "Hello from the stream."}],
                       "finish_reason": "stop"}]


def test_success_callback_sends_only_answered_calls(make_app, base_config, langfuse, upstream):
    gateway = make_app(with_langfuse(base_config, langfuse, key="success_callback")).test_client()
    upstream.fail(400)
    assert call(gateway).status_code == 400
    assert call(gateway).status_code == 200

    [generation] = generations(langfuse, 1)
    assert generation.status_code != 2
    assert all(not s.failed for s in langfuse.spans)


def test_both_destinations_take_the_same_spans_each_its_own_way(make_app, base_config, langfuse):
    collector = OtlpReceiver()
    try:
        config = with_langfuse(base_config, langfuse)
        config["litellm_settings"] = {"callbacks": ["otel", "langfuse"]}
        config["callback_settings"]["otel"] = {"endpoint": collector.url}
        call(make_app(config).test_client())
        [otel] = collector.wait_for(1, kind="SERVER")
        [generation] = generations(langfuse, 1)
    finally:
        collector.close()
    assert (otel.trace_id, otel.span_id) == (generation.trace_id, generation.span_id)
    assert "langfuse.observation.type" not in otel.attributes
    assert "gen_ai.input.messages" not in otel.attributes  # content stays off for the collector
    assert "langfuse.observation.input" in generation.attributes
