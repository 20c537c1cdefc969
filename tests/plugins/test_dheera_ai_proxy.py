"""Gateway chaining: a `dheera_ai_proxy/` deployment calls the next gateway, tags and metadata included."""

import openai
import pytest

from tests.conftest import MASTER_KEY
from tests.support.engine import answer, make_engine, run
from tests.support.servers import LiveServer

NEXT_KEY = "sk-next-gateway-key"


def client_for(app):
    server = LiveServer(app)
    return server, openai.OpenAI(base_url=server.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)


@pytest.fixture
def chained(make_app, upstream):
    server, client = client_for(make_app({
        "model_list": [{"model_name": "gpt-4o", "dheera_ai_params": {
            "model": "dheera_ai_proxy/openai/gpt-4o", "api_base": upstream.url + "/v1/", "api_key": NEXT_KEY}}],
        "general_settings": {"master_key": MASTER_KEY}}))
    yield client
    server.close()


def test_only_the_first_prefix_is_stripped_and_the_key_is_the_next_gateways(chained, upstream):
    response = chained.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])

    assert response.choices[0].message.content == "Hello from the fake upstream."
    sent = upstream.last
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.headers["authorization"] == f"Bearer {NEXT_KEY}"
    assert sent.json["model"] == "openai/gpt-4o"


def test_tags_and_metadata_are_forwarded(chained, upstream):
    chained.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Hi"}],
        extra_body={"tags": ["team:search"], "metadata": {"trace_id": "t-42"}},
        extra_headers={"x-dheera-ai-tags": "env:prod"})

    assert upstream.last.json["tags"] == ["team:search", "env:prod"]
    assert upstream.last.json["metadata"] == {"trace_id": "t-42"}


def test_a_stream_passes_through(chained, upstream):
    chunks = list(chained.chat.completions.create(model="gpt-4o", stream=True,
                                                  messages=[{"role": "user", "content": "Hi"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from the stream."


def test_base_and_key_come_from_the_environment_when_not_configured(make_app, upstream, monkeypatch):
    monkeypatch.setenv("DHEERA_AI_PROXY_API_BASE", upstream.url + "/v1")
    monkeypatch.setenv("DHEERA_AI_PROXY_API_KEY", "sk-from-env")
    server, client = client_for(make_app({
        "model_list": [{"model_name": "m", "dheera_ai_params": {"model": "dheera_ai_proxy/my-model"}}],
        "general_settings": {"master_key": MASTER_KEY}}))
    try:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}])
    finally:
        server.close()
    assert upstream.last.path == "/v1/chat/completions"
    assert upstream.last.headers["authorization"] == "Bearer sk-from-env"
    assert upstream.last.json["model"] == "my-model"


def test_no_base_anywhere_is_a_clear_error(make_app, monkeypatch):
    monkeypatch.delenv("DHEERA_AI_PROXY_API_BASE", raising=False)
    client = make_app({"model_list": [{"model_name": "m", "dheera_ai_params": {
        "model": "dheera_ai_proxy/x", "api_key": "k"}}], "general_settings": {"master_key": MASTER_KEY}}).test_client()
    response = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER_KEY}"},
                           json={"model": "m", "messages": [{"role": "user", "content": "Hi"}]})
    assert response.status_code == 401
    assert "DHEERA_AI_PROXY_API_BASE" in response.json["error"]["message"]


def test_two_real_gateways_chain_and_the_second_logs_the_first_ones_tags(make_app, call_log):
    # The next gateway serves the mock model under the name the first one forwards.
    next_server = LiveServer(make_app({
        "model_list": [{"model_name": "openai/gpt-4o", "dheera_ai_params": {"model": "mock/demo",
                                                                             "mock_response": "chained!"}}],
        "general_settings": {"master_key": NEXT_KEY}}))
    first_server, client = client_for(make_app({
        "model_list": [{"model_name": "gpt-4o", "dheera_ai_params": {
            "model": "dheera_ai_proxy/openai/gpt-4o", "api_base": next_server.url, "api_key": NEXT_KEY}}],
        "general_settings": {"master_key": MASTER_KEY}}))
    try:
        response = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}],
                                                  extra_body={"tags": ["team:search"]})
        streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="gpt-4o", stream=True, messages=[{"role": "user", "content": "Hi"}]))
    finally:
        first_server.close()
        next_server.close()

    assert response.choices[0].message.content == "chained!" and streamed == "chained!"
    lines = call_log(4)
    next_hop = [line for line in lines if line["model"] == "openai/gpt-4o"]
    assert next_hop and next_hop[0]["tags"] == ["team:search"]


# -- families beyond OpenAI's API (engine level: this branch routes chat only) ---------------------------

@pytest.fixture
def engine(upstream):
    return make_engine([{"model_name": "m", "dheera_ai_params": {
        "model": "dheera_ai_proxy/cohere/rerank-v3.5", "api_base": upstream.url, "api_key": NEXT_KEY}}])


def test_rerank_goes_to_the_next_gateways_rerank_route(engine, upstream):
    ranked = {"id": "r1", "results": [{"index": 0, "relevance_score": 0.9}],
              "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}}}
    upstream.respond(ranked)
    reply = run(engine, "rerank", "m", {"query": "q", "documents": ["a"], "tags": ["t1"]})

    assert answer(reply) == ranked
    assert upstream.last.path == "/rerank"
    assert upstream.last.json == {"query": "q", "documents": ["a"], "model": "cohere/rerank-v3.5", "tags": ["t1"]}
    assert upstream.last.headers["authorization"] == f"Bearer {NEXT_KEY}"


def test_anthropic_messages_go_to_the_next_gateways_messages_route(engine, upstream):
    message = {"id": "msg_1", "type": "message", "role": "assistant", "content": [{"type": "text", "text": "hi"}],
               "model": "x", "stop_reason": "end_turn", "stop_sequence": None,
               "usage": {"input_tokens": 2, "output_tokens": 1}}
    upstream.respond(message)
    reply = run(engine, "anthropic_messages", "m", {"max_tokens": 10, "messages": [{"role": "user", "content": "x"}]})

    assert answer(reply) == message and reply.usage.total_tokens == 3
    assert upstream.last.path == "/v1/messages"
    assert upstream.last.json["model"] == "cohere/rerank-v3.5"
