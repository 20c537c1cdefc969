"""`dheera_ai.success_callback` / `failure_callback`: plain callables, as LiteLLM users write them."""

import asyncio
import datetime

import pytest

import dheera_ai

HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def heard(monkeypatch):
    """What the callbacks were called with: (which, kwargs, completion_response, start_time, end_time)."""
    calls = []

    def on_success(kwargs, completion_response, start_time, end_time):
        calls.append(("success", kwargs, completion_response, start_time, end_time))

    def on_failure(kwargs, completion_response, start_time, end_time):
        calls.append(("failure", kwargs, completion_response, start_time, end_time))

    monkeypatch.setattr(dheera_ai, "success_callback", [on_success])
    monkeypatch.setattr(dheera_ai, "failure_callback", [on_failure])
    return calls


def direct(upstream, **kwargs):
    return {"model": "openai/gpt-4o-mini", "messages": HI, "api_base": upstream.url + "/v1",
            "api_key": "sk-upstream-secret", **kwargs}


def test_a_success_callback_gets_the_call_its_response_and_times(upstream, heard):
    response = dheera_ai.completion(**direct(upstream), metadata={"run": "r-1"}, temperature=0.2)

    [(which, kwargs, completion_response, start_time, end_time)] = heard
    assert which == "success" and completion_response is response
    assert isinstance(start_time, datetime.datetime) and start_time <= end_time
    assert kwargs["model"] == "openai/gpt-4o-mini" and kwargs["messages"] == HI
    assert kwargs["response_cost"] == response.response_cost > 0
    assert kwargs["litellm_call_id"] == response._hidden_params["call_id"]
    assert kwargs["metadata"] == {"run": "r-1"}
    assert kwargs["optional_params"]["temperature"] == 0.2
    assert kwargs["custom_llm_provider"] == "openai" and kwargs["stream"] is False
    assert "sk-upstream-secret" not in repr(kwargs)


def test_a_failure_callback_gets_the_exception(upstream, heard):
    upstream.fail(429)

    with pytest.raises(dheera_ai.RateLimitError) as raised:
        dheera_ai.completion(**direct(upstream))

    [(which, kwargs, completion_response, _, _)] = heard
    assert which == "failure" and completion_response is None
    assert kwargs["exception"] is raised.value


def test_a_call_refused_before_it_is_sent_is_a_failure_too(heard):
    with pytest.raises(dheera_ai.BadRequestError):
        dheera_ai.completion(model="opnai/gpt-4o", messages=HI)
    assert [h[0] for h in heard] == ["failure"]


def test_a_stream_is_reported_once_it_has_ended(upstream, heard):
    stream = dheera_ai.completion(**direct(upstream), stream=True)
    next(stream)
    assert heard == []

    list(stream)

    [(which, kwargs, completion_response, _, _)] = heard
    assert which == "success" and completion_response is stream
    assert kwargs["stream"] is True and stream.usage.total_tokens == 13


def test_an_error_inside_a_stream_is_a_failure(upstream, heard):
    first = {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "a"}}]}
    upstream.stream([first, {"error": {"message": "overloaded", "type": "server_error"}}])

    with pytest.raises(dheera_ai.DheeraAIError):
        list(dheera_ai.completion(**direct(upstream), stream=True))
    assert [h[0] for h in heard] == ["failure"]


def test_a_callback_that_raises_changes_nothing(upstream, monkeypatch, caplog):
    def broken(*_):
        raise ValueError("my bug")

    monkeypatch.setattr(dheera_ai, "success_callback", [broken, "langfuse"])

    assert dheera_ai.completion(**direct(upstream)).choices
    assert "my bug" in caplog.text


def test_async_calls_and_async_callbacks(upstream, monkeypatch):
    seen = []

    async def on_success(kwargs, completion_response, start_time, end_time):
        await asyncio.sleep(0)
        seen.append(kwargs["call_type"])

    monkeypatch.setattr(dheera_ai, "success_callback", [on_success])

    async def main():
        await dheera_ai.acompletion(**direct(upstream))
        await dheera_ai.aembedding(model="openai/text-embedding-3-small", input="hi", api_base=upstream.url + "/v1",
                                   api_key="sk-upstream-secret")
    asyncio.run(main())
    dheera_ai.completion(**direct(upstream))

    assert seen == ["chat_completions", "embeddings", "chat_completions"]


def test_a_routers_calls_are_reported(upstream, heard):
    router = dheera_ai.Router(model_list=[{"model_name": "gpt", "litellm_params": {
        "model": "openai/gpt-4o-mini", "api_base": upstream.url + "/v1", "api_key": "sk-upstream-secret"}}])

    router.completion(model="gpt", messages=HI)

    [(which, kwargs, _, _, _)] = heard
    assert which == "success" and kwargs["model"] == "gpt" and kwargs["api_base"] == upstream.url + "/v1"
