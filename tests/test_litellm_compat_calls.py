"""LiteLLM's shapes on the model and spend endpoints, over plain HTTP as its e2e tests
(test_openai_endpoints, test_spend_logs, test_models, test_health) drive its proxy."""

import pytest
import requests

from tests.conftest import MASTER_KEY
from tests.support.fake_upstream import chat_completion

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def config(base_config, upstream):
    base_config["model_list"] += [
        # An Azure deployment without base_model: priced by the model its answers name.
        {"model_name": "azure-gpt", "litellm_params": {"model": "azure/my-deployment", "api_base": upstream.url + "/",
                                                      "api_key": "azure-key", "api_version": "2024-10-21"}},
        {"model_name": "moderator", "litellm_params": {"model": "openai/omni-moderation-latest",
                                                      "api_base": upstream.url + "/v1", "api_key": "k"},
         "model_info": {"mode": "moderation", "access_groups": ["safety"]}},
    ]
    return base_config


@pytest.fixture
def gateway(live_app, config):
    return live_app(config)


def spend_rows(server, **params):
    server.server.app.extensions["dheera_ai_state"].spend.flush()
    return requests.get(server.url + "/spend/logs", headers=AUTH, params=params, timeout=10).json()


def test_litellm_headers_are_off_by_default_and_on_when_asked(live_app, config):
    plain = live_app(config)
    answer = requests.post(plain.url + "/v1/chat/completions", headers=AUTH, timeout=10,
                           json={"model": "gpt-4o-mini", "messages": MESSAGES})
    assert answer.headers["x-dheera-ai-model-id"] and "x-litellm-model-id" not in answer.headers

    config["general_settings"]["litellm_compatible_headers"] = True
    compatible = live_app(config)
    answer = requests.post(compatible.url + "/v1/chat/completions", headers=AUTH, timeout=10,
                           json={"model": "gpt-4o-mini", "messages": MESSAGES})
    assert answer.headers["x-litellm-model-id"] == answer.headers["x-dheera-ai-model-id"]
    assert answer.headers["x-litellm-call-id"] == answer.headers["x-dheera-ai-call-id"]
    assert float(answer.headers["x-litellm-response-cost"]) > 0


def test_a_comma_separated_model_list_answers_a_list(gateway):
    answer = requests.post(gateway.url + "/chat/completions", headers=AUTH, timeout=10,
                           json={"model": "gpt-4o-mini,demo,nope", "messages": MESSAGES})
    assert answer.status_code == 200
    first, second, third = answer.json()
    assert first["object"] == second["object"] == "chat.completion"
    assert third["error"]["code"] == "model_not_found"
    refused = requests.post(gateway.url + "/chat/completions", headers=AUTH, timeout=10,
                            json={"model": "gpt-4o-mini,demo", "messages": MESSAGES, "stream": True})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "stream"


def test_moderations_without_a_model_use_the_moderation_model(gateway, upstream):
    answer = requests.post(gateway.url + "/moderations", headers=AUTH, json={"input": "hello"}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert upstream.last.json["model"] == "omni-moderation-latest"


def test_readiness_says_litellm_version(gateway):
    ready = requests.get(gateway.url + "/health/readiness", timeout=10).json()
    assert ready["litellm_version"] == ready["version"]


def test_routes_and_model_access_groups(gateway):
    routes = requests.get(gateway.url + "/routes", headers=AUTH, timeout=10).json()["routes"]
    assert {"path": "/model/new", "methods": ["POST"], "name": "model_admin.new"} in routes
    assert requests.get(gateway.url + "/routes", timeout=10).status_code == 401
    groups = requests.get(gateway.url + "/models", headers=AUTH, params={"only_model_access_groups": "True"},
                          timeout=10).json()["data"]
    assert [g["id"] for g in groups] == ["safety"]


def test_spend_logs_by_request_id_in_litellms_names(gateway, upstream):
    made = requests.post(gateway.url + "/key/generate", headers=AUTH, json={}, timeout=10).json()
    answer = requests.post(gateway.url + "/chat/completions", headers={"Authorization": f"Bearer {made['key']}"},
                           timeout=10, json={"model": "gpt-4o-mini", "messages": MESSAGES})
    call_id = answer.headers["x-dheera-ai-call-id"]
    requests.post(gateway.url + "/chat/completions", headers=AUTH, timeout=10,
                  json={"model": "demo", "messages": MESSAGES})
    ours = spend_rows(gateway, request_id=call_id)
    assert ours["total_count"] == 1 and ours["data"][0]["request_id"] == call_id
    assert ours["data"][0]["response_id"] == answer.json()["id"]

    # LiteLLM's test_keys looks a row up by the answer's id and reads a list.
    upstream.respond({**chat_completion(), "id": "chatcmpl-unique-42"})
    answer = requests.post(gateway.url + "/chat/completions", headers={"Authorization": f"Bearer {made['key']}"},
                           timeout=10, json={"model": "gpt-4o-mini", "messages": MESSAGES})
    [row] = spend_rows(gateway, request_id=answer.json()["id"], format="litellm")
    assert row["request_id"] == "chatcmpl-unique-42" and row["call_id"] == answer.headers["x-dheera-ai-call-id"]
    assert row["model"] == "gpt-4o-mini" and row["spend"] > 0 and row["completion_tokens"] == 7
    assert row["api_key"] == made["token"] and row["startTime"].endswith("Z") and row["status"] == "success"


def test_global_spend_per_team_and_report(gateway):
    team = requests.post(gateway.url + "/team/new", headers=AUTH, json={"team_alias": "a"}, timeout=10).json()
    key = requests.post(gateway.url + "/key/generate", headers=AUTH, json={"team_id": team["team_id"]},
                        timeout=10).json()["key"]
    requests.post(gateway.url + "/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=10,
                  json={"model": "gpt-4o-mini", "messages": MESSAGES})
    gateway.server.app.extensions["dheera_ai_state"].spend.flush()
    teams = requests.get(gateway.url + "/global/spend/teams", headers=AUTH, timeout=10).json()
    [total] = teams["total_spend_per_team"]
    assert total["team_id"] == team["team_id"] and total["total_spend"] > 0
    report = requests.get(gateway.url + "/global/spend/report", headers=AUTH, params={"group_by": "team"},
                          timeout=10).json()
    assert report[0]["teams"][0]["team_name"] == team["team_id"]


def test_an_azure_deployment_without_base_model_is_priced_by_the_answers_model(gateway, upstream):
    upstream.respond(chat_completion(model="gpt-4o-2024-08-06"))
    answer = requests.post(gateway.url + "/chat/completions", headers=AUTH, timeout=10,
                           json={"model": "azure-gpt", "messages": MESSAGES})
    assert answer.status_code == 200, answer.text
    assert float(answer.headers["x-dheera-ai-response-cost"]) > 0
    [row] = spend_rows(gateway, model="azure-gpt")["data"]
    assert row["priced"] is True and row["cost"] > 0


def test_model_group_alias_answers_for_its_group(live_app, config):
    config["router_settings"] = {"model_group_alias": {"my-special-alias": "demo",
                                                       "hidden-alias": {"model": "demo", "hidden": True}}}
    gateway = live_app(config)
    for name in ("my-special-alias", "hidden-alias"):
        answer = requests.post(gateway.url + "/chat/completions", headers=AUTH, timeout=10,
                               json={"model": name, "messages": MESSAGES})
        assert answer.status_code == 200 and answer.headers["x-dheera-ai-model-group"] == "demo"
    listed = [m["id"] for m in requests.get(gateway.url + "/v1/models", headers=AUTH, timeout=10).json()["data"]]
    assert "my-special-alias" in listed and "hidden-alias" not in listed


def test_a_model_group_alias_to_nowhere_stops_start_up(make_app, config):
    from dheera_ai.config import ConfigError

    config["router_settings"] = {"model_group_alias": {"a": "no-such-group"}}
    with pytest.raises(ConfigError) as exc:
        make_app(config)
    assert ("router_settings.model_group_alias.a: names no configured model group ('no-such-group'); "
            "write a model_name or {model, hidden}") in exc.value.problems
