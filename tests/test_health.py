"""`GET /health` (each deployment checked) and what `/health/readiness` reports."""

import json

import pytest

from tests.conftest import MASTER_KEY


@pytest.fixture
def health_config(base_config, upstream):
    config = dict(base_config)
    config["model_list"] = base_config["model_list"] + [
        {"model_name": "broken", "dheera_ai_params": {"model": "openai/gpt-4o", "api_base": upstream.url + "/down/v1",
                                                      "api_key": "sk-live-upstreamsecret0123456789"}},
        {"model_name": "vectors", "dheera_ai_params": {"model": "openai/text-embedding-3-small",
                                                       "api_base": upstream.url + "/v1", "api_key": "sk-x-12345678"},
         "model_info": {"mode": "embedding"}},
        {"model_name": "pictures", "dheera_ai_params": {"model": "mock/dall-e"},
         "model_info": {"mode": "image_generation"}},
    ]
    return config


def test_health_lists_healthy_and_unhealthy_deployments_in_litellm_shape(make_app, health_config, upstream, auth):
    upstream.always("/down/", status=401, message="Incorrect API key provided: sk-live-upstreamsecret0123456789")
    client = make_app(health_config).test_client()
    answer = client.get("/health", headers=auth)
    assert answer.status_code == 200
    body = answer.json
    healthy = {e["model_name"] for e in body["healthy_endpoints"]}
    unhealthy = {e["model_name"]: e for e in body["unhealthy_endpoints"]}
    assert healthy == {"gpt-4o-mini", "demo", "vectors", "pictures"}
    assert set(unhealthy) == {"broken"}
    assert (body["healthy_count"], body["unhealthy_count"]) == (4, 1)
    assert unhealthy["broken"]["status"] == 401 and "Incorrect API key" in unhealthy["broken"]["error"]
    assert unhealthy["broken"]["api_base"] == upstream.url + "/down/v1"
    # The checks were real calls of each kind, as small as they come.
    embedding = next(r for r in upstream.requests if r.path.endswith("/embeddings"))
    assert embedding.json["input"] == "ping"
    chat = next(r for r in upstream.requests if r.path == "/v1/chat/completions")
    assert chat.json["max_tokens"] == 1
    text = json.dumps(body)
    assert "sk-live-upstreamsecret0123456789" not in text and "sk-x-12345678" not in text
    assert "sk-upstream-secret" not in text


def test_a_health_check_changes_no_state_it_reports(make_app, base_config, upstream, auth, call_log):
    upstream.always("/down/", status=500)
    pair = [{"model_name": "pair", "dheera_ai_params": {"model": "openai/gpt-4o", "api_key": "sk-x-12345678",
                                                        "api_base": upstream.url + f"/down/{i}"}} for i in range(2)]
    client = make_app({**base_config, "model_list": base_config["model_list"] + pair}).test_client()
    for _ in range(4):  # more than allowed_fails: real calls would have sent both to rest
        assert client.get("/health?model=pair", headers=auth).json["unhealthy_count"] == 2
    router = client.application.extensions["dheera_ai"].router
    assert router.cooldowns.cooling() == {}
    assert router.stats.usage == {}  # nor counted toward rpm/latency routing
    assert call_log(timeout=0) == []  # checks are not calls: no call-log lines, no spend


def test_health_can_be_limited_to_one_model_and_a_timeout(client, auth, upstream):
    upstream.always("/v1/chat", delay=2.0)
    body = client.get("/health?model=gpt-4o-mini&timeout=0.3", headers=auth).json
    assert body["healthy_count"] == 0 and body["unhealthy_count"] == 1
    assert body["unhealthy_endpoints"][0]["status"] == 408
    assert client.get("/health?model=nope", headers=auth).status_code == 400
    assert client.get("/health?timeout=abc", headers=auth).json["error"]["param"] == "timeout"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer sk-wrong"}])
def test_health_needs_the_admin_key(client, headers):
    answer = client.get("/health", headers=headers)
    assert answer.status_code in (401, 403) and "error" in answer.json


def test_a_virtual_key_is_not_enough_for_health(client, auth):
    key = client.post("/key/generate", headers=auth, json={}).json["key"]
    assert client.get("/health", headers={"Authorization": f"Bearer {key}"}).status_code == 403
    assert MASTER_KEY not in client.get("/health", headers={"Authorization": f"Bearer {key}"}).get_data(as_text=True)


def test_readiness_reports_cooldowns_and_the_spool_depth(make_app, base_config, tmp_path, auth):
    base_config["general_settings"]["spend_flush_seconds"] = 3600  # rows stay in the spool
    config_file = tmp_path / "config.yaml"
    config_file.write_text(json.dumps(base_config))  # YAML is a superset of JSON
    client = make_app(str(config_file)).test_client()
    body = client.get("/health/readiness").json
    assert body["cooldowns"]["backend"] == "sqlite"
    assert body["spool"]["pending_bytes"] == 0
    assert client.post("/v1/chat/completions", headers=auth,
                       json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]}).status_code == 200
    assert client.get("/health/readiness").json["spool"]["pending_bytes"] > 0
    assert str(tmp_path) not in json.dumps(body)
