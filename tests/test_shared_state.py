"""State that every worker (and instance) shares, tried on two real gunicorn workers.

Rate-limit slots taken in Redis come back when Redis does; deployment rpm/tpm are counted
exactly across workers; Responses follow-ups of translated deployments work on any worker.
"""

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import yaml

from tests.conftest import MASTER_KEY
from tests.support.calls import fresh_minute, wait_for
from tests.support.fake_upstream import chat_completion
from tests.support.process import GatewayProcess
from tests.support.services import redis_url
from tests.test_spend import PRICES

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


def gateway(tmp_path, model_list, general=None, router=None) -> GatewayProcess:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"model_list": model_list, "router_settings": router or {},
                                    "general_settings": {"master_key": MASTER_KEY, **(general or {})}}))
    process = GatewayProcess("--config", str(path), "--workers", "2", "--host", "127.0.0.1")
    try:
        process.wait_ready()
        wait_for(lambda: len(process.workers()), 2, timeout=20)
    except BaseException:
        process.close()
        raise
    return process


def upstream_deployment(upstream, name="gpt-4o-mini", **params):
    return {"model_name": name, "model_info": dict(PRICES), "dheera_ai_params": {
        "model": "openai/gpt-4o-mini", "api_base": upstream.url + "/v1", "api_key": "sk-up", **params}}


def chat(url, key=MASTER_KEY, model="gpt-4o-mini"):
    # A connection each, so the calls spread over both workers.
    return requests.post(url + "/v1/chat/completions", timeout=30,
                         headers={"Authorization": f"Bearer {key}", "Connection": "close"},
                         json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 7})


def test_a_redis_blip_mid_call_gives_the_parallel_slot_back_when_redis_returns(tmp_path, upstream,
                                                                                proxied_redis):
    proxy, url, prefix, direct = proxied_redis
    process = gateway(tmp_path, [upstream_deployment(upstream)], {"redis_url": url, "redis_key_prefix": prefix})

    def in_flight():
        return sum(direct.zcard(k) for k in direct.scan_iter(prefix + "limits:*:in_flight"))

    try:
        key = requests.post(process.url + "/key/generate", headers=AUTH, timeout=10,
                            json={"max_parallel_requests": 1}).json()["key"]
        upstream.respond(chat_completion(), delay=1.5)
        answers = []
        slow = threading.Thread(target=lambda: answers.append(chat(process.url, key)))
        slow.start()
        assert wait_for(in_flight, 1) == 1  # the slot is taken in Redis
        proxy.cut()  # ... and Redis goes away before the call ends
        slow.join()
        assert answers[0].status_code == 200
        assert in_flight() == 1, "the release could not have reached Redis"
        proxy.resume()
        back = time.perf_counter()
        # No call needed: the worker that missed the release sends it once Redis answers.
        assert wait_for(in_flight, 0, timeout=10) == 0, "the slot stayed taken in Redis"
        freed = time.perf_counter() - back
        assert [chat(process.url, key).status_code for _ in range(6)] == [200] * 6  # both workers admit it
        assert in_flight() == 0
        print(f"slot given back {freed:.2f} s after Redis returned")
    finally:
        process.close()


def responses_client(url, key=MASTER_KEY):
    import openai

    # Connection: close, so each call may land on either worker.
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=10,
                         default_headers={"Connection": "close"})


def assert_follow_ups_work_for_the_owner_only(owner, stranger, rounds=8):
    import openai

    created = owner.responses.create(model="demo", input="Hello", extra_body={"mock_response": "Hi back"})
    for _ in range(rounds):
        assert owner.responses.retrieve(created.id).output_text == "Hi back"
        assert owner.responses.input_items.list(created.id).data[0].content[0].text == "Hello"
        follow = owner.responses.create(model="demo", input="More", previous_response_id=created.id)
        assert follow.output_text
    # Another key's response is not there for a stranger, whichever way it asks.
    for ask in (lambda: stranger.responses.retrieve(created.id),
                lambda: stranger.responses.input_items.list(created.id),
                lambda: stranger.responses.create(model="demo", input="x", previous_response_id=created.id),
                lambda: stranger.responses.delete(created.id)):
        with pytest.raises(openai.NotFoundError):
            ask()
    owner.responses.delete(created.id)
    for _ in range(4):
        with pytest.raises(openai.NotFoundError):
            owner.responses.retrieve(created.id)


def test_translated_responses_follow_ups_work_on_every_worker_for_their_key_only(tmp_path):
    process = gateway(tmp_path, [{"model_name": "demo", "dheera_ai_params": {"model": "mock/demo"}}])
    try:
        key = requests.post(process.url + "/key/generate", headers=AUTH, json={}, timeout=10).json()["key"]
        # Each of the 8 rounds reaches a worker at random: on per-worker memory, about half of them 404.
        assert_follow_ups_work_for_the_owner_only(responses_client(process.url), responses_client(process.url, key))
    finally:
        process.close()


def test_translated_responses_are_shared_by_instances_on_postgres(make_app, base_config, tmp_path):
    from tests.support.servers import LiveServer
    from tests.support.services import PostgresSchema

    postgres = PostgresSchema()
    servers = []
    try:
        for name in ("a", "b"):
            config = {**base_config, "general_settings": {**base_config["general_settings"],
                                                          "database_url": postgres.url,
                                                          "local_state_dir": str(tmp_path / name)}}
            servers.append(LiveServer(make_app(config)))
        key = requests.post(servers[0].url + "/key/generate", headers=AUTH, json={}, timeout=10).json()["key"]
        made_on_a = responses_client(servers[0].url)
        asked_on_b = responses_client(servers[1].url)
        created = made_on_a.responses.create(model="demo", input="Hello", extra_body={"mock_response": "Hi"})
        assert asked_on_b.responses.retrieve(created.id).output_text == "Hi"
        assert_follow_ups_work_for_the_owner_only(asked_on_b, responses_client(servers[0].url, key), rounds=2)
        assert len(postgres.query("SELECT response_id FROM {schema}.bridged_responses")) == 1 + 2  # the follow-ups
    finally:
        for server in servers:
            server.close()
        postgres.drop()


def served_by(answers) -> list:
    return sorted(a.headers.get("x-dheera-ai-model-id", str(a.status_code)) for a in answers)


def burst(url, count, key=MASTER_KEY) -> list:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: chat(url, key), range(count)))


@pytest.mark.parametrize("strategy", ["usage-based-routing", "latency-based-routing"])
def test_deployment_rpm_is_exact_across_two_workers(tmp_path, upstream, strategy):
    deployments = [{**upstream_deployment(upstream, api_base=f"{upstream.url}/{name}/v1", rpm=3),
                    "model_info": {**PRICES, "id": name}} for name in ("a", "b")]
    process = gateway(tmp_path, deployments, router={"routing_strategy": strategy, "latency_exploration": 0})
    try:
        fresh_minute()
        answers = burst(process.url, 12)
        # Three calls a deployment this minute, whichever worker took them; then a 429 for the group.
        assert served_by(answers) == ["429"] * 6 + ["a"] * 3 + ["b"] * 3
        assert {a.json()["error"]["code"] for a in answers if a.status_code == 429} == {"all_deployments_at_limit"}
        assert upstream.count("/a/") == 3 and upstream.count("/b/") == 3
    finally:
        process.close()


def test_deployment_tpm_counts_every_workers_tokens(tmp_path, upstream):
    # 16 tokens a call: the third call finds 32 of 40 used, the fourth 48.
    process = gateway(tmp_path, [upstream_deployment(upstream, tpm=40)],
                      router={"routing_strategy": "usage-based-routing"})
    try:
        fresh_minute()
        assert [chat(process.url).status_code for _ in range(5)] == [200, 200, 200, 429, 429]
        assert len(upstream.requests) == 3
    finally:
        process.close()


def test_deployment_rpm_is_shared_by_instances_through_redis(make_app, base_config, tmp_path):
    from tests.support.servers import LiveServer

    prefix = f"dheera_ai_test:{uuid.uuid4().hex[:8]}:"
    base_config["model_list"][0]["dheera_ai_params"]["rpm"] = 4
    base_config["router_settings"] = {"routing_strategy": "usage-based-routing"}
    servers = [LiveServer(make_app({**base_config, "general_settings": {
        **base_config["general_settings"], "redis_url": redis_url(), "redis_key_prefix": prefix,
        "local_state_dir": str(tmp_path / name)}})) for name in ("a", "b")]
    try:
        fresh_minute()
        answers = [chat(servers[i % 2].url) for i in range(8)]
        assert [a.status_code for a in answers].count(200) == 4
    finally:
        for server in servers:
            server.close()
