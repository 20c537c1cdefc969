"""The weaknesses a security review found (issue #25, items 7-17), each with what now holds.

Every test here failed on the main branch of the review; each names the guard it keeps in place.
"""

import logging
import uuid

import openai
import pytest

from dheera_ai import netguard
from tests.conftest import MASTER_KEY
from tests.support.services import postgres  # noqa: F401 - a fixture

HI = [{"role": "user", "content": "hi"}]


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def admin_post(client, path, **fields):
    response = client.post(path, headers=bearer(MASTER_KEY), json=fields)
    assert response.status_code == 200, response.json
    return response.json


def chat(client, key=MASTER_KEY, model="demo", **headers):
    return client.post("/v1/chat/completions", headers={**bearer(key), **headers},
                       json={"model": model, "messages": HI})


def nested(depth: int) -> str:
    return "[" * depth + '"x"' + "]" * depth


# -- 9: Prometheus labels come from the config only -------------------------------------------------

def test_client_built_deployments_are_one_user_config_label(make_app, base_config):
    base_config["general_settings"]["allow_client_side_credentials"] = True
    client = make_app(base_config).test_client()
    names = [f"client-model-{uuid.uuid4().hex[:8]}" for _ in range(10)]
    for name in names:
        user_config = {"model_list": [{"model_name": name, "litellm_params": {"model": "mock/anything"}}]}
        response = client.post("/v1/chat/completions", headers=bearer(MASTER_KEY),
                               json={"model": name, "messages": HI, "user_config": user_config})
        assert response.status_code == 200, response.json
    text = client.get("/metrics", headers=bearer(MASTER_KEY)).get_data(as_text=True)
    assert not any(name in text for name in names)
    assert 'dheera_ai_requests_total{deployment="user_config",model_group="user_config",status="200"} 10.0' in text


# -- 10: a response id works only for its owner -----------------------------------------------------

@pytest.fixture
def two_keys(app, client):
    return [admin_post(client, "/key/generate")["key"] for _ in range(2)]


@pytest.mark.parametrize("model", ["demo", "gpt-4o-mini"])  # translated (mock over chat) and passed through
def test_a_response_id_is_a_404_for_any_other_key(live, client, upstream, two_keys, model):
    owner, other = (openai.OpenAI(base_url=live.url + "/v1", api_key=k, max_retries=0) for k in two_keys)
    created = owner.responses.create(model=model, input="Hello")
    for attempt in (lambda c: c.responses.retrieve(created.id),
                    lambda c: c.responses.input_items.list(created.id),
                    lambda c: c.responses.create(model=model, input="more", previous_response_id=created.id),
                    lambda c: c.responses.delete(created.id)):
        with pytest.raises(openai.NotFoundError):
            attempt(other)
    upstream_calls = len(upstream.requests)
    if model == "demo":
        assert owner.responses.retrieve(created.id).id == created.id  # the owner's still works
        assert owner.responses.input_items.list(created.id).data
    assert len(upstream.requests) == upstream_calls  # refused before anything went upstream


def test_a_response_id_cannot_be_re_sealed_for_another_key(live, two_keys):
    from dheera_ai import response_ids
    from proxy_app.virtual_keys import hash_key

    owner, other = (openai.OpenAI(base_url=live.url + "/v1", api_key=k, max_retries=0) for k in two_keys)
    created = owner.responses.create(model="demo", input="Hello")
    deployment, _, upstream_id = response_ids._parts(created.id)  # anyone can read them: base64
    for guess in (b"", response_ids.owner_secret(None, f"key:{hash_key(two_keys[1])}")):
        with pytest.raises(openai.NotFoundError):
            other.responses.retrieve(response_ids.encode(deployment, upstream_id, guess))


# -- 11: configured secrets are redacted by value -----------------------------------------------------

AZURE_STYLE_KEY = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"  # 32 hex digits: no pattern can tell it from an id


def test_an_upstream_echoing_a_configured_key_reaches_neither_client_nor_log(make_app, base_config, upstream,
                                                                              caplog):
    base_config["model_list"][0]["dheera_ai_params"]["api_key"] = AZURE_STYLE_KEY
    client = make_app(base_config).test_client()
    upstream.fail(401, f"Access denied due to invalid subscription key {AZURE_STYLE_KEY}.", code="401")
    caplog.set_level(logging.INFO)
    response = chat(client, model="gpt-4o-mini")
    assert response.status_code == 401
    assert AZURE_STYLE_KEY not in response.get_data(as_text=True)
    assert AZURE_STYLE_KEY[:6] + "****" in response.json["error"]["message"]
    assert AZURE_STYLE_KEY not in caplog.text


def test_a_secret_environment_variable_is_redacted_by_value(make_app, base_config, upstream, monkeypatch):
    monkeypatch.setenv("SOME_PROVIDER_API_KEY", "plain-words-secret-value")
    client = make_app(base_config).test_client()
    upstream.fail(400, "bad key plain-words-secret-value", code="invalid")
    response = chat(client, model="gpt-4o-mini")
    assert "plain-words-secret-value" not in response.get_data(as_text=True)


# -- 12: what admins set is enforced whole ----------------------------------------------------------

def test_a_users_models_bound_a_key_without_models(client):
    admin_post(client, "/user/new", user_id="ann", models=["demo"], auto_create_key=False)
    key = admin_post(client, "/key/generate", user_id="ann")["key"]
    assert chat(client, key, model="demo").status_code == 200
    refused = chat(client, key, model="gpt-4o-mini")
    assert refused.status_code == 401 and "Allowed models: demo" in refused.json["error"]["message"]


def test_no_key_for_a_user_in_a_team_they_are_not_in(client):
    admin_post(client, "/user/new", user_id="bob", auto_create_key=False)
    admin_post(client, "/team/new", team_id="other-team")
    response = client.post("/key/generate", headers=bearer(MASTER_KEY),
                           json={"user_id": "bob", "team_id": "other-team"})
    assert response.status_code == 400 and response.json["error"]["code"] == "user_not_in_team"
    admin_post(client, "/team/member_add", team_id="other-team", member={"user_id": "bob"})
    assert admin_post(client, "/key/generate", user_id="bob", team_id="other-team")["team_id"] == "other-team"


def test_a_deleted_key_given_again_as_key_stays_refused(client):
    key = "sk-" + uuid.uuid4().hex
    admin_post(client, "/key/generate", key=key)
    admin_post(client, "/key/delete", keys=[key])
    again = client.post("/key/generate", headers=bearer(MASTER_KEY), json={"key": key})
    assert again.status_code == 400 and again.json["error"]["code"] == "key_revoked"
    assert chat(client, key).status_code == 401
    old = admin_post(client, "/key/generate")
    admin_post(client, "/key/regenerate", key=old["key"])
    reused = client.post("/key/regenerate", headers=bearer(MASTER_KEY),
                         json={"key": admin_post(client, "/key/generate")["key"], "new_key": old["key"]})
    assert reused.json["error"]["code"] == "key_revoked"  # a replaced key cannot come back through regenerate either


# -- 13: bad input is a 400, never a 500 -----------------------------------------------------------

def test_deeply_nested_bodies_are_a_400(client, upstream):
    deep_chat = '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": ' + nested(1000) + "}]}"
    response = client.post("/v1/chat/completions", headers=bearer(MASTER_KEY), data=deep_chat,
                           content_type="application/json")
    assert response.status_code == 400 and "nests deeper" in response.json["error"]["message"]
    response = client.post("/key/generate", headers=bearer(MASTER_KEY), content_type="application/json",
                           data='{"metadata": {"a": ' + nested(900) + "}}")
    assert response.status_code == 400
    assert upstream.requests == []


def test_a_page_past_64_bits_is_a_400(client):
    for path in ("/key/list", "/spend/logs"):
        response = client.get(path, headers=bearer(MASTER_KEY), query_string={"page": "9223372036854775807"})
        assert response.status_code == 400 and response.json["error"]["param"] == "page"


ADMIN_GETS = ["/key/info?key=sk-a%00b", "/key/list?user_id=a%00", "/key/list?team_id=%00", "/key/list?key_alias=%00",
              "/user/info?user_id=a%00", "/team/info?team_id=a%00", "/spend/logs?user_id=%00",
              "/spend/logs?api_key=sk-%00", "/spend/logs?tag=%00", "/spend/logs?model=%00",
              "/spend/report?start_date=%00"]


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_nul_in_any_admin_query_parameter_is_a_400(make_app, base_config, store, request):
    if store == "postgresql":
        base_config["general_settings"]["database_url"] = request.getfixturevalue("postgres").url
    client = make_app(base_config).test_client()
    for path in ADMIN_GETS:
        response = client.get(path, headers=bearer(MASTER_KEY))
        assert response.status_code == 400, (path, response.json)
    response = client.post("/key/generate", headers=bearer(MASTER_KEY), json={"key_alias": "a\u0000b"})
    assert response.status_code == 400


def test_a_client_api_key_that_cannot_be_a_header_is_a_400(make_app, base_config, upstream):
    base_config["general_settings"]["allow_client_side_credentials"] = True
    client = make_app(base_config).test_client()
    for key in ("sk-\u200bzero-width", "sk-line\r\nX-Injected: 1", "sk-ünïcode"):
        response = client.post("/v1/chat/completions", headers=bearer(MASTER_KEY),
                               json={"model": "gpt-4o-mini", "messages": HI, "api_key": key})
        assert response.status_code == 400 and response.json["error"]["param"] == "api_key"
    user_config = {"model_list": [{"model_name": "u", "litellm_params": {"model": "openai/x", "api_key": "k\u200b",
                                                                         "api_base": "https://example.com/v1"}}]}
    response = client.post("/v1/chat/completions", headers=bearer(MASTER_KEY),
                           json={"model": "u", "messages": HI, "user_config": user_config})
    assert response.status_code == 400
    assert upstream.requests == []


# -- 15: SSRF refusals say nothing about DNS; embedded IPv4 addresses are what they embed --------------

@pytest.mark.parametrize("address", [
    "64:ff9b::7f00:1",        # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",     # NAT64 of 169.254.169.254 (cloud metadata)
    "64:ff9b:1::a00:1",       # local-use NAT64 (RFC 8215)
    "2002:7f00:1::1",         # 6to4 of 127.0.0.1
    "2002:a00:7::",           # 6to4 of 10.0.0.7
    "::127.0.0.1",            # IPv4-compatible
    "::10.0.0.7",
    "::ffff:127.0.0.1",       # IPv4-mapped (already refused)
])
def test_ipv6_forms_of_internal_ipv4_addresses_are_refused(address):
    assert not netguard.address_allowed(address)


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "2002:808:808::1", "2606:4700:4700::1111", "8.8.8.8"])
def test_public_addresses_stay_allowed(address):
    assert netguard.address_allowed(address)


def test_a_refused_api_base_does_not_say_what_it_resolved_to(make_app, base_config):
    base_config["general_settings"]["allow_client_side_credentials"] = True
    client = make_app(base_config).test_client()
    messages = set()
    for api_base in ("http://localhost/v1", "http://no-such-host.invalid/v1", "http://10.1.2.3/v1"):
        response = client.post("/v1/chat/completions", headers=bearer(MASTER_KEY),
                               json={"model": "gpt-4o-mini", "messages": HI, "api_key": "sk-client",
                                     "api_base": api_base})
        assert response.status_code == 400
        messages.add(response.json["error"]["message"])
    assert messages == {"'api_base' is not allowed."}  # the same words: no resolver oracle


# -- 16 / #24.5: client call ids are validated and never our own -----------------------------------------

@pytest.mark.parametrize("call_id", ["x" * 129, "has space", "semi;colon", "ünï", "a/b", ""])
def test_a_malformed_client_call_id_is_a_400(client, call_id):
    response = chat(client, **{"x-dheera-ai-call-id": call_id})
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_call_id"


def test_a_reused_client_call_id_never_merges_two_calls(app, client, call_log):
    answers = [chat(client, **{"x-dheera-ai-call-id": "trace-1.a_b-C"}) for _ in range(2)]
    ours = [a.headers["x-dheera-ai-call-id"] for a in answers]
    assert len(set(ours)) == 2 and "trace-1.a_b-C" not in ours
    assert [a.headers["x-dheera-ai-client-call-id"] for a in answers] == ["trace-1.a_b-C"] * 2
    app.extensions["dheera_ai_state"].spend.flush()
    rows = client.get("/spend/logs", headers=bearer(MASTER_KEY)).json["data"]
    assert sorted(r["request_id"] for r in rows) == sorted(ours)
    assert [r["client_call_id"] for r in rows] == ["trace-1.a_b-C"] * 2
    lines = call_log(2)
    assert sorted(line["call_id"] for line in lines) == sorted(ours)
    assert {line["client_call_id"] for line in lines} == {"trace-1.a_b-C"}


# -- 17: a team member sees the team, and only their own keys ---------------------------------------

def test_team_info_shows_members_only_their_own_keys(client):
    for user in ("lead", "member", "peer"):
        admin_post(client, "/user/new", user_id=user, auto_create_key=False)
    admin_post(client, "/team/new", team_id="t", members_with_roles=[
        {"user_id": "lead", "role": "admin"}, {"user_id": "member"}, {"user_id": "peer"}])
    keys = {user: admin_post(client, "/key/generate", user_id=user, team_id="t", metadata={"who": user})
            for user in ("lead", "member", "peer")}

    def seen_by(user):
        response = client.get("/team/info", headers=bearer(keys[user]["key"]), query_string={"team_id": "t"})
        assert response.status_code == 200
        return sorted(k["user_id"] for k in response.json["keys"])

    assert seen_by("member") == ["member"]
    assert seen_by("peer") == ["peer"]
    assert seen_by("lead") == ["lead", "member", "peer"]  # a team admin sees every key
    everything = client.get("/team/info", headers=bearer(MASTER_KEY), query_string={"team_id": "t"}).json
    assert len(everything["keys"]) == 3


# -- 8: tags are bounded, and /spend/tags comes in pages ---------------------------------------------

def test_a_call_with_too_many_or_too_long_tags_is_a_400(client):
    def tagged(tags, **headers):
        return client.post("/v1/chat/completions", headers={**bearer(MASTER_KEY), **headers},
                           json={"model": "demo", "messages": HI, "tags": tags})

    assert tagged([f"t{i}" for i in range(50)]).status_code == 200
    too_many = tagged([f"t{i}" for i in range(150_000)])
    assert too_many.status_code == 400 and too_many.json["error"]["code"] == "too_many_tags"
    assert tagged(["a"], **{"x-dheera-ai-tags": ",".join(f"h{i}" for i in range(50))}).status_code == 400
    assert tagged(["x" * 257]).json["error"]["code"] == "invalid_tag"


def test_spend_tags_are_paginated(app, client):
    for n in range(3):
        assert client.post("/v1/chat/completions", headers=bearer(MASTER_KEY),
                           json={"model": "demo", "messages": HI, "tags": [f"page-{n}"]}).status_code == 200
    app.extensions["dheera_ai_state"].spend.flush()
    first = client.get("/spend/tags", headers=bearer(MASTER_KEY), query_string={"size": 2}).json
    second = client.get("/spend/tags", headers=bearer(MASTER_KEY), query_string={"size": 2, "page": 2}).json
    assert first["total_count"] == 3 and first["total_pages"] == 2
    assert len(first["data"]) == 2 and len(second["data"]) == 1
    assert {t["tag"] for t in first["data"] + second["data"]} == {"page-0", "page-1", "page-2"}
    assert client.get("/spend/tags", headers=bearer(MASTER_KEY), query_string={"size": 5000}).status_code == 400
