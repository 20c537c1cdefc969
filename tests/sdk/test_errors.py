"""Errors: typed exceptions named as the openai SDK's, carrying status, provider and message,
whether the provider answered them directly or a gateway (or a chain of gateways) sent them back."""

import asyncio

import pytest

import dheera_ai
from tests.sdk.conftest import GATEWAY_KEY
from tests.support.fake_upstream import chat_chunks, chat_completion, response_events
from tests.support.servers import free_port

HI = [{"role": "user", "content": "Hi"}]


def ask(upstream, **kwargs):
    return dheera_ai.completion(model="openai/gpt-4o-mini", messages=HI, api_base=upstream.url + "/v1",
                                api_key="sk-upstream-secret", **kwargs)


@pytest.mark.parametrize("status, code, message, cls", [
    (401, "invalid_api_key", "Incorrect API key provided", dheera_ai.AuthenticationError),
    (403, None, "You are not allowed to use this model", dheera_ai.PermissionDeniedError),
    (404, "model_not_found", "The model `gpt-5o` does not exist", dheera_ai.NotFoundError),
    (429, "rate_limit_exceeded", "Rate limit reached for requests", dheera_ai.RateLimitError),
    (400, "context_length_exceeded", "This model's maximum context length is 128000 tokens",
     dheera_ai.ContextWindowExceededError),
    (400, "content_policy_violation", "Your request was rejected by our safety system",
     dheera_ai.ContentPolicyViolationError),
    (400, None, "Invalid value for 'temperature'", dheera_ai.BadRequestError),
    (503, None, "The engine is currently overloaded", dheera_ai.ServiceUnavailableError),
])
def test_a_providers_error_is_its_typed_exception(upstream, status, code, message, cls):
    upstream.fail(status, message, code=code)
    with pytest.raises(dheera_ai.DheeraAIError) as exc:
        ask(upstream)

    assert type(exc.value) is cls
    assert exc.value.status_code == exc.value.status == status
    assert exc.value.provider == "openai"
    assert message in exc.value.message and message in str(exc.value)


def test_the_subclasses_are_still_bad_requests(upstream):
    upstream.fail(400, "maximum context length exceeded", code="context_length_exceeded")
    with pytest.raises(dheera_ai.BadRequestError):
        ask(upstream)


def test_a_rate_limit_says_when_to_retry(upstream):
    upstream.fail(429, "slow down", headers={"Retry-After": "7"})
    with pytest.raises(dheera_ai.RateLimitError) as exc:
        ask(upstream)
    assert exc.value.headers["Retry-After"] == "7"


def test_a_slow_provider_is_a_timeout(upstream):
    upstream.respond(chat_completion(), delay=1.0)
    with pytest.raises(dheera_ai.Timeout) as exc:
        ask(upstream, timeout=0.2)
    assert exc.value.status_code == 408 and exc.value.provider == "openai"


def test_an_unreachable_provider_is_a_connection_error():
    with pytest.raises(dheera_ai.APIConnectionError) as exc:
        dheera_ai.completion(model="openai/gpt-4o-mini", messages=HI, api_key="k",
                             api_base=f"http://127.0.0.1:{free_port()}/v1")
    assert exc.value.provider == "openai"


def test_a_stream_that_breaks_off_raises_while_iterating(upstream):
    upstream.stream(chat_chunks()[:3], truncate=True)
    stream = ask(upstream, stream=True)
    received = []
    with pytest.raises(dheera_ai.APIConnectionError, match="broke off"):
        for chunk in stream:
            received.append(chunk)
    assert [c.choices[0].delta.content for c in received] == ["", "Hello", " from"]


def test_the_async_functions_raise_the_same_errors(upstream):
    upstream.fail(429, "Rate limit reached for requests")
    with pytest.raises(dheera_ai.RateLimitError):
        asyncio.run(dheera_ai.acompletion(model="openai/gpt-4o-mini", messages=HI, api_base=upstream.url + "/v1",
                                          api_key="k"))


def test_a_mock_models_scripted_error():
    with pytest.raises(dheera_ai.RateLimitError) as exc:
        dheera_ai.completion(model="mock/demo", messages=HI, mock_response="dheera_ai.RateLimitError")
    assert exc.value.provider == "mock"


# -- mistakes caught before anything is sent -------------------------------------------------------

def test_an_unknown_provider_names_the_known_ones():
    with pytest.raises(dheera_ai.BadRequestError, match="unknown provider 'opnai'.*did you mean 'openai'") as exc:
        dheera_ai.completion(model="opnai/gpt-4o", messages=HI)
    assert exc.value.param == "model"


def test_a_gateway_model_without_a_gateway_says_how_to_give_one():
    with pytest.raises(dheera_ai.BadRequestError, match="DHEERA_AI_PROXY_API_BASE") as exc:
        dheera_ai.completion(model="dheera_ai_proxy/m", messages=HI)
    assert exc.value.param == "api_base"
    with pytest.raises(dheera_ai.AuthenticationError, match="DHEERA_AI_PROXY_API_KEY"):
        dheera_ai.completion(model="dheera_ai_proxy/m", messages=HI, api_base="http://127.0.0.1:9")


def test_a_family_the_provider_lacks():
    with pytest.raises(dheera_ai.BadRequestError, match="does not support rerank") as exc:
        dheera_ai.rerank(model="gemini/gemini-2.0-flash", query="q", documents=["a"], api_key="k")
    assert exc.value.provider == "gemini"


# -- errors a gateway sent back keep their type ---------------------------------------------------

def via_gateway(gateway, model="dheera_ai_proxy/demo", **kwargs):
    return dheera_ai.completion(model=model, messages=HI, api_base=gateway.url, api_key=GATEWAY_KEY, **kwargs)


@pytest.mark.parametrize("raised_there", [
    "RateLimitError", "ContextWindowExceededError", "ContentPolicyViolationError", "APIConnectionError", "Timeout",
    "AuthenticationError", "NotFoundError", "ServiceUnavailableError",
])
def test_a_gateways_error_keeps_its_class(gateway, raised_there):
    # The gateway's mock model raises the named error; the SDK gets the same class back.
    with pytest.raises(dheera_ai.DheeraAIError) as exc:
        via_gateway(gateway, extra_body={"mock_response": f"dheera_ai.{raised_there}"})

    assert type(exc.value).__name__ == raised_there
    assert exc.value.provider == "dheera_ai_proxy"
    assert f"mock: {raised_there} raised on request" in exc.value.message


def test_the_gateways_own_refusals(gateway):
    with pytest.raises(dheera_ai.AuthenticationError) as exc:
        dheera_ai.completion(model="dheera_ai_proxy/demo", messages=HI, api_base=gateway.url, api_key="sk-wrong-key")
    assert exc.value.status_code == 401
    with pytest.raises(dheera_ai.BadRequestError, match="Invalid model name 'no-such-model'"):
        via_gateway(gateway, model="dheera_ai_proxy/no-such-model")


def test_a_providers_context_window_error_behind_the_gateway(gateway, upstream):
    upstream.fail(400, "This model's maximum context length is 128000 tokens", code="context_length_exceeded")
    with pytest.raises(dheera_ai.ContextWindowExceededError, match="maximum context length"):
        via_gateway(gateway, model="dheera_ai_proxy/your-model-name")


def test_a_bare_model_at_a_gateways_address_gets_typed_errors_too(gateway, upstream):
    upstream.fail(400, "This model's maximum context length is 8192 tokens", code="context_length_exceeded")
    with pytest.raises(dheera_ai.ContextWindowExceededError) as exc:
        dheera_ai.completion(model="gpt-4", messages=HI, api_base=gateway.url, api_key=GATEWAY_KEY)
    assert exc.value.provider == "openai"  # a bare gpt-4 at an api_base: an OpenAI-compatible server


def test_a_chained_gateways_context_window_error_stays_one(live_app, tmp_path):
    # SDK -> first gateway -> second gateway, whose model raises; the message names no context
    # length, so only the error's code carries its class across both hops.
    second = live_app({
        "model_list": [{"model_name": "demo", "dheera_ai_params": {
            "model": "mock/demo", "mock_response": "dheera_ai.ContextWindowExceededError"}}],
        "general_settings": {"master_key": GATEWAY_KEY, "database_url": f"sqlite:///{tmp_path}/second.sqlite3"}})
    first = live_app({
        "model_list": [{"model_name": "chained", "dheera_ai_params": {
            "model": "dheera_ai_proxy/demo", "api_base": second.url, "api_key": GATEWAY_KEY}}],
        "general_settings": {"master_key": GATEWAY_KEY, "database_url": f"sqlite:///{tmp_path}/first.sqlite3"}})
    with pytest.raises(dheera_ai.ContextWindowExceededError) as exc:
        via_gateway(first, model="dheera_ai_proxy/chained")
    assert "mock: ContextWindowExceededError raised on request" in exc.value.message


def test_an_error_in_a_gateways_stream_is_raised_with_its_class(gateway, upstream):
    upstream.stream(chat_chunks()[:3], truncate=True)
    stream = via_gateway(gateway, model="dheera_ai_proxy/your-model-name", stream=True)
    with pytest.raises(dheera_ai.APIConnectionError, match="broke off"):
        list(stream)


def test_an_error_event_in_a_responses_stream_is_raised(upstream):
    upstream.stream([*response_events()[:2],
                     ("error", {"type": "error", "code": "context_length_exceeded", "param": None,
                                "message": "Your input exceeds the context window of this model.",
                                "sequence_number": 2})])
    stream = dheera_ai.responses(model="openai/gpt-4o-mini", input="Hi", stream=True, api_base=upstream.url + "/v1",
                                 api_key="k")
    events = []
    with pytest.raises(dheera_ai.ContextWindowExceededError, match="exceeds the context window") as exc:
        for event in stream:
            events.append(event)
    assert [e.type for e in events] == ["response.created", "response.output_item.added"]
    assert exc.value.provider == "openai"
