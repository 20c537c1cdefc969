"""Budgets and rate limits on keys, users and teams: refusals, headers, concurrency, Redis."""

import time

import pytest
import requests

from tests.conftest import MASTER_KEY
from tests.support.calls import fresh_minute, post_many
from tests.support.fake_upstream import chat_completion
from tests.support.servers import free_port
from tests.support.services import PostgresSchema, redis_url
from tests.test_spend import PLAIN_COST, PRICES

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture
def limits_config(base_config):
    base_config["model_list"][0]["model_info"] = dict(PRICES)
    base_config["general_settings"]["spend_flush_seconds"] = 0.05
    return base_config


@pytest.fixture
def app(make_app, limits_config):
    return make_app(limits_config)


def generate(client, **fields):
    response = client.post("/key/generate", headers=AUTH, json=fields)
    assert response.status_code == 200, response.json
    return response.json["key"]


def chat(client, key, **body):
    return client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                       json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **body})


# -- budgets -------------------------------------------------------------------------------------

def test_a_spent_budget_refuses_with_spend_and_budget_in_the_message(app, client):
    key = generate(client, max_budget=PLAIN_COST * 1.5)
    assert chat(client, key, max_tokens=7).status_code == 200
    app.extensions["dheera_ai_state"].spend.flush()
    assert chat(client, key, max_tokens=7).status_code == 200  # 1 call spent: still under
    app.extensions["dheera_ai_state"].spend.flush()
    refused = chat(client, key, max_tokens=7)
    assert refused.status_code == 400
    error = refused.json["error"]
    assert error["type"] == "budget_exceeded"
    assert f"${2 * PLAIN_COST:.6f}" in error["message"] and f"${1.5 * PLAIN_COST:.6f}" in error["message"]


def test_a_team_budget_holds_for_all_its_keys(app, client):
    assert client.post("/team/new", headers=AUTH, json={"team_id": "eng", "max_budget": PLAIN_COST / 2}).status_code \
        == 200
    first, second = generate(client, team_id="eng"), generate(client, team_id="eng")
    assert chat(client, first).status_code == 200
    app.extensions["dheera_ai_state"].spend.flush()
    refused = chat(client, second)
    assert refused.status_code == 400 and "team eng" in refused.json["error"]["message"]
    assert client.get("/team/info", headers=AUTH, query_string={"team_id": "eng"}).json["team_info"]["spend"] \
        == pytest.approx(PLAIN_COST)


def test_a_user_budget_holds_for_all_their_keys(app, client):
    client.post("/user/new", headers=AUTH, json={"user_id": "ann", "max_budget": PLAIN_COST / 2,
                                                 "auto_create_key": False})
    first, second = generate(client, user_id="ann"), generate(client, user_id="ann")
    assert chat(client, first).status_code == 200
    refused = chat(client, second)  # the first call counts, held or (once its row is stored) spent
    assert refused.status_code == 400 and "user ann" in refused.json["error"]["message"]
    app.extensions["dheera_ai_state"].spend.flush()
    message = chat(client, second).json["error"]["message"]
    assert f"spend ${PLAIN_COST:.6f} (+$0.000000 held" in message
    info = client.get("/user/info", headers=AUTH, query_string={"user_id": "ann"}).json
    assert info["user_info"]["spend"] == pytest.approx(PLAIN_COST)


def test_a_budget_window_resets_after_its_duration(app, client):
    key = generate(client, max_budget=PLAIN_COST / 2, budget_duration="2s")
    time.sleep(2 - time.time() % 2)  # start at the beginning of a window
    assert chat(client, key).status_code == 200
    app.extensions["dheera_ai_state"].spend.flush()
    assert chat(client, key).status_code == 400
    time.sleep(2 - time.time() % 2 + 0.05)
    assert chat(client, key).status_code == 200


def test_concurrent_calls_overspend_by_less_than_one_call(app, live):
    client = app.test_client()
    budget = 10 * PLAIN_COST
    key = generate(client, max_budget=budget)
    admitted = 0
    for _ in range(6):  # rounds of 8 calls at once; rows settle between rounds
        admitted += post_many(live.url, key, 8, max_tokens=7).count(200)
        app.extensions["dheera_ai_state"].spend.flush()
    spend = client.get("/spend/report", headers=AUTH).json["total_spend"]
    assert spend == pytest.approx(admitted * PLAIN_COST)
    assert budget - PLAIN_COST < spend < budget + PLAIN_COST, (admitted, spend)
    print(f"budget ${budget:.6f}, 48 calls 8 at a time: {admitted} admitted, spent ${spend:.6f} "
          f"(overspend ${max(spend - budget, 0):.6f})")


# -- rate limits ---------------------------------------------------------------------------------

def test_rpm_counts_down_in_the_headers_then_refuses_with_retry_after(client):
    fresh_minute()
    key = generate(client, rpm_limit=3, tpm_limit=1000)
    remaining = []
    for _ in range(3):
        response = chat(client, key)
        assert response.status_code == 200
        remaining.append(int(response.headers["x-ratelimit-remaining-requests"]))
        assert response.headers["x-ratelimit-reset-requests"].endswith("s")
    assert remaining == [2, 1, 0]
    refused = chat(client, key)
    assert refused.status_code == 429 and refused.json["error"]["type"] == "rate_limit_error"
    assert "rpm_limit is 3" in refused.json["error"]["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert int(refused.headers["x-ratelimit-remaining-tokens"]) == 1000 - 3 * 16


def test_tpm_refuses_once_the_minutes_tokens_are_used(client):
    fresh_minute()
    key = generate(client, tpm_limit=30)
    first = chat(client, key)
    assert first.headers["x-ratelimit-remaining-tokens"] == "30"
    assert chat(client, key).headers["x-ratelimit-remaining-tokens"] == "14"  # 16 used by the first
    refused = chat(client, key)
    assert refused.status_code == 429 and "tpm_limit is 30" in refused.json["error"]["message"]


def test_a_team_rpm_is_shared_by_its_keys_and_a_user_rpm_by_theirs(client):
    fresh_minute()
    client.post("/team/new", headers=AUTH, json={"team_id": "eng", "rpm_limit": 2})
    client.post("/user/new", headers=AUTH, json={"user_id": "ann", "rpm_limit": 1, "auto_create_key": False})
    first, second = generate(client, team_id="eng"), generate(client, team_id="eng")
    assert chat(client, first).status_code == 200 and chat(client, second).status_code == 200
    refused = chat(client, first)
    assert refused.status_code == 429 and "team eng: rpm_limit is 2" in refused.json["error"]["message"]
    mine, also_mine = generate(client, user_id="ann"), generate(client, user_id="ann")
    assert chat(client, mine).status_code == 200
    assert chat(client, also_mine).status_code == 429


def test_a_keys_per_model_limits_come_from_its_metadata(client):
    fresh_minute()
    key = generate(client, metadata={"model_rpm_limit": {"gpt-4o-mini": 1}})
    assert chat(client, key).status_code == 200
    refused = chat(client, key)
    assert refused.status_code == 429 and "rpm_limit is 1" in refused.json["error"]["message"]
    demo = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                       json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]})
    assert demo.status_code == 200  # other models are not bounded by it


def test_a_stream_carries_the_rate_limit_headers(client):
    key = generate(client, rpm_limit=100)
    response = chat(client, key, stream=True)
    assert response.status_code == 200 and response.headers["x-ratelimit-remaining-requests"] == "99"
    response.get_data()


def test_max_parallel_requests_refuses_the_calls_beyond_it(app, live, upstream):
    key = generate(app.test_client(), max_parallel_requests=2)
    upstream.always("/v1/chat/completions", body=chat_completion(), delay=0.5)
    # Every call claims the same call id: it must not make them one call in flight.
    statuses = post_many(live.url, key, 5, headers={"x-dheera-ai-call-id": "same-id"})
    assert sorted(statuses) == [200, 200, 429, 429, 429]
    upstream.clear()
    assert chat(app.test_client(), key).status_code == 200  # the slots came back


def test_unlimited_callers_get_no_rate_headers(client, auth):
    response = client.post("/v1/chat/completions", headers=auth,
                           json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert "x-ratelimit-remaining-requests" not in response.headers


# -- across instances ----------------------------------------------------------------------------

def test_two_instances_share_rpm_and_budget_through_redis_and_postgres(make_app, limits_config, tmp_path):
    postgres = PostgresSchema()
    url = redis_url()
    configs = []
    for name in ("a", "b"):
        config = {**limits_config, "general_settings": {
            **limits_config["general_settings"], "database_url": postgres.url, "redis_url": url,
            "redis_key_prefix": f"dheera_ai_test:{time.time_ns()}:", "local_state_dir": str(tmp_path / name)}}
        configs.append(config)
    try:
        prefix = configs[0]["general_settings"]["redis_key_prefix"]
        configs[1]["general_settings"]["redis_key_prefix"] = prefix
        first, second = (make_app(c).test_client() for c in configs)
        fresh_minute()
        key = generate(first, rpm_limit=5)
        statuses = [chat(instance, key).status_code for _ in range(4) for instance in (first, second)]
        assert statuses.count(200) == 5 and statuses.count(429) == 3
        # The budget lives in the shared store: spent through one instance, refused by the other.
        budgeted = generate(first, max_budget=PLAIN_COST / 2)
        assert chat(first, budgeted).status_code == 200
        refused = chat(second, budgeted)
        assert refused.status_code == 400 and refused.json["error"]["type"] == "budget_exceeded"
    finally:
        postgres.drop()


def test_a_redis_outage_degrades_limits_to_this_instance(make_app, limits_config, tmp_path, caplog):
    limits_config["general_settings"]["redis_url"] = f"redis://127.0.0.1:{free_port()}/0"
    client = make_app(limits_config).test_client()
    fresh_minute()
    key = generate(client, rpm_limit=2)
    statuses = [chat(client, key).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert "rate limits count per instance" in caplog.text


def test_redis_counts_exactly_under_concurrency(make_app, limits_config, live_app):
    limits_config["general_settings"].update(redis_url=redis_url(),
                                             redis_key_prefix=f"dheera_ai_test:{time.time_ns()}:")
    server = live_app(limits_config)
    fresh_minute()
    key = generate(requests_client(server.url), rpm_limit=7)
    assert post_many(server.url, key, 20).count(200) == 7


class requests_client:  # noqa: N801 - stands in for a test client over real HTTP
    def __init__(self, url):
        self.url = url

    def post(self, path, headers, json):
        response = requests.post(self.url + path, headers=headers, json=json, timeout=10)
        response.json = response.json()
        return response
