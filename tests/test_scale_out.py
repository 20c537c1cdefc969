"""Scale-out for real: two `dheera_ai` instances (2 gunicorn workers each, one config file) behind
nginx, sharing PostgreSQL and Redis.

Every test goes through each instance directly and through nginx, and prints what it measured
(`pytest -s tests/test_scale_out.py`): keys made anywhere work everywhere at once, a revocation
reaches every worker within a second, rate limits and budgets are exact across the instances,
each call leaves exactly one spend row, a deployment one instance cooled down is avoided by
the other, and an answer one instance cached is a hit on the other.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests
import yaml

from dheera_ai.router import cooldowns
from proxy_app.virtual_keys import hash_key
from tests.support.calls import fresh_minute, post_many, wait_for
from tests.support.fake_upstream import FakeUpstream, Script, chat_chunks
from tests.support.nginx import NGINX, Nginx
from tests.support.process import GatewayProcess
from tests.support.servers import hang_up_mid_stream
from tests.support.services import PostgresSchema, redis_url
from tests.test_spend import PLAIN_COST, PRICES

MASTER = "sk-scale-out-master-key"
pytestmark = pytest.mark.skipif(NGINX is None and os.environ.get("CI") != "true",
                                reason="nginx is not installed (apt-get install nginx-light); CI installs it")


def deployment(upstream, group, name, **model_info):
    return {"model_name": group, "model_info": {"id": name, **model_info},
            "dheera_ai_params": {"model": "openai/gpt-4o-mini", "api_base": f"{upstream.url}/{name}/v1",
                                 "api_key": "sk-up"}}


@dataclass
class Stack:
    a: GatewayProcess
    b: GatewayProcess
    nginx: str
    upstream: FakeUpstream
    schema: PostgresSchema
    redis_prefix: str

    @property
    def entrances(self) -> list[str]:
        """Instance A, instance B, and nginx in front of both."""
        return [self.a.url, self.b.url, self.nginx]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    import redis

    url = redis_url()
    schema = PostgresSchema()
    prefix = f"dheera_ai_test:{uuid.uuid4().hex[:12]}:"
    upstream = FakeUpstream()
    upstream.always("/broken/", status=500)
    upstream.always("/pair-a/", status=500)
    words = [f" word{i:03d}" for i in range(200)]
    upstream.route("/long/v1/chat/completions", lambda _: Script(events=chat_chunks(words=words), event_delay=0.01))
    tmp = tmp_path_factory.mktemp("scale-out")
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump({
        "model_list": [deployment(upstream, "gpt-4o-mini", "plain", **PRICES),
                       deployment(upstream, "broken", "broken"), deployment(upstream, "long-stream", "long"),
                       deployment(upstream, "pair", "pair-a"), deployment(upstream, "pair", "pair-b")],
        "router_settings": {"num_retries": 1, "retry_after": 0.001, "allowed_fails": 1, "cooldown_time": 60},
        # The response cache on the shared Redis, for the requests that ask (the other tests count every call).
        "dheera_ai_settings": {"cache": True, "cache_params": {"mode": "default_off"}},
        "general_settings": {"master_key": MASTER, "database_url": schema.url, "redis_url": url,
                             "redis_key_prefix": prefix, "spend_flush_seconds": 0.05}}))
    began = time.perf_counter()
    instances, nginx = [], None
    try:
        for _ in range(2):
            instances.append(GatewayProcess("--config", str(config), "--workers", "2", "--host", "127.0.0.1"))
        for instance in instances:
            instance.wait_ready()
        nginx = Nginx(tmp, [i.port for i in instances])
        print(f"\ntwo instances (2 workers each) and nginx ready in {time.perf_counter() - began:.1f}s")
        yield Stack(*instances, nginx.url, upstream, schema, prefix)
    finally:
        if nginx is not None:
            nginx.close()
        for instance in instances:
            instance.close()
        upstream.close()
        schema.drop()
        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(prefix + "*"))
        if keys:
            client.delete(*keys)
        print(f"\nscale-out module, start to stop: {time.perf_counter() - began:.1f}s")


def admin(url, path, **body) -> dict:
    response = requests.post(url + path, json=body, headers={"Authorization": f"Bearer {MASTER}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def chat(url, key, model="gpt-4o-mini", **body) -> requests.Response:
    """One call on a connection of its own (so the calls spread over an instance's workers)."""
    return requests.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=10,
                         json={"model": model, "messages": [{"role": "user", "content": "hi"}], **body})


def statuses(stack, key, each=4) -> list[int]:
    return [chat(url, key).status_code for url in stack.entrances for _ in range(each)]


def seconds_until(condition, timeout=3.0) -> float | None:
    """Seconds until `condition()` first held, None if it did not within `timeout`."""
    began = time.perf_counter()
    while time.perf_counter() - began < timeout:
        if condition():
            return time.perf_counter() - began
        time.sleep(0.02)
    return None


def test_a_key_made_on_one_instance_works_on_the_others_at_once(stack):
    for name, maker in zip(("A", "B", "nginx"), stack.entrances, strict=True):
        key = admin(maker, "/key/generate", models=["gpt-4o-mini"])["key"]
        answered = statuses(stack, key, each=2)
        print(f"key made on {name}: its first calls on A, B and nginx answered {answered}")
        assert answered == [200] * 6
    assert stack.schema.rows_containing(key[3:]) == 0, "keys are stored hashed"


def test_a_revocation_on_one_instance_is_refused_everywhere_within_a_second(stack):
    key = admin(stack.a.url, "/key/generate")["key"]
    assert statuses(stack, key, each=6) == [200] * 18  # cached by every worker of both instances

    took = {}
    admin(stack.a.url, "/key/block", key=key)
    took["blocked on A, all refused"] = seconds_until(lambda: set(statuses(stack, key)) == {401})
    admin(stack.b.url, "/key/unblock", key=key)
    took["unblocked on B, all accepted"] = seconds_until(lambda: set(statuses(stack, key)) == {200})
    admin(stack.b.url, "/key/delete", keys=[key])
    took["deleted on B, all refused"] = seconds_until(lambda: set(statuses(stack, key)) == {401})
    print("rounds of 12 calls over A, B and nginx: " + "; ".join(
        f"{what} within {seconds:.3f}s" if seconds is not None else f"{what}: not within 3s"
        for what, seconds in took.items()))
    assert all(seconds is not None and seconds <= 1.0 for seconds in took.values()), took
    refused = chat(stack.a.url, key)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "key_deleted"
    assert set(statuses(stack, key, each=6)) == {401}


def test_rate_limits_are_exact_across_instances(stack):
    fresh_minute()
    key = admin(stack.nginx, "/key/generate", rpm_limit=10)["key"]
    answered = post_many(stack.entrances, key, 30)  # 10 each on A, B and nginx, all at once
    print(f"rpm_limit 10, 30 calls at once over A, B and nginx: {answered.count(200)} x 200, "
          f"{answered.count(429)} x 429")
    assert sorted(answered) == [200] * 10 + [429] * 20
    for instance in (stack.a, stack.b):  # counted in Redis, as instances on different hosts would
        readiness = requests.get(instance.url + "/health/readiness", timeout=10).json()
        assert readiness["spend"]["rate_limits"]["backend"] == "redis"

    # Tokens count when a call ends, so a tpm limit is exact for calls one after another: the
    # tokens one instance's call used are what the next instance sees.
    key = admin(stack.a.url, "/key/generate", tpm_limit=30)["key"]
    first, second, third = (chat(url, key) for url in stack.entrances)
    assert first.status_code == 200 and first.headers["x-ratelimit-remaining-tokens"] == "30"
    assert second.status_code == 200 and second.headers["x-ratelimit-remaining-tokens"] == "14"  # 16 used on A
    assert third.status_code == 429 and "tpm_limit is 30" in third.json()["error"]["message"]
    assert chat(stack.a.url, key).status_code == 429


def test_a_budget_is_never_overspent_across_instances(stack):
    budget = 6 * PLAIN_COST
    key = admin(stack.b.url, "/key/generate", max_budget=budget)["key"]
    key_hash = hash_key(key)

    def rows():
        return stack.schema.query("SELECT COUNT(*) FROM {schema}.spend_logs WHERE key_hash = %s", key_hash)[0][0]

    def spent():
        found = stack.schema.query("SELECT spend FROM {schema}.spend_totals WHERE scope = 'key' AND scope_id = %s",
                                   key_hash)
        return found[0][0] if found else 0.0

    made, rounds = 0, []
    for _ in range(8):  # rounds of 9 calls at once over A, B and nginx, until the budget refuses them all
        answered = post_many(stack.entrances, key, 9, max_tokens=7)
        made += len(answered)
        assert set(answered) <= {200, 400}, answered
        assert wait_for(rows, made) == made  # every call's row is stored: no holds left
        rounds.append(answered.count(200))
        assert spent() <= budget + 1e-12, (rounds, spent())
        if rounds[-1] == 0:
            break
    print(f"budget ${budget:.6f} (6 calls): admitted per round {rounds}, spent ${spent():.6f}")
    # A call is admitted only while spend plus the holds of calls in flight is under the budget,
    # and a hold (the body as prompt, max_tokens as answer) is never below the call's real cost:
    # with a budget of exactly 6 calls, exactly 6 are admitted, however they interleave.
    assert sum(rounds) == 6 and rounds[-1] == 0
    assert spent() == pytest.approx(budget, abs=1e-12)
    assert stack.schema.query("SELECT COUNT(*) FROM {schema}.budget_holds")[0][0] == 0
    refused = chat(stack.nginx, key, max_tokens=7)
    assert refused.status_code == 400 and refused.json()["error"]["type"] == "budget_exceeded"


def test_each_call_leaves_exactly_one_spend_row(stack):
    key = admin(stack.a.url, "/key/generate")["key"]
    a, b, nginx = stack.entrances

    def stream(url):
        response = requests.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                 timeout=10, stream=True,
                                 json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                                       "stream": True})
        assert b"data: [DONE]" in response.content
        return response

    def hang_up(url) -> str:
        """A stream the client leaves after a few chunks; its call id."""
        received = hang_up_mid_stream(url, key, {"model": "long-stream", "stream": True,
                                                 "messages": [{"role": "user", "content": "count"}]},
                                      enough=lambda received: received.count(b"word") >= 5)
        return re.search(rb"(?i)x-dheera-ai-call-id: *(\S+)", received).group(1).decode()

    broken_before = stack.upstream.count("/broken/")
    calls = [lambda url=url: chat(url, key) for url in (a, b, nginx) for _ in range(3)]
    calls += [lambda: stream(a), lambda: stream(b), lambda: stream(nginx)]
    calls += [lambda: chat(b, key, model="broken"), lambda: chat(nginx, key, model="broken")]
    with ThreadPoolExecutor(len(calls) + 2) as pool:
        left = [pool.submit(hang_up, url) for url in (b, nginx)]
        answers = list(pool.map(lambda call: call(), calls))
        ids = sorted([r.headers["x-dheera-ai-call-id"] for r in answers] + [f.result() for f in left])
    assert [r.status_code for r in answers] == [200] * 12 + [500] * 2
    assert stack.upstream.count("/broken/") - broken_before == 4, "each failing call was retried once"
    assert len(set(ids)) == len(calls) + 2

    def stored():
        return [r[0] for r in stack.schema.query("SELECT request_id FROM {schema}.spend_logs WHERE key_hash = %s "
                                                 "ORDER BY request_id", hash_key(key))]

    assert wait_for(stored, ids) == ids  # each call once, nothing else
    time.sleep(0.3)  # more rounds of both instances' writers change nothing
    assert stored() == ids
    kinds = stack.schema.query("SELECT stream, stream_cut, status, retries FROM {schema}.spend_logs "
                               "WHERE key_hash = %s ORDER BY stream, stream_cut, status", hash_key(key))
    assert kinds == [(0, 0, 200, 0)] * 9 + [(0, 0, 500, 1)] * 2 + [(1, 0, 200, 0)] * 3 + [(1, 1, 200, 0)] * 2
    for url in (a, b):
        assert wait_for(lambda url=url: requests.get(url + "/health/readiness", timeout=10).json()["spend"]
                        ["spool_pending_bytes"], 0) == 0
    print(f"{len(ids)} calls (9 plain, 3 streamed, 2 streams left mid-way, 2 failing after a retry) over A, B "
          f"and nginx: {len(stored())} spend rows, one per call id")


def test_a_deployment_cooled_down_on_one_instance_is_avoided_by_the_other(stack):
    import redis

    upstream = stack.upstream
    for _ in range(30):  # the router picks at random: call until instance A has tried pair-a once
        answer = chat(stack.a.url, MASTER, model="pair")
        assert answer.status_code == 200 and answer.headers["x-dheera-ai-model-id"] == "pair-b"
        if upstream.count("/pair-a/"):
            break
    failures = upstream.count("/pair-a/")
    assert failures == 1
    resting = redis.Redis.from_url(redis_url()).hget(stack.redis_prefix + "cooldown", "pair-a")
    assert resting is not None and float(resting) > time.time() + 30

    time.sleep(cooldowns.REFRESH + 0.1)  # each worker re-reads the shared cooldowns at most this often
    answers = [chat(url, MASTER, model="pair") for url in (stack.b.url, stack.nginx) for _ in range(10)]
    print(f"pair-a failed once on A; then 20 calls on B and nginx: {upstream.count('/pair-a/') - failures} "
          f"reached pair-a, {sum(r.headers['x-dheera-ai-model-id'] == 'pair-b' for r in answers)} went to pair-b")
    assert all(r.status_code == 200 and r.headers["x-dheera-ai-model-id"] == "pair-b" for r in answers)
    assert all(r.headers["x-dheera-ai-attempted-retries"] == "0" for r in answers)
    assert upstream.count("/pair-a/") == failures
    metrics = requests.get(stack.b.url + "/metrics", headers={"Authorization": f"Bearer {MASTER}"}, timeout=10).text
    assert 'dheera_ai_deployments_cooling_down{model_group="pair"} 1.0' in metrics
    for instance in (stack.a, stack.b):
        cooldown_store = requests.get(instance.url + "/health/readiness", timeout=10).json()["cooldowns"]
        assert cooldown_store == {"backend": "redis", "shared_by": "every instance"}


def test_an_answer_cached_on_one_instance_is_a_hit_on_the_other(stack):
    key = admin(stack.a.url, "/key/generate", models=["gpt-4o-mini"])["key"]
    ask = {"messages": [{"role": "user", "content": f"cache me {uuid.uuid4().hex}"}], "cache": {"use-cache": True}}
    before = stack.upstream.count("/plain/")
    answers = [chat(stack.a.url, key, **ask)]
    began = time.perf_counter()
    # Instance A writes the answer to Redis off the call's path; B sees it a moment later.
    while time.perf_counter() - began < 3 and answers[-1].headers["x-dheera-ai-cache-hit"] != "true":
        answers.append(chat(stack.b.url, key, **ask))
    waited = time.perf_counter() - began
    hits = [chat(url, key, **ask) for url in stack.entrances for _ in range(3)]
    streamed = requests.post(stack.b.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                             json={"model": "gpt-4o-mini", "stream": True, **ask}, timeout=10)
    answers += hits + [streamed]

    assert answers[0].status_code == 200 and answers[0].headers["x-dheera-ai-cache-hit"] == "false"
    assert [h.headers["x-dheera-ai-cache-hit"] for h in hits + [streamed]] == ["true"] * 10
    text = answers[0].json()["choices"][0]["message"]["content"]
    assert all(h.json()["choices"][0]["message"]["content"] == text for h in hits)
    assert text in streamed.text and streamed.text.endswith("data: [DONE]\n\n")
    misses = [a for a in answers if a.headers["x-dheera-ai-cache-hit"] == "false"]
    assert stack.upstream.count("/plain/") - before == len(misses), "a hit never reaches the upstream"

    def rows():
        return stack.schema.query("SELECT cache_hit, cost, saved_cost FROM {schema}.spend_logs WHERE key_hash = %s",
                                  hash_key(key))
    assert wait_for(lambda: len(rows()), len(answers)) == len(answers), "one spend row per call, hits included"
    found = rows()
    assert sorted(bool(r[0]) for r in found) == sorted(a.headers["x-dheera-ai-cache-hit"] == "true"
                                                        for a in answers)
    assert all(r[1] == 0 and r[2] == pytest.approx(PLAIN_COST) for r in found if r[0])
    assert all(r[1] == pytest.approx(PLAIN_COST) and r[2] == 0 for r in found if not r[0])
    print(f"cached on A, a hit on B after {waited:.3f}s ({len(misses)} call(s) went upstream); 10 more hits on "
          f"A, B and nginx, plain and streamed; {len(found)} spend rows, the hits at cost 0 with what they saved")
