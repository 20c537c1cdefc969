"""`dheera_ai.Router` and per-call routing: the gateway's router (retries, fallbacks, cooldowns,
timeouts) in the application's process, against two fake deployments on 127.0.0.1."""

import asyncio

import pytest

import dheera_ai
from dheera_ai.config import ConfigError
from tests.support.fake_upstream import FakeUpstream, chat_completion

HI = [{"role": "user", "content": "Hi"}]
CHAT = "/v1/chat/completions"


@pytest.fixture
def second():
    """A second fake upstream: another deployment of the same model, or a fallback."""
    server = FakeUpstream()
    yield server
    server.close()


def entry(name, upstream, key="sk-upstream-secret", **params):
    return {"model_name": name, "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": upstream.url + "/v1",
                                                   "api_key": key, **params}}


def test_a_litellm_users_router_code_runs_unchanged(upstream):
    import dheera_ai as litellm

    router = litellm.Router(model_list=[{"model_name": "gpt", "litellm_params": {
        "model": "openai/x", "api_base": upstream.url + "/v1", "api_key": "sk-upstream-secret"}}])
    response = router.completion(model="gpt", messages=HI)

    assert response.choices[0].message.content == chat_completion()["choices"][0]["message"]["content"]
    assert upstream.last.json["model"] == "x"  # the deployment's model, not the group name
    assert upstream.last.headers["authorization"] == "Bearer sk-upstream-secret"
    assert response._hidden_params["custom_llm_provider"] == "openai"
    assert response._hidden_params["api_base"] == upstream.url + "/v1"


def test_os_environ_values_are_read_from_the_environment(upstream, monkeypatch):
    monkeypatch.setenv("MY_UPSTREAM_KEY", "sk-from-the-environment")
    router = dheera_ai.Router(model_list=[entry("gpt", upstream, key="os.environ/MY_UPSTREAM_KEY")])

    router.completion(model="gpt", messages=HI)

    assert upstream.last.headers["authorization"] == "Bearer sk-from-the-environment"


def test_a_bad_model_list_is_refused_naming_the_field(upstream):
    with pytest.raises(ConfigError) as bad_provider:
        dheera_ai.Router(model_list=[{"model_name": "gpt", "litellm_params": {"model": "opnai/gpt-4o"}}])
    assert "model_list[0].litellm_params.model: unknown provider 'opnai' (did you mean 'openai'?)" in str(
        bad_provider.value)

    with pytest.raises(dheera_ai.ConfigError) as bad_number:
        dheera_ai.Router(model_list=[entry("gpt", upstream), entry("gpt", upstream, rpm="lots")])
    assert bad_number.value.problems == ["model_list[1].litellm_params.rpm: not a whole number: 'lots'"]


def test_bad_router_settings_are_refused_naming_the_setting(upstream):
    with pytest.raises(ConfigError) as unknown_group:
        dheera_ai.Router(model_list=[entry("gpt", upstream)], fallbacks=[{"gpt": ["gtp-backup"]}])
    assert "router_settings.fallbacks: unknown model group 'gtp-backup'" in str(unknown_group.value)

    with pytest.raises(ConfigError) as strategy:
        dheera_ai.Router(model_list=[entry("gpt", upstream)], routing_strategy="fastest-please")
    assert "router_settings.routing_strategy" in str(strategy.value)


def test_an_unknown_model_group_names_the_valid_ones(upstream):
    router = dheera_ai.Router(model_list=[entry("gpt", upstream), entry("embedder", upstream)])

    with pytest.raises(dheera_ai.BadRequestError, match="Invalid model name 'gtp'. Valid models: embedder, gpt"):
        router.completion(model="gtp", messages=HI)


def test_a_transient_failure_is_retried_num_retries_times(upstream):
    router = dheera_ai.Router(model_list=[entry("gpt", upstream)], num_retries=2, retry_after=0)
    upstream.fail(500)
    upstream.fail(503)

    response = router.completion(model="gpt", messages=HI)

    assert response.choices[0].message.content
    assert upstream.count(CHAT) == 3


def test_without_retries_the_failure_is_raised_as_its_error_class(upstream):
    router = dheera_ai.Router(model_list=[entry("gpt", upstream)])
    upstream.fail(429, headers={"Retry-After": "7"})

    with pytest.raises(dheera_ai.RateLimitError) as raised:
        router.completion(model="gpt", messages=HI)
    assert raised.value.headers["Retry-After"] == "7"
    assert upstream.count(CHAT) == 1


def test_retry_policy_sets_retries_per_kind_of_error(upstream):
    router = dheera_ai.Router(model_list=[entry("gpt", upstream)], num_retries=3, retry_after=0,
                              retry_policy={"InternalServerErrorRetries": 0, "AuthenticationErrorRetries": 1})
    upstream.fail(500)
    with pytest.raises(dheera_ai.InternalServerError):
        router.completion(model="gpt", messages=HI)
    assert upstream.count(CHAT) == 1

    upstream.fail(401)
    assert router.completion(model="gpt", messages=HI).choices
    assert upstream.count(CHAT) == 3


def test_a_failing_group_falls_back_to_the_next(upstream, second):
    router = dheera_ai.Router(model_list=[entry("gpt", upstream), entry("gpt-backup", second)],
                              fallbacks=[{"gpt": ["gpt-backup"]}])
    upstream.always(CHAT, status=500)

    response = router.completion(model="gpt", messages=HI)

    assert response._hidden_params["api_base"] == second.url + "/v1"
    assert (upstream.count(CHAT), second.count(CHAT)) == (1, 1)


def test_a_context_window_error_falls_back_to_its_own_list(upstream, second):
    router = dheera_ai.Router(model_list=[entry("small", upstream), entry("large", second)],
                              context_window_fallbacks=[{"small": ["large"]}])
    upstream.fail(400, message="This model's maximum context length is 8192 tokens", code="context_length_exceeded")

    response = router.completion(model="small", messages=HI)

    assert response._hidden_params["api_base"] == second.url + "/v1"
    # A plain bad request does not fall back: another model would refuse it too.
    upstream.fail(400, message="messages: required")
    with pytest.raises(dheera_ai.BadRequestError):
        router.completion(model="small", messages=HI)
    assert second.count(CHAT) == 1


def test_a_deployment_that_keeps_failing_cools_down_after_allowed_fails(upstream, second):
    router = dheera_ai.Router(model_list=[entry("gpt", upstream), entry("gpt", second)], num_retries=1,
                              retry_after=0, allowed_fails=2, cooldown_time=60)
    upstream.always(CHAT, status=500)

    answered_by = {router.completion(model="gpt", messages=HI)._hidden_params["api_base"] for _ in range(30)}

    assert answered_by == {second.url + "/v1"}  # every call answered, by the healthy one (after a retry)
    assert upstream.count(CHAT) == 2  # it failed twice, then rested for the remaining calls
    assert second.count(CHAT) == 30


def test_cooldowns_are_per_router(upstream, second):
    model_list = [entry("gpt", upstream), entry("gpt", second)]
    cooled = dheera_ai.Router(model_list=model_list, num_retries=1, retry_after=0, allowed_fails=1, cooldown_time=60)
    upstream.always(CHAT, status=500)
    for _ in range(10):
        cooled.completion(model="gpt", messages=HI)
    failed_before = upstream.count(CHAT)
    assert failed_before == 1

    fresh = dheera_ai.Router(model_list=model_list, num_retries=1, retry_after=0)
    for _ in range(20):
        fresh.completion(model="gpt", messages=HI)
    assert upstream.count(CHAT) > failed_before  # the new router has not seen the failure


def test_a_router_timeout_bounds_each_attempt_and_falls_back(upstream, second):
    router = dheera_ai.Router(model_list=[entry("gpt", upstream), entry("gpt-backup", second)], timeout=0.3,
                              fallbacks=[{"gpt": ["gpt-backup"]}])
    upstream.respond(chat_completion(), delay=3)

    response = router.completion(model="gpt", messages=HI)

    assert response._hidden_params["api_base"] == second.url + "/v1"
    assert router.settings["timeout"] == 0.3

    upstream.respond(chat_completion(), delay=3)
    only = dheera_ai.Router(model_list=[entry("gpt", upstream)], timeout=0.3)
    with pytest.raises(dheera_ai.Timeout):
        only.completion(model="gpt", messages=HI)


def test_streams_are_iterators_and_async_iterators(upstream):
    router = dheera_ai.Router(model_list=[entry("gpt", upstream)])

    text = "".join(c.choices[0].delta.content or "" for c in router.completion(model="gpt", messages=HI, stream=True)
                   if c.choices)

    async def streamed():
        stream = await router.acompletion(model="gpt", messages=HI, stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert text == asyncio.run(streamed()) == "Hello from the stream."


def test_a_stream_that_fails_before_its_first_chunk_falls_back(upstream, second):
    router = dheera_ai.Router(model_list=[entry("gpt", upstream), entry("gpt-backup", second)],
                              fallbacks=[{"gpt": ["gpt-backup"]}])
    upstream.fail(503)

    stream = router.completion(model="gpt", messages=HI, stream=True)
    chunks = list(stream)

    assert chunks and stream._hidden_params["api_base"] == second.url + "/v1"
    assert stream.usage is not None


def test_every_call_type_goes_through_the_group(upstream):
    router = dheera_ai.Router(model_list=[entry("m", upstream)])

    assert router.embedding(model="m", input="hi").data[0].embedding
    assert upstream.last.path == "/v1/embeddings"
    assert router.text_completion(model="m", prompt="Say hi").choices[0].text
    assert router.image_generation(model="m", prompt="a cat").data
    assert router.transcription(model="m", file=("a.wav", b"RIFF....")).text
    assert router.speech(model="m", input="Hi").content
    assert router.rerank(model="m", query="q", documents=["a", "b"]).results is not None
    assert router.responses(model="m", input="Hi").output
    assert upstream.last.path == "/v1/responses"
    assert router.moderation(model="m", input="hi").results is not None

    async def awaited():
        return await router.aembedding(model="m", input="hi"), await router.aresponses(model="m", input="Hi")

    embedded, answered = asyncio.run(awaited())
    assert embedded.data and answered.output


def test_get_model_list_shows_the_deployments(upstream, second):
    router = dheera_ai.Router(model_list=[entry("gpt", upstream), entry("gpt", second, rpm=10)],
                              routing_strategy="usage-based-routing-v2")

    listed = router.get_model_list()

    assert [e["model_name"] for e in listed] == ["gpt", "gpt"]
    assert listed[1]["litellm_params"]["api_base"] == second.url + "/v1"
    assert listed[1]["litellm_params"]["rpm"] == 10
    assert listed[0]["model_info"]["id"] != listed[1]["model_info"]["id"]
    assert router.get_model_names() == ["gpt"]
    assert router.settings["routing_strategy"] == "usage-based-routing"


# -- per call: dheera_ai.completion(..., fallbacks=[...], num_retries=N) ---------------------------

def test_a_call_with_num_retries_is_retried(upstream):
    upstream.fail(500)

    response = dheera_ai.completion(model="openai/gpt-4o-mini", messages=HI, api_base=upstream.url + "/v1",
                                    api_key="sk-upstream-secret", num_retries=1)

    assert response.choices and upstream.count(CHAT) == 2
    assert "num_retries" not in upstream.last.json


def test_a_call_falls_back_to_the_models_it_names(upstream, second):
    upstream.always(CHAT, status=500)

    response = dheera_ai.completion(model="openai/gpt-4o-mini", messages=HI, api_base=upstream.url + "/v1",
                                    api_key="sk-upstream-secret",
                                    fallbacks=[{"model": "openai/gpt-4o", "api_base": second.url + "/v1"}])

    assert response._hidden_params["api_base"] == second.url + "/v1"
    assert second.last.json["model"] == "gpt-4o"
    assert second.last.headers["authorization"] == "Bearer sk-upstream-secret"  # the call's own key, inherited
    assert "fallbacks" not in second.last.json


def test_a_fallback_model_string_uses_the_calls_options(upstream):
    upstream.fail(500)

    dheera_ai.completion(model="openai/gpt-4o-mini", messages=HI, api_base=upstream.url + "/v1",
                         api_key="sk-upstream-secret", fallbacks=["openai/gpt-4o"])

    assert [r.json["model"] for r in upstream.requests] == ["gpt-4o-mini", "gpt-4o"]


def test_per_call_fallbacks_in_a_routers_shape_are_refused():
    with pytest.raises(dheera_ai.BadRequestError, match="Router's fallbacks"):
        dheera_ai.completion(model="mock/demo", messages=HI, fallbacks=[{"gpt": ["gpt-backup"]}])


def test_when_every_fallback_fails_too_the_last_error_is_raised(upstream):
    upstream.always(CHAT, status=503)

    with pytest.raises(dheera_ai.ServiceUnavailableError):
        dheera_ai.completion(model="openai/gpt-4o-mini", messages=HI, api_base=upstream.url + "/v1",
                             api_key="sk-upstream-secret", num_retries=1, fallbacks=["openai/gpt-4o"])
    # Each group gets its retries, as in a gateway's router.
    assert [r.json["model"] for r in upstream.requests] == ["gpt-4o-mini", "gpt-4o-mini", "gpt-4o", "gpt-4o"]
