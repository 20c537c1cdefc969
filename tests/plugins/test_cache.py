"""The response cache: the second identical call never reaches the upstream, for plain, streamed,
Anthropic and embedding calls; what it keys on; per-request and per-key controls; billing."""

import anthropic
import openai
import pytest

from tests.conftest import MASTER_KEY
from tests.support.fake_upstream import chat_chunks, chat_completion
from tests.support.servers import hang_up_mid_stream
from tests.test_spend import PLAIN_COST, PRICES, stored

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def cache_config(base_config):
    base_config["model_list"][0]["model_info"] = dict(PRICES)
    base_config["model_list"].append({"model_name": "embedder", "dheera_ai_params": {
        "model": "openai/text-embedding-3-small", "api_base": base_config["model_list"][0]["dheera_ai_params"]
        ["api_base"], "api_key": "sk-up"}, "model_info": {"input_cost_per_token": 1e-6}})
    base_config["dheera_ai_settings"] = {"cache": True, "cache_params": {"type": "local"}}
    base_config["general_settings"]["spend_flush_seconds"] = 3600
    return base_config


@pytest.fixture
def app(make_app, cache_config):
    return make_app(cache_config)


@pytest.fixture
def gpt(live):
    return openai.OpenAI(base_url=live.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)


def chats(upstream) -> int:
    return upstream.count("/v1/chat/completions")


def test_the_second_identical_call_is_answered_without_the_upstream(gpt, upstream):
    first = gpt.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HI, temperature=0)
    second = gpt.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HI, temperature=0)

    assert chats(upstream) == 1
    assert first.headers["x-dheera-ai-cache-hit"] == "false"
    assert second.headers["x-dheera-ai-cache-hit"] == "true"
    assert first.headers["x-dheera-ai-cache-key"] == second.headers["x-dheera-ai-cache-key"]
    answer = second.parse()
    assert answer.choices[0].message.content == "Hello from the fake upstream."
    assert answer.usage.prompt_tokens == 9 and answer.choices[0].finish_reason == "stop"


def test_only_fields_that_change_the_answer_are_in_the_key(gpt, upstream):
    gpt.chat.completions.create(model="gpt-4o-mini", messages=HI, temperature=0, user="alice",
                                metadata={"run": "1"}, extra_body={"tags": ["a"]})
    gpt.chat.completions.create(model="gpt-4o-mini", messages=HI, temperature=0, user="bob",
                                metadata={"run": "2"}, extra_body={"tags": ["b"]})
    assert chats(upstream) == 1, "user, metadata and tags do not change the answer"
    for change in ({"temperature": 1}, {"messages": [{"role": "user", "content": "hi!"}]}, {"seed": 7},
                   {"max_tokens": 5}, {"response_format": {"type": "json_object"}}):
        gpt.chat.completions.create(**{"model": "gpt-4o-mini", "messages": HI, "temperature": 0, **change})
    assert chats(upstream) == 6, "each of these asks a different question"
    assert "cache" not in upstream.last.json


def test_a_stream_is_kept_once_complete_and_replayed_to_the_openai_sdk(gpt, upstream):
    upstream.stream(chat_chunks(words=("Hello", " from", " the", " stream.")))
    first = "".join(c.choices[0].delta.content or "" for c in gpt.chat.completions.create(
        model="gpt-4o-mini", messages=HI, stream=True) if c.choices)
    replayed = list(gpt.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True,
                                                stream_options={"include_usage": True}))

    assert chats(upstream) == 1
    assert first == "Hello from the stream."
    assert replayed[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in replayed if c.choices) == first
    assert [c.choices[0].finish_reason for c in replayed if c.choices][-1] == "stop"
    assert replayed[-1].choices == [] and replayed[-1].usage.completion_tokens == 4
    # A plain request is answered from the streamed original, and the other way round.
    plain = gpt.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert plain.choices[0].message.content == first and chats(upstream) == 1


def test_a_plain_original_answers_a_stream(gpt, upstream):
    gpt.chat.completions.create(model="gpt-4o-mini", messages=HI)
    with gpt.chat.completions.stream(model="gpt-4o-mini", messages=HI) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "Hello from the fake upstream." and chats(upstream) == 1


def test_tool_calls_survive_the_cache(gpt, upstream):
    call = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}
    upstream.respond(chat_completion(tool_calls=[call]))
    gpt.chat.completions.create(model="gpt-4o-mini", messages=HI)
    chunks = list(gpt.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True))
    tool = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices and c.choices[0].delta.tool_calls][0]
    assert (tool.id, tool.function.name, tool.function.arguments) == ("call_1", "weather", '{"city": "Oslo"}')
    assert chunks[-1].choices[0].finish_reason == "tool_calls" and chats(upstream) == 1


def test_a_stream_the_client_left_is_not_kept(live, upstream):
    upstream.stream(chat_chunks(words=[f" w{i}" for i in range(50)]), event_delay=0.01)
    hang_up_mid_stream(live.url, MASTER_KEY, {"model": "gpt-4o-mini", "messages": HI, "stream": True},
                       lambda got: b" w3" in got)
    gpt = openai.OpenAI(base_url=live.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)
    response = gpt.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HI)
    assert response.headers["x-dheera-ai-cache-hit"] == "false" and chats(upstream) == 2


def test_an_error_is_not_kept(gpt, upstream):
    upstream.fail(500)
    with pytest.raises(openai.InternalServerError):
        gpt.chat.completions.create(model="gpt-4o-mini", messages=HI)
    gpt.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert chats(upstream) == 2


def test_text_completions_stream_and_plain_share_one_answer(gpt, upstream):
    streamed = "".join(c.choices[0].text for c in gpt.completions.create(
        model="gpt-4o-mini", prompt="Say hello", stream=True) if c.choices)
    plain = gpt.completions.create(model="gpt-4o-mini", prompt="Say hello")
    replayed = list(gpt.completions.create(model="gpt-4o-mini", prompt="Say hello", stream=True))
    assert upstream.count("/v1/completions") == 1
    assert plain.choices[0].text == streamed == "".join(c.choices[0].text for c in replayed if c.choices)
    assert plain.choices[0].finish_reason == "stop" == replayed[-1].choices[0].finish_reason


def test_the_anthropic_sdk_gets_a_replayed_stream(live, upstream):
    claude = anthropic.Anthropic(base_url=live.url, api_key=MASTER_KEY, max_retries=0, timeout=10)
    ask = {"model": "gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": "Hi there"}]}
    first = claude.messages.create(**ask)
    with claude.messages.stream(**ask) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert chats(upstream) == 1
    assert "".join(texts) == first.content[0].text == final.content[0].text
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 7


def test_an_anthropic_stream_is_kept_and_answers_a_plain_message(live, upstream):
    claude = anthropic.Anthropic(base_url=live.url, api_key=MASTER_KEY, max_retries=0, timeout=10)
    ask = {"model": "gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": "Stream it"}]}
    upstream.stream(chat_chunks(words=("Streamed", " to", " Claude.")))
    with claude.messages.stream(**ask) as stream:
        streamed = stream.get_final_message()
    plain = claude.messages.create(**ask)
    assert chats(upstream) == 1
    assert plain.content[0].text == streamed.content[0].text == "Streamed to Claude."
    assert plain.stop_reason == "end_turn" and plain.usage.output_tokens == streamed.usage.output_tokens


def test_request_controls_in_litellms_spelling(gpt, upstream):
    ask = {"model": "gpt-4o-mini", "messages": HI}
    gpt.chat.completions.create(**ask, extra_body={"cache": {"no-store": True}})
    gpt.chat.completions.create(**ask)
    assert chats(upstream) == 2, "no-store: the first answer was not kept; the second was"
    fresh = gpt.chat.completions.with_raw_response.create(**ask, extra_body={"cache": {"no-cache": True}})
    assert fresh.headers["x-dheera-ai-cache-hit"] == "false" and chats(upstream) == 3
    gpt.chat.completions.create(**ask, extra_body={"cache": {"namespace": "eval-1"}})
    assert chats(upstream) == 4, "another namespace is another cache"
    gpt.chat.completions.create(**ask, extra_body={"cache": {"namespace": "eval-1"}})
    assert chats(upstream) == 4
    gpt.chat.completions.create(**ask, extra_body={"cache": {"s-maxage": 0}})
    assert chats(upstream) == 5, "s-maxage 0 accepts no stored answer"
    gpt.chat.completions.create(**ask, extra_headers={"Cache-Control": "no-cache"})
    assert chats(upstream) == 6


def test_default_off_caches_only_the_requests_that_ask(make_app, cache_config, live_app, upstream):
    cache_config["dheera_ai_settings"]["cache_params"]["mode"] = "default_off"
    gpt = openai.OpenAI(base_url=live_app(cache_config).url + "/v1", api_key=MASTER_KEY, max_retries=0)
    for _ in range(2):
        gpt.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert chats(upstream) == 2
    for _ in range(2):
        gpt.chat.completions.create(model="gpt-4o-mini", messages=HI, extra_body={"cache": {"use-cache": True}})
    assert chats(upstream) == 3


def test_a_malformed_cache_object_is_a_400(gpt, upstream):
    for bad in ("yes", {"ttl": "long"}, {"no-cache": "sure"}, {"namespace": "x" * 500}):
        with pytest.raises(openai.BadRequestError) as exc:
            gpt.chat.completions.create(model="gpt-4o-mini", messages=HI, extra_body={"cache": bad})
        assert exc.value.body["param"].startswith("cache")
    assert chats(upstream) == 0


def test_a_key_or_its_team_can_have_caching_switched_off(client, auth, gpt, live, upstream):
    team = client.post("/team/new", headers=auth, json={"metadata": {"cache": {"no-cache": True}}}).json
    keys = [client.post("/key/generate", headers=auth, json=body).json["key"] for body in (
        {"metadata": {"cache": False}}, {"team_id": team["team_id"]})]
    gpt.chat.completions.create(model="gpt-4o-mini", messages=HI)
    for key in keys:
        other = openai.OpenAI(base_url=live.url + "/v1", api_key=key, max_retries=0, timeout=10)
        answer = other.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HI)
        assert answer.headers.get("x-dheera-ai-cache-hit") != "true"
    assert chats(upstream) == 3


def test_a_keys_namespace_keeps_its_answers_apart(client, auth, gpt, live, upstream, call_log):
    key = client.post("/key/generate", headers=auth, json={"metadata": {"cache": {"namespace": "team-a"}}}).json["key"]
    own = openai.OpenAI(base_url=live.url + "/v1", api_key=key, max_retries=0, timeout=10)
    gpt.chat.completions.create(model="gpt-4o-mini", messages=HI)
    own.chat.completions.create(model="gpt-4o-mini", messages=HI)
    own.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert chats(upstream) == 2
    assert [line.get("cache") for line in call_log(3)][-3:] == ["miss", "miss", "hit"]


def test_embeddings_send_only_the_misses_upstream_and_answer_in_order(gpt, upstream):
    gpt.embeddings.create(model="embedder", input=["alpha", "gamma"])
    answer = gpt.embeddings.with_raw_response.create(model="embedder", input=["alpha", "beta", "gamma", "delta"])

    assert upstream.last.json["input"] == ["beta", "delta"]
    parsed = answer.parse()
    assert [d.index for d in parsed.data] == [0, 1, 2, 3] and len(parsed.data[1].embedding) == 3
    assert parsed.usage.prompt_tokens == 8, "usage is the misses' (the fake counts 4 tokens an input)"
    whole = gpt.embeddings.with_raw_response.create(model="embedder", input=["delta", "alpha"])
    assert whole.headers["x-dheera-ai-cache-hit"] == "true" and upstream.count("/v1/embeddings") == 2
    assert whole.parse().usage.prompt_tokens == 0


def test_a_hit_is_billed_at_zero_with_what_it_saved(app, gpt, upstream):
    gpt.chat.completions.create(model="gpt-4o-mini", messages=HI)
    hit = gpt.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HI)
    assert float(hit.headers["x-dheera-ai-response-cost"]) == 0
    hit_row, miss_row = stored(app)
    assert (miss_row["cache_hit"], miss_row["saved_cost"]) == (False, 0)
    assert miss_row["cost"] == pytest.approx(PLAIN_COST)
    assert (hit_row["cache_hit"], hit_row["cost"]) == (True, 0)
    assert hit_row["saved_cost"] == pytest.approx(PLAIN_COST)
    report = app.test_client().get("/spend/report", query_string={"group_by": "model"},
                                   headers={"Authorization": f"Bearer {MASTER_KEY}"}).json
    [day] = [r for r in report["data"] if r["model"] == "gpt-4o-mini"]
    assert (day["calls"], day["cache_hits"]) == (2, 1) and day["saved"] == pytest.approx(PLAIN_COST)
    metrics = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {MASTER_KEY}"}).text
    assert 'dheera_ai_cache_requests_total{result="hit"} 1.0' in metrics
    assert 'dheera_ai_cache_requests_total{result="miss"} 1.0' in metrics
    assert f'dheera_ai_cache_saved_usd_total{{model_group="gpt-4o-mini"}} {PLAIN_COST}' in metrics


def test_a_hit_is_not_charged_to_a_budget(client, auth, live, upstream):
    key = client.post("/key/generate", headers=auth, json={"max_budget": PLAIN_COST * 1.5}).json["key"]
    gpt = openai.OpenAI(base_url=live.url + "/v1", api_key=key, max_retries=0, timeout=10)
    gpt.chat.completions.create(model="gpt-4o-mini", messages=HI)
    live.server.app.extensions["dheera_ai_state"].spend.flush()
    for _ in range(3):
        gpt.chat.completions.create(model="gpt-4o-mini", messages=HI)
        live.server.app.extensions["dheera_ai_state"].spend.flush()
    assert chats(upstream) == 1


def test_an_answer_over_max_item_bytes_is_not_kept(make_app, cache_config, live_app, upstream):
    cache_config["dheera_ai_settings"]["cache_params"]["max_item_bytes"] = 100
    gpt = openai.OpenAI(base_url=live_app(cache_config).url + "/v1", api_key=MASTER_KEY, max_retries=0)
    for _ in range(2):
        gpt.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert chats(upstream) == 2


def test_a_corrupt_entry_is_a_miss(app, gpt, upstream):
    first = gpt.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HI)
    cache = app.extensions["dheera_ai"].plugin_manager.get_plugin("response-cache")
    key = cache.prefix + first.headers["x-dheera-ai-cache-key"]
    for garbage in (b"\x00not json", b'{"v": 1, "kind": "chat_completions"}', b"[]"):
        cache.store.set_many([(key, garbage, 60)])
        again = gpt.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HI)
        assert again.headers["x-dheera-ai-cache-hit"] == "false" and again.parse().choices[0].message.content
    assert chats(upstream) == 4


def test_the_cache_is_off_by_default(make_app, base_config, upstream):
    app = make_app(base_config)
    assert app.extensions["dheera_ai"].plugin_manager.get_plugin("response-cache") is None
    for _ in range(2):
        response = app.test_client().post("/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER_KEY}"},
                                          json={"model": "gpt-4o-mini", "messages": HI, "cache": {"ttl": 5}})
        assert "x-dheera-ai-cache-hit" not in response.headers
    assert chats(upstream) == 2 and "cache" not in upstream.last.json


@pytest.mark.parametrize(("params", "named"), [
    ({"ttl": -1}, "dheera_ai_settings.cache_params.ttl"),
    ({"type": "memcached"}, "dheera_ai_settings.cache_params.type"),
    ({"type": "redis"}, "dheera_ai_settings.cache_params.type: redis needs"),
    ({"supported_call_types": ["chat", "acompletion"]}, "unknown call type 'chat'"),
    ({"timeout_ms": 500}, "dheera_ai_settings.cache_params.timeout_ms"),
])
def test_a_bad_cache_setting_stops_start_up_naming_it(make_app, base_config, params, named):
    from dheera_ai.config import ConfigError

    base_config["dheera_ai_settings"] = {"cache": True, "cache_params": params}
    with pytest.raises(ConfigError) as exc:
        make_app(base_config)
    assert named in str(exc.value)


def test_litellm_call_type_names_and_the_gateways_redis(make_app, base_config):
    base_config["litellm_settings"] = {"cache": True, "cache_params": {
        "supported_call_types": ["acompletion", "aembedding", "atranscription"]}}
    base_config["general_settings"]["redis_url"] = "redis://127.0.0.1:1/0"
    params = make_app(base_config).extensions["dheera_ai"].config.dheera_ai_settings["cache_params"]
    assert params["supported_call_types"] == ("chat_completions", "embeddings")
    assert (params["type"], params["url"]) == ("redis", "redis://127.0.0.1:1/0")


@pytest.fixture
def redis_cache(cache_config):
    """A cache config on the real Redis, reached through a TCP proxy a test can cut or slow down."""
    import uuid
    from urllib.parse import urlparse

    import redis

    from tests.support.services import redis_url
    from tests.support.tcp_proxy import TCPProxy

    url = urlparse(redis_url())
    proxy = TCPProxy(url.hostname, url.port or 6379)
    prefix = f"dheera_ai_test:{uuid.uuid4().hex[:12]}:"
    cache_config["dheera_ai_settings"]["cache_params"] = {"type": "redis", "url": f"redis://127.0.0.1:{proxy.port}"
                                                          f"{url.path or '/0'}"}
    cache_config["general_settings"]["redis_key_prefix"] = prefix
    yield cache_config, proxy
    proxy.cut()
    client = redis.Redis.from_url(redis_url())
    keys = list(client.scan_iter(prefix + "*"))
    if keys:
        client.delete(*keys)


def wait_for_hit(gpt, **ask) -> bool:
    import time

    for _ in range(100):
        response = gpt.chat.completions.with_raw_response.create(**ask)
        if response.headers["x-dheera-ai-cache-hit"] == "true":
            return True
        time.sleep(0.02)
    return False


def test_redis_keeps_answers_and_a_down_or_slow_redis_only_sends_calls_upstream(live_app, redis_cache, upstream,
                                                                              caplog):
    config, proxy = redis_cache
    gpt = openai.OpenAI(base_url=live_app(config).url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)
    ask = {"model": "gpt-4o-mini", "messages": HI}
    gpt.chat.completions.create(**ask)
    assert wait_for_hit(gpt, **ask)
    answered = chats(upstream)

    proxy.delay = 0.3  # far over the 50 ms a cache command may take: the entry is there, but too late
    slow = gpt.chat.completions.with_raw_response.create(**ask)
    assert slow.headers["x-dheera-ai-cache-hit"] == "false" and slow.parse().choices[0].message.content
    assert chats(upstream) == answered + 1
    assert any("response cache: Redis failed" in r.getMessage() for r in caplog.records)

    proxy.delay = 0.0
    proxy.cut()
    for _ in range(3):
        down = gpt.chat.completions.with_raw_response.create(**ask)
        assert down.status_code == 200 and down.headers["x-dheera-ai-cache-hit"] == "false"
    assert chats(upstream) == answered + 4


def test_a_corrupt_redis_entry_is_a_miss(live_app, redis_cache, upstream):
    import redis

    from tests.support.services import redis_url

    config, _ = redis_cache
    gpt = openai.OpenAI(base_url=live_app(config).url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)
    ask = {"model": "gpt-4o-mini", "messages": HI}
    first = gpt.chat.completions.with_raw_response.create(**ask)
    assert wait_for_hit(gpt, **ask)
    key = config["general_settings"]["redis_key_prefix"] + "cache:" + first.headers["x-dheera-ai-cache-key"]
    redis.Redis.from_url(redis_url()).set(key, b'{"v": 1, "kind": "chat_completions", "body": "oops"}')
    again = gpt.chat.completions.with_raw_response.create(**ask)
    assert again.headers["x-dheera-ai-cache-hit"] == "false" and again.parse().choices[0].message.content


def test_a_gateway_whose_redis_is_down_answers_every_call_from_the_upstream(live_app, redis_cache, upstream,
                                                                           caplog):
    config, proxy = redis_cache
    proxy.cut()
    gpt = openai.OpenAI(base_url=live_app(config).url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)
    for _ in range(3):
        response = gpt.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HI, stream=False)
        assert response.status_code == 200 and response.headers["x-dheera-ai-cache-hit"] == "false"
    assert chats(upstream) == 3
    assert [r.levelname for r in caplog.records if "response cache: Redis failed" in r.getMessage()] == ["WARNING"]


def test_rate_limits_count_hits(client, auth, live, upstream):
    key = client.post("/key/generate", headers=auth, json={"rpm_limit": 2}).json["key"]
    gpt = openai.OpenAI(base_url=live.url + "/v1", api_key=key, max_retries=0, timeout=10)
    for _ in range(2):
        gpt.chat.completions.create(model="gpt-4o-mini", messages=HI)
    with pytest.raises(openai.RateLimitError):
        gpt.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert chats(upstream) == 1


def test_a_hit_teaches_the_router_nothing_about_the_deployment(cache_config, live_app, upstream):
    """A hit never reached the deployment: its tokens do not count toward the deployment's `tpm`
    (LiteLLM's usage- and latency-based routing keep to it), nor its microseconds toward the
    deployment's latency, which would make the deployment look fastest for as long as hits last."""
    cache_config["model_list"][0]["dheera_ai_params"]["tpm"] = 40  # the fake upstream's answer: 16 tokens
    cache_config["router_settings"] = {"routing_strategy": "latency-based-routing"}
    server = live_app(cache_config)
    gpt = openai.OpenAI(base_url=server.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)
    gpt.chat.completions.create(model="gpt-4o-mini", messages=HI)
    router = server.server.app.extensions["dheera_ai"].router
    deployment = router.groups["gpt-4o-mini"].deployments[0]
    latency = router.stats.latency[deployment.id]

    for _ in range(5):  # 5 x 16 tokens: over the deployment's 40 a minute, had they counted
        answer = gpt.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HI)
        assert answer.headers["x-dheera-ai-cache-hit"] == "true"
    assert router.stats.latency[deployment.id] == latency, "the hits were not measured"
    gpt.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "a miss"}])

    assert chats(upstream) == 2
    assert router.stats.latency[deployment.id] != latency, "the miss was measured"
    assert router.stats.usage[deployment.id][2] == 32, "the tokens of the two upstream answers only"
