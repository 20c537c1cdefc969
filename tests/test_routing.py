"""Routing through the gateway: strategies, retries, fallbacks, cooldowns, timeouts, streams.

Each deployment of a group sits under its own path of the fake upstream (`/a/v1`, `/b/v1`), so
which one served a call is visible both in `x-dheera-ai-model-id` and in the upstream's log.
"""

import threading
import time

import openai
import pytest

from dheera_ai.errors import RateLimitError
from dheera_ai.router import policy
from tests.conftest import MASTER_KEY
from tests.support.fake_upstream import chat_chunks, chat_completion

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    """Dict configs keep their state in the working directory: a fresh one per test."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def deployment(upstream, name, group="gpt-4o-mini", **params):
    return {"model_name": group, "model_info": {"id": name, **params.pop("model_info", {})},
            "dheera_ai_params": {"model": "openai/gpt-4o-mini", "api_base": f"{upstream.url}/{name}/v1",
                                 "api_key": "sk-upstream-secret", **params}}


def config(*deployments, **router_settings):
    return {"model_list": list(deployments), "router_settings": {"retry_after": 0.001, **router_settings},
            "general_settings": {"master_key": MASTER_KEY}}


def chat(client, model="gpt-4o-mini", **body):
    return client.post("/v1/chat/completions", headers=AUTH, json={"model": model, "messages": HI, **body})


def served(client, calls, **body):
    """Which deployment answered each of `calls` calls."""
    ids = []
    for _ in range(calls):
        response = chat(client, **body)
        assert response.status_code == 200, response.json
        ids.append(response.headers["x-dheera-ai-model-id"])
    return ids


# -- strategies -------------------------------------------------------------------------------------

def test_simple_shuffle_follows_the_weights(make_app, upstream):
    client = make_app(config(deployment(upstream, "a", weight=3), deployment(upstream, "b", weight=1))).test_client()
    ids = served(client, 300)
    share = ids.count("a") / len(ids)
    assert 0.62 < share < 0.88, share  # 0.75 expected; the bounds are > 4 standard deviations wide
    assert upstream.count("/a/") == ids.count("a") and upstream.count("/b/") == ids.count("b")


def test_simple_shuffle_uses_rpm_when_no_weight_is_given(make_app, upstream):
    client = make_app(config(deployment(upstream, "a", rpm=900), deployment(upstream, "b", rpm=100))).test_client()
    ids = served(client, 200)
    assert ids.count("a") > 150


def test_least_busy_avoids_the_deployment_with_a_call_in_flight(make_app, upstream, live_app):
    server = live_app(config(deployment(upstream, "a"), deployment(upstream, "b"), routing_strategy="least-busy"))
    upstream.respond(chat_completion(), delay=1.0)  # the first call stays in flight for a second
    slow = threading.Thread(target=lambda: openai.OpenAI(base_url=server.url + "/v1", api_key=MASTER_KEY)
                            .chat.completions.create(model="gpt-4o-mini", messages=HI))
    slow.start()
    while not upstream.requests:
        time.sleep(0.005)
    busy = upstream.requests[0].path.split("/")[1]
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=MASTER_KEY, max_retries=0)
    ids = [client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HI)
           .headers["x-dheera-ai-model-id"] for _ in range(10)]
    slow.join()
    assert busy not in ids and len(set(ids)) == 1


def test_latency_based_routing_prefers_the_fast_deployment(make_app, upstream):
    upstream.always("/slow/", delay=0.05)
    client = make_app(config(deployment(upstream, "slow"), deployment(upstream, "fast"),
                             routing_strategy="latency-based-routing", latency_exploration=0)).test_client()
    ids = served(client, 20)
    assert "slow" in ids[:2], "a deployment never measured is tried first"
    assert ids[2:] == ["fast"] * 18


def test_latency_based_routing_still_explores(make_app, upstream):
    upstream.always("/slow/", delay=0.01)
    client = make_app(config(deployment(upstream, "slow"), deployment(upstream, "fast"),
                             routing_strategy="latency-based-routing", latency_exploration=0.5)).test_client()
    ids = served(client, 60)
    assert ids[2:].count("slow") >= 3  # about 14 expected


def usage_based(make_app, *deployments):
    """A usage-based gateway whose clock stays inside one minute (the limits reset with each)."""
    app = make_app(config(*deployments, routing_strategy="usage-based-routing"))
    app.extensions["dheera_ai"].router.stats.clock = lambda: 1_800_000_030.0
    return app.test_client()


def test_usage_based_routing_stays_under_each_rpm(make_app, upstream):
    client = usage_based(make_app, deployment(upstream, "small", rpm=3), deployment(upstream, "big", rpm=1000))
    ids = served(client, 30)
    assert 1 <= ids.count("small") <= 3


def test_usage_based_routing_answers_429_when_every_deployment_is_at_its_limit(make_app, upstream):
    client = usage_based(make_app, deployment(upstream, "a", rpm=1), deployment(upstream, "b", rpm=1))
    responses = [chat(client) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[2].json["error"]["code"] == "all_deployments_at_limit"
    assert 1 <= int(responses[2].headers["Retry-After"]) <= 60
    assert len(upstream.requests) == 2


def test_cost_based_routing_sends_everything_to_the_cheapest(make_app, upstream):
    cheap = {"input_cost_per_token": 1e-7, "output_cost_per_token": 4e-7}
    dear = {"input_cost_per_token": 5e-6, "output_cost_per_token": 1.5e-5}
    client = make_app(config(deployment(upstream, "dear", model_info=dear),
                             deployment(upstream, "cheap", model_info=cheap), deployment(upstream, "unpriced"),
                             routing_strategy="cost-based-routing")).test_client()
    assert served(client, 20) == ["cheap"] * 20


def test_cost_based_routing_moves_to_the_next_price_when_the_cheapest_rests(make_app, upstream):
    upstream.always("/cheap/", status=500)
    client = make_app(config(deployment(upstream, "cheap", model_info={"input_cost_per_token": 1e-7,
                                                                        "output_cost_per_token": 1e-7}),
                             deployment(upstream, "dear", model_info={"input_cost_per_token": 1e-5,
                                                                       "output_cost_per_token": 1e-5}),
                             routing_strategy="cost-based-routing", allowed_fails=1, cooldown_time=30)).test_client()
    assert chat(client).status_code == 500
    assert served(client, 5) == ["dear"] * 5


def test_tag_filtering_sends_tagged_requests_to_their_deployments(make_app, upstream):
    client = make_app(config(deployment(upstream, "eu", tags=["eu"]), deployment(upstream, "us", tags=["us"]),
                             deployment(upstream, "general", tags=["default"]),
                             enable_tag_filtering=True)).test_client()
    assert set(served(client, 10, tags=["eu"])) == {"eu"}
    assert set(served(client, 10, metadata={"tags": ["us"]})) == {"us"}
    assert set(served(client, 10)) == {"general"}, "untagged requests go to the default deployments"
    assert set(served(client, 10, tags=["apac"])) == {"general"}, "unknown tags fall back to default"


def test_without_tag_filtering_tags_do_not_route(make_app, upstream):
    client = make_app(config(deployment(upstream, "eu", tags=["eu"]),
                             deployment(upstream, "us", tags=["us"]))).test_client()
    assert set(served(client, 40, tags=["eu"])) == {"eu", "us"}


# -- retries ----------------------------------------------------------------------------------------

def test_transient_failures_are_retried_and_counted(make_app, upstream):
    client = make_app(config(deployment(upstream, "a"), num_retries=2)).test_client()
    upstream.fail(503, "overloaded")
    upstream.fail(500, "oops")
    response = chat(client)
    assert response.status_code == 200
    assert response.headers["x-dheera-ai-attempted-retries"] == "2"
    assert response.headers["x-dheera-ai-attempted-fallbacks"] == "0"
    assert len(upstream.requests) == 3


def test_retries_run_out_and_the_last_error_is_the_answer(make_app, upstream):
    client = make_app(config(deployment(upstream, "a"), num_retries=1)).test_client()
    upstream.always("/a/", status=503)
    response = chat(client)
    assert response.status_code == 503
    assert response.headers["x-dheera-ai-attempted-retries"] == "1"
    assert len(upstream.requests) == 2


def test_a_bad_request_is_not_retried(make_app, upstream):
    client = make_app(config(deployment(upstream, "a"), num_retries=3)).test_client()
    upstream.fail(400, "Invalid 'messages'")
    assert chat(client).status_code == 400
    assert len(upstream.requests) == 1


def test_retry_policy_sets_retries_per_error_class(make_app, upstream):
    policy_ = {"AuthenticationErrorRetries": 0, "RateLimitErrorRetries": 3}
    client = make_app(config(deployment(upstream, "a"), num_retries=1, retry_policy=policy_)).test_client()
    upstream.fail(401, "bad key")
    assert chat(client).status_code == 401
    assert len(upstream.requests) == 1

    for _ in range(3):
        upstream.fail(429, "slow down")
    response = chat(client)
    assert response.status_code == 200 and response.headers["x-dheera-ai-attempted-retries"] == "3"
    assert len(upstream.requests) == 5


def test_a_deployments_max_retries_overrides_num_retries(make_app, upstream):
    client = make_app(config(deployment(upstream, "a", max_retries=0), num_retries=3)).test_client()
    upstream.fail(500, "oops")
    assert chat(client).status_code == 500
    assert len(upstream.requests) == 1


def test_a_retry_prefers_another_deployment(make_app, upstream):
    upstream.always("/a/", status=503)
    client = make_app(config(deployment(upstream, "a"), deployment(upstream, "b"), num_retries=1,
                             allowed_fails=100)).test_client()
    for _ in range(10):
        response = chat(client)
        assert response.status_code == 200 and response.headers["x-dheera-ai-model-id"] == "b"
    assert upstream.count("/a/") <= 10


def test_backoff_grows_and_honours_retry_after_within_the_cap():
    settings = {"retry_after": 0.1, "max_retry_wait": 5.0}
    rate_limited = RateLimitError("slow down", headers={"Retry-After": "3"})
    assert 0.05 <= policy.wait_before_retry(settings, 0, RateLimitError("x"), True) <= 0.1
    assert 0.2 <= policy.wait_before_retry(settings, 2, RateLimitError("x"), True) <= 0.4
    assert policy.wait_before_retry(settings, 0, rate_limited, same_deployment=True) == 3.0
    assert policy.wait_before_retry(settings, 0, rate_limited, same_deployment=False) <= 0.1
    assert policy.wait_before_retry({**settings, "max_retry_wait": 1.0}, 0, rate_limited, True) == 1.0


def test_retry_after_from_the_upstream_is_waited_for(make_app, upstream):
    client = make_app(config(deployment(upstream, "a"), num_retries=1)).test_client()
    upstream.fail(429, "slow down", headers={"Retry-After": "1"})
    started = time.monotonic()
    response = chat(client)
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.9  # a floor, not a speed assertion: it did wait


# -- fallbacks --------------------------------------------------------------------------------------

def test_fallbacks_take_over_when_a_group_fails(make_app, upstream):
    upstream.always("/a/", status=500)
    client = make_app(config(deployment(upstream, "a"), deployment(upstream, "b", group="backup"),
                             fallbacks=[{"gpt-4o-mini": ["backup"]}], num_retries=1)).test_client()
    response = chat(client)
    assert response.status_code == 200
    assert response.headers["x-dheera-ai-model-group"] == "backup"
    assert response.headers["x-dheera-ai-attempted-fallbacks"] == "1"
    assert response.headers["x-dheera-ai-attempted-retries"] == "1"
    assert upstream.count("/a/") == 2 and upstream.count("/b/") == 1


def test_fallbacks_are_tried_in_order(make_app, upstream):
    upstream.always("/a/", status=500)
    upstream.always("/b/", status=503)
    client = make_app(config(deployment(upstream, "a"), deployment(upstream, "b", group="second"),
                             deployment(upstream, "c", group="third"),
                             fallbacks=[{"gpt-4o-mini": ["second", "third"]}])).test_client()
    response = chat(client)
    assert response.status_code == 200 and response.headers["x-dheera-ai-model-group"] == "third"
    assert response.headers["x-dheera-ai-attempted-fallbacks"] == "2"


def test_context_window_fallbacks_act_on_context_window_errors(make_app, upstream):
    upstream.always("/a/", status=400, message="This model's maximum context length is 128000 tokens",
                    code="context_length_exceeded")
    client = make_app(config(deployment(upstream, "a"), deployment(upstream, "big", group="long-context"),
                             deployment(upstream, "other", group="other"),
                             context_window_fallbacks=[{"gpt-4o-mini": ["long-context"]}],
                             fallbacks=[{"gpt-4o-mini": ["other"]}])).test_client()
    response = chat(client)
    assert response.status_code == 200 and response.headers["x-dheera-ai-model-group"] == "long-context"
    assert upstream.count("/other/") == 0


def test_general_fallbacks_do_not_catch_a_context_window_error(make_app, upstream):
    upstream.always("/a/", status=400, message="maximum context length exceeded", code="context_length_exceeded")
    client = make_app(config(deployment(upstream, "a"), deployment(upstream, "other", group="other"),
                             fallbacks=[{"gpt-4o-mini": ["other"]}])).test_client()
    response = chat(client)
    assert response.status_code == 400 and upstream.count("/other/") == 0


def test_content_policy_fallbacks_act_on_content_policy_errors(make_app, upstream):
    upstream.always("/a/", status=400, message="Your request was rejected by our content_policy",
                    code="content_policy_violation")
    client = make_app(config(deployment(upstream, "a"), deployment(upstream, "lenient", group="lenient"),
                             content_policy_fallbacks=[{"gpt-4o-mini": ["lenient"]}])).test_client()
    response = chat(client)
    assert response.status_code == 200 and response.headers["x-dheera-ai-model-group"] == "lenient"


def test_default_fallbacks_serve_any_group_without_its_own(make_app, upstream):
    upstream.always("/a/", status=502)
    client = make_app(config(deployment(upstream, "a"), deployment(upstream, "safe", group="safe"),
                             default_fallbacks=["safe"])).test_client()
    response = chat(client)
    assert response.status_code == 200 and response.headers["x-dheera-ai-model-group"] == "safe"


def test_fallbacks_naming_an_unknown_group_stop_start_up(make_app, upstream):
    from dheera_ai.config import ConfigError

    with pytest.raises(ConfigError) as exc:
        make_app(config(deployment(upstream, "a"), fallbacks=[{"gpt-4o-mini": ["gpt-5"]}]))
    assert "router_settings.fallbacks" in str(exc.value) and "gpt-5" in str(exc.value)


def test_litellm_settings_fallbacks_and_num_retries_are_honoured(make_app, upstream):
    upstream.always("/a/", status=500)
    raw = config(deployment(upstream, "a"), deployment(upstream, "b", group="backup"))
    raw["litellm_settings"] = {"num_retries": 1, "fallbacks": [{"gpt-4o-mini": ["backup"]}]}
    response = chat(make_app(raw).test_client())
    assert response.status_code == 200 and response.headers["x-dheera-ai-attempted-retries"] == "1"


# -- cooldowns --------------------------------------------------------------------------------------

def test_a_failing_deployment_cools_down_and_comes_back(make_app, upstream, state_dir):
    upstream.always("/a/", status=500)
    client = make_app(config(deployment(upstream, "a"), deployment(upstream, "b"), allowed_fails=2,
                             cooldown_time=1.0)).test_client()
    while upstream.count("/a/") < 2:
        chat(client)
    assert set(served(client, 20)) == {"b"}, "a rests after two failures"
    assert (state_dir / "dheera_ai-runtime.sqlite3").exists()

    upstream.clear()
    time.sleep(1.0)
    assert "a" in served(client, 30), "a serves again once its cooldown is over"


def test_cooldowns_are_shared_by_the_workers_of_an_instance(make_app, upstream):
    upstream.always("/a/", status=500)
    raw = config(deployment(upstream, "a"), deployment(upstream, "b"), allowed_fails=1, cooldown_time=60)
    worker_one, worker_two = make_app(raw).test_client(), make_app(raw).test_client()
    while upstream.count("/a/") < 1:
        chat(worker_one)
    time.sleep(0.15)  # the other worker looks at the shared state at most every 0.1 s
    assert set(served(worker_two, 20)) == {"b"}


def test_when_every_deployment_rests_the_answer_is_a_429_saying_so(make_app, upstream):
    upstream.always("/a/", status=500)
    upstream.always("/b/", status=500)
    client = make_app(config(deployment(upstream, "a"), deployment(upstream, "b"), allowed_fails=1,
                             cooldown_time=30)).test_client()
    while upstream.count("/a/") < 1 or upstream.count("/b/") < 1:
        chat(client)
    sent = len(upstream.requests)
    response = chat(client)
    assert response.status_code == 429
    assert response.json["error"]["code"] == "all_deployments_cooling_down"
    assert "cooling down" in response.json["error"]["message"]
    assert 1 <= int(response.headers["Retry-After"]) <= 30
    assert len(upstream.requests) == sent


def test_a_lone_deployment_never_cools_down(make_app, upstream):
    client = make_app(config(deployment(upstream, "a"), allowed_fails=1, cooldown_time=60)).test_client()
    upstream.fail(500, "oops")
    assert chat(client).status_code == 500
    assert chat(client).status_code == 200


def test_bad_requests_do_not_count_toward_a_cooldown(make_app, upstream):
    upstream.always("/a/", status=400, message="Invalid 'temperature'")
    client = make_app(config(deployment(upstream, "a"), deployment(upstream, "b"), allowed_fails=1,
                             cooldown_time=60)).test_client()
    while upstream.count("/a/") < 3:
        chat(client)
    upstream.clear()
    assert "a" in served(client, 30)


# -- timeouts ---------------------------------------------------------------------------------------

def test_timeout_bounds_the_whole_call_not_just_each_read(make_app, upstream):
    client = make_app(config(deployment(upstream, "a", timeout=0.5))).test_client()
    upstream.respond_slowly(chat_completion(), trickle=0.15)  # every gap is short, the whole is 1.5 s
    response = chat(client)
    assert response.status_code == 408
    assert response.json["error"]["type"] == "timeout_error"


def test_router_settings_timeout_applies_to_deployments_without_one(make_app, upstream):
    client = make_app(config(deployment(upstream, "a"), timeout=0.3)).test_client()
    upstream.respond(chat_completion(), delay=1.0)
    assert chat(client).status_code == 408


def test_a_timed_out_attempt_is_retried(make_app, upstream):
    client = make_app(config(deployment(upstream, "a", timeout=0.3), num_retries=1)).test_client()
    upstream.respond(chat_completion(), delay=1.0)
    response = chat(client)
    assert response.status_code == 200 and response.headers["x-dheera-ai-attempted-retries"] == "1"


def test_stream_timeout_bounds_the_wait_for_the_first_chunk(make_app, upstream):
    client = make_app(config(deployment(upstream, "a", stream_timeout=0.3, timeout=30))).test_client()
    upstream.stream(chat_chunks(), delay=1.0)
    response = chat(client, stream=True)
    assert response.status_code == 408


# -- streams ----------------------------------------------------------------------------------------

def test_a_stream_that_fails_before_its_first_byte_is_retried(make_app, upstream, live_app):
    server = live_app(config(deployment(upstream, "a"), num_retries=1))
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=MASTER_KEY, max_retries=0)
    upstream.drop()
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HI, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == "Hello from the stream."
    assert raw.headers["x-dheera-ai-attempted-retries"] == "1"
    assert len(upstream.requests) == 2


def test_a_stream_that_breaks_after_its_first_byte_ends_with_an_error_event(make_app, upstream):
    client = make_app(config(deployment(upstream, "a"), num_retries=2)).test_client()
    upstream.stream(chat_chunks()[:3], truncate=True)  # promises a megabyte, sends three events, closes
    body = chat(client, stream=True).get_data(as_text=True)
    assert '"Hello"' in body and '" from"' in body
    assert body.rstrip().endswith("}") and '"error"' in body.rsplit("data:", 1)[1]
    assert len(upstream.requests) == 1, "bytes had reached the client: no retry"


def test_latency_based_routing_moves_away_from_a_deployment_that_fails_fast(make_app, upstream):
    client = make_app(config(deployment(upstream, "a"), deployment(upstream, "b"), num_retries=1,
                             routing_strategy="latency-based-routing", latency_exploration=0,
                             allowed_fails=1000)).test_client()
    served(client, 4)  # both measured
    upstream.always("/a/", status=500)
    upstream.always("/b/", delay=0.02)  # slower than a was, but answering
    ids = served(client, 10)
    assert set(ids) == {"b"}
    assert upstream.count("/a/") <= 4 + 1, "at most one more try at the failing deployment"


def test_a_group_that_is_all_cooling_down_falls_back(make_app, upstream):
    upstream.always("/a/", status=500)
    upstream.always("/b/", status=500)
    client = make_app(config(deployment(upstream, "a"), deployment(upstream, "b"),
                             deployment(upstream, "c", group="backup"), allowed_fails=1, cooldown_time=30,
                             fallbacks=[{"gpt-4o-mini": ["backup"]}])).test_client()
    while upstream.count("/a/") < 1 or upstream.count("/b/") < 1:
        chat(client)
    sent = upstream.count("/a/") + upstream.count("/b/")
    response = chat(client)
    assert response.status_code == 200 and response.headers["x-dheera-ai-model-group"] == "backup"
    assert upstream.count("/a/") + upstream.count("/b/") == sent


def test_gunicorn_workers_share_cooldowns_through_the_state_file(tmp_path, upstream):
    import requests
    import yaml

    from tests.support.process import GatewayProcess

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config(deployment(upstream, "a"), deployment(upstream, "b"), allowed_fails=1,
                                          cooldown_time=60)))
    upstream.always("/a/", status=500)
    process = GatewayProcess("--config", str(path), "--workers", "2", "--host", "127.0.0.1")
    try:
        process.wait_ready()

        def call():  # a new connection each time, so both workers take calls
            return requests.post(process.url + "/v1/chat/completions", headers=AUTH, timeout=10,
                                 json={"model": "gpt-4o-mini", "messages": HI})
        while upstream.count("/a/") < 1:
            call()
        time.sleep(0.2)  # each worker re-reads the shared state at most every 0.1 s
        answers = [call() for _ in range(30)]
    finally:
        process.close()
    assert {r.headers["x-dheera-ai-model-id"] for r in answers} == {"b"}
    assert upstream.count("/a/") == 1
    assert (tmp_path / "dheera_ai-runtime.sqlite3").exists()


def test_tags_no_deployment_carries_do_not_grow_the_routers_state(make_app, upstream):
    app = make_app(config(deployment(upstream, "eu", tags=["eu"]), deployment(upstream, "general"),
                          enable_tag_filtering=True, routing_strategy="least-busy"))
    client = app.test_client()
    for i in range(50):
        assert chat(client, tags=[f"random-{i}"]).headers["x-dheera-ai-model-id"] == "general"
    group = app.extensions["dheera_ai"].router.groups["gpt-4o-mini"]
    assert len(group._views) <= 2
