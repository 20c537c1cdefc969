"""Model management as LiteLLM's scripts and UI use it: /model/new, /model/update, /model/delete,
/model/info, /v2/model/info, /model_group/info, over plain HTTP. Added models live in the state
store: every worker and instance serves them within about a second, and after a restart."""

import time

import pytest
import requests

from tests.conftest import MASTER_KEY

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


def post(url, path, key=MASTER_KEY, **body):
    return requests.post(url + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=10)


def get(url, path, key=MASTER_KEY, **params):
    return requests.get(url + path, params=params, headers={"Authorization": f"Bearer {key}"}, timeout=10)


def chat(url, model, key=MASTER_KEY):
    return post(url, "/v1/chat/completions", key, model=model, messages=[{"role": "user", "content": "hi"}])


def eventually(check, timeout=3.0):
    deadline = time.time() + timeout
    while True:
        if check() or time.time() > deadline:
            return check()
        time.sleep(0.05)


@pytest.fixture
def two_workers(live_app, base_config):
    """Two gateways on one state store, as two workers (or two instances) are."""
    return live_app(base_config).url, live_app(base_config).url


def test_a_model_added_is_served_by_every_worker_and_survives_a_restart(two_workers, live_app, base_config, upstream):
    one, other = two_workers
    added = post(one, "/model/new", model_name="added-model",
                 litellm_params={"model": "openai/gpt-4o-mini", "api_base": upstream.url + "/v1",
                                 "api_key": "sk-added-model-secret-123456", "rpm": "100"},
                 model_info={"input_cost_per_token": "1e-06"})
    assert added.status_code == 200, added.text
    model_id = added.json()["model_id"]
    assert chat(one, "added-model").status_code == 200  # the worker that added it: at once
    assert eventually(lambda: chat(other, "added-model").status_code == 200)  # the other: within a second

    restarted = live_app(base_config).url
    assert chat(restarted, "added-model").status_code == 200
    [row] = get(restarted, "/model/info", litellm_model_id=model_id).json()["data"]
    assert row["model_info"]["db_model"] is True and row["model_info"]["input_cost_per_token"] == 1e-06
    assert row["litellm_params"]["rpm"] == 100
    assert "sk-added-model-secret-123456" not in str(row)  # secrets hidden


def test_update_and_delete_reach_the_other_workers(two_workers, upstream):
    one, other = two_workers
    model_id = post(one, "/model/new", model_name="movable",
                    litellm_params={"model": "mock/movable"}).json()["model_id"]
    renamed = post(one, "/model/update", model_name="moved", model_info={"id": model_id})
    assert renamed.status_code == 200 and renamed.json()["model_name"] == "moved"
    assert eventually(lambda: chat(other, "moved").status_code == 200)
    assert chat(other, "movable").status_code == 400
    assert post(one, "/model/delete", id=model_id).status_code == 200
    assert eventually(lambda: chat(other, "moved").status_code == 400)
    assert post(one, "/model/delete", id=model_id).status_code == 404


def test_config_models_are_listed_and_refused_on_delete(live):
    data = get(live.url, "/model/info").json()["data"]
    config_model = next(m for m in data if m["model_name"] == "gpt-4o-mini")
    assert config_model["model_info"]["db_model"] is False
    assert config_model["litellm_params"]["api_key"] != "sk-upstream-secret"
    refused = post(live.url, "/model/delete", id=config_model["model_info"]["id"])
    assert refused.status_code == 400
    assert "defined in the config file" in refused.json()["error"]["message"]
    assert get(live.url, "/v2/model/info").json()["data"] == data


def test_bad_model_bodies_are_400_naming_what_is_wrong(live):
    cases = [({"litellm_params": {"model": "mock/x"}}, "model_name"),
             ({"model_name": "x", "litellm_params": {"model": "opnai/x"}}, "litellm_params.model"),
             ({"model_name": "x", "litellm_params": {"model": "mock/x", "rpm": "many"}}, "litellm_params.rpm"),
             ({"model_name": "x", "litellm_params": {"model": "mock/x", "api_key": "os.environ/OPENAI_API_KEY"}},
              "litellm_params.api_key")]
    for body, param in cases:
        answer = post(live.url, "/model/new", **body)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["error"]["param"] == param, answer.json()


def test_model_routes_are_admin_only_for_changes_and_filtered_for_keys(live):
    key = post(live.url, "/key/generate", models=["demo"]).json()["key"]
    assert post(live.url, "/model/new", key, model_name="x", litellm_params={"model": "mock/x"}).status_code == 403
    assert [m["model_name"] for m in get(live.url, "/model/info", key).json()["data"]] == ["demo"]
    groups = get(live.url, "/model_group/info").json()["data"]
    assert {g["model_group"]: g["providers"] for g in groups} == {"gpt-4o-mini": ["openai"], "demo": ["mock"]}


def test_two_instances_on_postgresql_share_added_models(live_app, base_config):
    from tests.support.services import PostgresSchema

    schema = PostgresSchema()
    try:
        base_config["general_settings"]["database_url"] = schema.url
        one, other = live_app(base_config).url, live_app(base_config).url
        added = post(one, "/model/new", model_name="pg-model", litellm_params={"model": "mock/pg"})
        model_id = added.json()["model_id"]
        assert eventually(lambda: chat(other, "pg-model").status_code == 200)
        assert post(other, "/model/delete", id=model_id).status_code == 200
        assert eventually(lambda: chat(one, "pg-model").status_code == 400)
    finally:
        schema.drop()


def test_a_key_sees_models_without_their_addresses(live):
    key = post(live.url, "/key/generate", models=["gpt-4o-mini"]).json()["key"]
    [row] = get(live.url, "/model/info", key).json()["data"]
    assert row["litellm_params"] == {"model": "openai/gpt-4o-mini"}
