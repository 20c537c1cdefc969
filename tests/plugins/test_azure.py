"""Azure OpenAI: Azure's URLs and keys, the Responses API, and its content filter, as Azure documents them."""

import json

import openai
import pytest

from dheera_ai import response_ids
from dheera_ai.errors import AuthenticationError, ContentPolicyViolationError
from dheera_ai.types import Deployment
from plugins.providers.azure import AzureProvider
from tests.conftest import MASTER_KEY
from tests.support.engine import answer, assert_valid_chat_stream, make_engine, run, sse_data, streamed
from tests.support.fake_upstream import chat_completion
from tests.support.openapi import assert_valid
from tests.support.servers import LiveServer


def deployment(**params):
    params.setdefault("api_base", "https://my-res.openai.azure.com")
    model = params.pop("model", "my-gpt4o")
    return Deployment(id="d", model_name="m", provider="azure", model=model, params=params)


# -- URLs and keys --------------------------------------------------------------------------------

@pytest.mark.parametrize("params, operation, url", [
    ({"api_version": "2024-10-21"}, "chat/completions",
     "https://my-res.openai.azure.com/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21"),
    ({"api_base": "https://my-res.openai.azure.com/", "api_version": "2024-10-21"}, "embeddings",
     "https://my-res.openai.azure.com/openai/deployments/my-gpt4o/embeddings?api-version=2024-10-21"),
    ({"api_version": "2025-03-01-preview"}, "audio/transcriptions",
     "https://my-res.openai.azure.com/openai/deployments/my-gpt4o/audio/transcriptions"
     "?api-version=2025-03-01-preview"),
    ({"api_version": "2025-04-01-preview"}, "responses",
     "https://my-res.openai.azure.com/openai/responses?api-version=2025-04-01-preview"),
    ({"api_version": "2025-04-01-preview"}, "responses/resp_1",
     "https://my-res.openai.azure.com/openai/responses/resp_1?api-version=2025-04-01-preview"),
    ({"api_version": "preview"}, "responses", "https://my-res.openai.azure.com/openai/v1/responses?api-version=preview"),
    ({"api_version": "latest"}, "chat/completions",
     "https://my-res.openai.azure.com/openai/v1/chat/completions?api-version=latest"),
    ({"api_version": "v1"}, "chat/completions", "https://my-res.openai.azure.com/openai/v1/chat/completions"),
    ({"api_version": "2024-10-21", "model": "responses/my-o1"}, "chat/completions",
     "https://my-res.openai.azure.com/openai/deployments/my-o1/chat/completions?api-version=2024-10-21"),
])
def test_urls_follow_azures_scheme(params, operation, url):
    assert AzureProvider().url(deployment(**params), operation) == url


def test_base_and_version_fall_back_to_the_environment(monkeypatch):
    monkeypatch.setenv("AZURE_API_BASE", "https://env-res.openai.azure.com/")
    monkeypatch.setenv("AZURE_API_VERSION", "2024-06-01")
    d = Deployment(id="d", model_name="m", provider="azure", model="dep", params={})
    assert AzureProvider().url(d, "chat/completions") == \
        "https://env-res.openai.azure.com/openai/deployments/dep/chat/completions?api-version=2024-06-01"


def test_the_key_goes_as_api_key_and_an_ad_token_as_bearer(monkeypatch):
    monkeypatch.delenv("AZURE_API_KEY", raising=False)
    monkeypatch.delenv("AZURE_AD_TOKEN", raising=False)
    provider = AzureProvider()
    assert provider.auth_headers(deployment(api_key="k1")) == {"api-key": "k1"}
    assert provider.auth_headers(deployment(azure_ad_token="tok")) == {"Authorization": "Bearer tok"}
    monkeypatch.setenv("AZURE_AD_TOKEN", "env-tok")
    assert provider.auth_headers(deployment()) == {"Authorization": "Bearer env-tok"}
    monkeypatch.setenv("AZURE_API_KEY", "env-key")
    assert provider.auth_headers(deployment()) == {"api-key": "env-key"}


def test_no_key_at_all_names_the_variable_to_set(monkeypatch):
    monkeypatch.delenv("AZURE_API_KEY", raising=False)
    monkeypatch.delenv("AZURE_AD_TOKEN", raising=False)
    with pytest.raises(AuthenticationError, match="AZURE_API_KEY"):
        AzureProvider().auth_headers(deployment())


# -- chat through the gateway -----------------------------------------------------------------------

@pytest.fixture
def azure_app(make_app, upstream):
    return make_app({
        "model_list": [
            {"model_name": "gpt-4o", "dheera_ai_params": {
                "model": "azure/my-gpt4o", "api_base": upstream.url + "/", "api_key": "azure-secret-key",
                "api_version": "2024-10-21"}},
            {"model_name": "o1-pro", "dheera_ai_params": {
                "model": "azure/responses/my-o1-pro", "api_base": upstream.url, "api_key": "azure-secret-key",
                "api_version": "2025-04-01-preview"}},
        ],
        "general_settings": {"master_key": MASTER_KEY},
    })


@pytest.fixture
def client(azure_app):
    server = LiveServer(azure_app)
    yield openai.OpenAI(base_url=server.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)
    server.close()


def ask(client, model="gpt-4o", **kwargs):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], **kwargs)


def test_chat_reaches_the_deployment_url_with_the_api_key_header(client, upstream):
    response = ask(client, temperature=0.1)

    assert response.choices[0].message.content == "Hello from the fake upstream."
    sent = upstream.last
    assert sent.method == "POST"
    assert sent.path == "/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21"
    assert sent.headers["api-key"] == "azure-secret-key" and "authorization" not in sent.headers
    assert sent.json["messages"] == [{"role": "user", "content": "Hi"}] and sent.json["temperature"] == 0.1


def test_streamed_chat_is_relayed(client, upstream):
    chunks = list(ask(client, stream=True, stream_options={"include_usage": True}))

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from the stream."
    assert chunks[-1].usage.total_tokens == 13
    assert upstream.last.path.startswith("/openai/deployments/my-gpt4o/chat/completions?")


def test_a_content_filter_refusal_is_a_content_policy_error(client, upstream):
    upstream.respond({"error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
        "type": None, "param": "prompt", "code": "content_filter", "status": 400}}, status=400)
    with pytest.raises(openai.BadRequestError) as exc:
        ask(client)
    assert exc.value.code == "content_filter"
    assert "content management policy" in exc.value.message


def test_a_completion_cut_by_the_filter_is_a_content_policy_error(upstream):
    engine = make_engine([{"model_name": "gpt-4o", "dheera_ai_params": {
        "model": "azure/my-gpt4o", "api_base": upstream.url, "api_key": "k", "api_version": "2024-10-21"}}])
    filtered = chat_completion(content="")
    filtered["choices"][0]["finish_reason"] = "content_filter"
    upstream.respond(filtered)
    with pytest.raises(ContentPolicyViolationError):
        run(engine, "chat_completions", "gpt-4o", {"messages": [{"role": "user", "content": "x"}]})


def test_a_429_keeps_retry_after(client, upstream):
    upstream.fail(429, "Requests to the ChatCompletions_Create Operation have exceeded call rate limit.",
                  headers={"Retry-After": "12"}, code="429")
    with pytest.raises(openai.RateLimitError) as exc:
        ask(client)
    assert exc.value.response.headers["retry-after"] == "12"


# -- azure/responses/<deployment>: chat answered by the Responses API -------------------------------

def response_object(output, status="completed", usage=(11, 5)):
    return {"id": "resp_abc123", "object": "response", "created_at": 1700000000, "status": status,
            "model": "my-o1-pro", "output": output, "error": None, "incomplete_details": None,
            "usage": {"input_tokens": usage[0], "output_tokens": usage[1], "total_tokens": sum(usage),
                      "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens_details": {"reasoning_tokens": 0}}}


def message_item(text):
    return {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def test_chat_via_responses_translates_messages_and_answer(client, upstream):
    upstream.respond(response_object([message_item("Once upon a time.")]))
    response = client.chat.completions.create(model="o1-pro", max_tokens=50, messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "A story"}])

    assert response.choices[0].message.content == "Once upon a time."
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.prompt_tokens == 11 and response.usage.completion_tokens == 5
    sent = upstream.last
    assert sent.path == "/openai/responses?api-version=2025-04-01-preview"
    assert sent.headers["api-key"] == "azure-secret-key"
    assert sent.json["model"] == "my-o1-pro"
    assert sent.json["instructions"] == "Be brief."
    assert sent.json["input"] == [{"type": "message", "role": "user", "content": "A story"}]
    assert sent.json["max_output_tokens"] == 50 and sent.json["store"] is False


def test_chat_via_responses_round_trips_tools(client, upstream):
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    upstream.respond(response_object([{"type": "function_call", "id": "fc_1", "call_id": "call_9",
                                       "name": "weather", "arguments": "{\"city\": \"Oslo\"}",
                                       "status": "completed"}]))
    first = client.chat.completions.create(model="o1-pro", tools=tools,
                                           messages=[{"role": "user", "content": "Weather?"}])
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == ("call_9", "weather",
                                                                                 {"city": "Oslo"})
    assert upstream.last.json["tools"][0]["name"] == "weather"
    assert upstream.last.json["tools"][0]["type"] == "function"

    upstream.respond(response_object([message_item("Sunny.")]))
    client.chat.completions.create(model="o1-pro", tools=tools, messages=[
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": "call_9", "content": "sunny"}])
    items = upstream.last.json["input"]
    assert items[1] == {"type": "function_call", "call_id": "call_9", "name": "weather",
                        "arguments": "{\"city\": \"Oslo\"}"}
    assert items[2] == {"type": "function_call_output", "call_id": "call_9", "output": "sunny"}


def test_chat_via_responses_streams_chunks(client, upstream):
    done = response_object([message_item("Hello there")])
    upstream.stream([
        ("response.created", {"type": "response.created", "sequence_number": 0,
                              "response": dict(done, status="in_progress", output=[])}),
        ("response.output_text.delta", {"type": "response.output_text.delta", "sequence_number": 1,
                                        "item_id": "msg_1", "output_index": 0, "content_index": 0,
                                        "delta": "Hello"}),
        ("response.output_text.delta", {"type": "response.output_text.delta", "sequence_number": 2,
                                        "item_id": "msg_1", "output_index": 0, "content_index": 0,
                                        "delta": " there"}),
        ("response.completed", {"type": "response.completed", "sequence_number": 3, "response": done}),
    ])
    chunks = list(client.chat.completions.create(
        model="o1-pro", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Hi"}]))

    assert upstream.last.json["stream"] is True
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello there"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.total_tokens == 16


# -- the Responses API itself (engine level: this branch routes chat only) --------------------------

@pytest.fixture
def engine(upstream):
    return make_engine([
        {"model_name": "o1-pro", "dheera_ai_params": {"model": "azure/o1-pro", "api_base": upstream.url + "/",
                                                      "api_key": "k", "api_version": "2025-03-01-preview"}},
        {"model_name": "codex-mini", "dheera_ai_params": {"model": "azure/codex-mini", "api_base": upstream.url,
                                                          "api_key": "k", "api_version": "preview"}},
    ])


def test_responses_create_reaches_the_resource_endpoint(engine, upstream):
    upstream.respond(response_object([message_item("A unicorn slept.")]))
    reply = run(engine, "responses", "o1-pro", {"input": "Tell me a story", "max_output_tokens": 100})

    assert answer(reply)["output"][0]["content"][0]["text"] == "A unicorn slept."
    assert reply.usage.prompt_tokens == 11
    assert upstream.last.path == "/openai/responses?api-version=2025-03-01-preview"
    assert upstream.last.json == {"input": "Tell me a story", "max_output_tokens": 100, "model": "o1-pro"}


def test_responses_on_the_v1_preview_api_put_the_model_in_the_body(engine, upstream):
    upstream.respond(response_object([message_item("ok")]))
    run(engine, "responses", "codex-mini", {"input": "Hi"})
    assert upstream.last.path == "/openai/v1/responses?api-version=preview"
    assert upstream.last.json["model"] == "codex-mini"


def test_streamed_responses_are_relayed_event_by_event(engine, upstream):
    done = response_object([message_item("Hi")])
    events = [("response.created", {"type": "response.created", "sequence_number": 0, "response": done}),
              ("response.output_text.delta", {"type": "response.output_text.delta", "sequence_number": 1,
                                              "delta": "Hi"}),
              ("response.completed", {"type": "response.completed", "sequence_number": 2, "response": done})]
    upstream.stream(events)
    reply = run(engine, "responses", "o1-pro", {"input": "Hi", "stream": True})
    raw = streamed(reply)

    assert raw.count(b"event: ") == 3 and b"event: response.completed\n" in raw
    assert [d["type"] for d in sse_data(raw)] == ["response.created", "response.output_text.delta",
                                                  "response.completed"]
    assert reply.usage.total_tokens == 16


@pytest.mark.parametrize("call_type, method, path", [
    ("responses_get", "GET", "/openai/responses/resp_abc123?api-version=2025-03-01-preview"),
    ("responses_delete", "DELETE", "/openai/responses/resp_abc123?api-version=2025-03-01-preview"),
    ("responses_input_items", "GET", "/openai/responses/resp_abc123/input_items?api-version=2025-03-01-preview"),
])
def test_a_response_is_read_and_deleted_by_id_on_the_same_resource(engine, upstream, call_type, method, path):
    upstream.respond({"id": "resp_abc123", "object": "response", "deleted": True})
    reply = run(engine, call_type, "o1-pro", {"response_id": "resp_abc123"})

    # The client gets an id that routes follow-ups back here, and that holds the upstream's id.
    deployment = engine.router.groups["o1-pro"].deployments[0]
    assert response_ids.decode(answer(reply)["id"]) == (deployment.id, "resp_abc123")
    assert (upstream.last.method, upstream.last.path) == (method, path)
    assert upstream.last.headers["api-key"] == "k"


def test_chat_via_responses_answers_match_openais_spec(upstream):
    engine = make_engine([{"model_name": "o1-pro", "dheera_ai_params": {
        "model": "azure/responses/my-o1-pro", "api_base": upstream.url, "api_key": "k"}}])
    upstream.respond(response_object([message_item("Hi")]))
    assert_valid("CreateChatCompletionResponse", answer(run(engine, "chat_completions", "o1-pro", {
        "messages": [{"role": "user", "content": "x"}]})))
    done = response_object([message_item("Hi")])
    upstream.stream([("response.created", {"type": "response.created", "response": done}),
                     ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "Hi"}),
                     ("response.completed", {"type": "response.completed", "response": done})])
    chunks = assert_valid_chat_stream(streamed(run(engine, "chat_completions", "o1-pro", {
        "messages": [{"role": "user", "content": "x"}], "stream": True, "stream_options": {"include_usage": True}})))
    assert chunks[-1]["usage"]["total_tokens"] == 16


def test_a_response_cut_by_the_content_filter_is_a_content_policy_error(upstream):
    engine = make_engine([{"model_name": "o1-pro", "dheera_ai_params": {
        "model": "azure/responses/my-o1-pro", "api_base": upstream.url, "api_key": "k"}}])
    cut = dict(response_object([message_item("")], status="incomplete"),
               incomplete_details={"reason": "content_filter"})
    upstream.respond(cut)
    with pytest.raises(ContentPolicyViolationError):
        run(engine, "chat_completions", "o1-pro", {"messages": [{"role": "user", "content": "x"}]})
