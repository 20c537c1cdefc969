"""State that every worker (and instance) shares, tried on two real gunicorn workers.

Rate-limit slots taken in Redis come back when Redis does; deployment rpm/tpm are counted
exactly across workers; Responses follow-ups of translated deployments work on any worker.
"""

import threading
import time

import requests
import yaml

from tests.conftest import MASTER_KEY
from tests.support.calls import wait_for
from tests.support.fake_upstream import chat_completion
from tests.support.process import GatewayProcess
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
