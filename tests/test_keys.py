"""`/key/*`: issuing, scoping, inspecting, rotating and revoking virtual keys."""

import sqlite3

import openai
import pytest


def generate(client, auth, **fields):
    response = client.post("/key/generate", headers=auth, json=fields)
    assert response.status_code == 200, response.json
    return response.json


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def chat(client, key, model="demo"):
    return client.post("/v1/chat/completions", headers=bearer(key),
                       json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def test_a_generated_key_is_shown_once_and_calls_models(client, auth):
    made = generate(client, auth, key_alias="ci", models=["demo"], metadata={"env": "ci"}, tags=["ci"])
    key = made["key"]
    assert key.startswith("sk-") and len(key) > 40
    assert made["key_name"] == "sk-..." + key[-4:] and made["key_alias"] == "ci"
    assert made["models"] == ["demo"] and made["expires"] is None

    assert chat(client, key).status_code == 200
    info = client.get("/key/info", headers=auth, query_string={"key": key}).json["info"]
    assert key not in str(info) and info["token"] == made["token"]


def test_the_openai_sdk_works_with_a_virtual_key(live, client, auth):
    key = generate(client, auth, models=["demo"])["key"]
    sdk = openai.OpenAI(base_url=live.url + "/v1", api_key=key, max_retries=0)
    answer = sdk.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content
    # A model outside the key's list is a 401, as LiteLLM answers it.
    with pytest.raises(openai.AuthenticationError) as refused:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.body["code"] == "model_not_allowed" and "demo" in refused.value.body["message"]


@pytest.mark.parametrize("header", ["x-dheera-ai-api-key", "api-key", "x-api-key"])
def test_a_virtual_key_is_accepted_in_every_key_header(client, auth, header):
    key = generate(client, auth)["key"]
    response = client.get("/v1/models", headers={header: key})
    assert response.status_code == 200


def test_a_key_sees_only_its_models(client, auth):
    key = generate(client, auth, models=["demo"])["key"]
    assert [m["id"] for m in client.get("/v1/models", headers=bearer(key)).json["data"]] == ["demo"]
    refused = chat(client, key, model="gpt-4o-mini")
    assert refused.status_code == 401  # as LiteLLM answers a model outside the key's list
    assert refused.json["error"]["code"] == "model_not_allowed"
    assert "Allowed models: demo" in refused.json["error"]["message"]


def test_access_groups_in_model_info_grant_their_models(make_app, base_config, auth):
    base_config["model_list"][1]["model_info"] = {"access_groups": ["cheap"]}
    client = make_app(base_config).test_client()
    key = generate(client, auth, models=["cheap"])["key"]
    assert chat(client, key).status_code == 200
    assert chat(client, key, model="gpt-4o-mini").status_code == 401


def test_a_caller_chosen_key_is_used_as_given(client, auth):
    generate(client, auth, key="sk-my-own-chosen-key-123")
    assert chat(client, "sk-my-own-chosen-key-123").status_code == 200
    again = client.post("/key/generate", headers=auth, json={"key": "sk-my-own-chosen-key-123"})
    assert again.status_code == 400 and again.json["error"]["code"] == "key_exists"


@pytest.mark.parametrize("fields, param", [
    ({"bogus": 1}, "bogus"),
    ({"duration": "30 days"}, "duration"),
    ({"duration": "0d"}, "duration"),
    ({"budget_duration": "monthly"}, "budget_duration"),
    ({"max_budget": -1}, "max_budget"),
    ({"rpm_limit": -5}, "rpm_limit"),
    ({"models": "demo"}, "models"),
    ({"metadata": [1]}, "metadata"),
    ({"key": "not-an-sk-key"}, "key"),
    ({"user_id": 5}, "user_id"),
    ({"team_id": "no-team"}, "team_id"),
])
def test_bad_generate_requests_are_400_naming_the_field(client, auth, fields, param):
    response = client.post("/key/generate", headers=auth, json=fields)
    assert response.status_code == 400
    assert response.json["error"]["param"] == param


def test_duration_sets_expires(client, auth):
    made = generate(client, auth, duration="1h")
    assert made["expires"].endswith("Z")
    import datetime
    expires = datetime.datetime.fromisoformat(made["expires"].replace("Z", "+00:00"))
    left = expires - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(minutes=59) < left <= datetime.timedelta(hours=1)


def test_admin_routes_need_an_admin(client, auth):
    key = generate(client, auth)["key"]
    assert client.post("/key/generate", json={}).status_code == 401
    refused = client.post("/key/generate", headers=bearer(key), json={})
    assert refused.status_code == 403 and refused.json["error"]["type"] == "permission_error"
    assert client.get("/key/list", headers=bearer(key)).status_code == 403


def test_a_proxy_admin_users_key_is_an_admin_key(client, auth):
    made = client.post("/user/new", headers=auth, json={"user_id": "boss", "user_role": "proxy_admin"}).json
    assert client.post("/key/generate", headers=bearer(made["key"]), json={}).status_code == 200


def test_a_key_may_read_its_own_info_but_no_other(client, auth):
    mine, other = generate(client, auth)["key"], generate(client, auth)
    own = client.get("/key/info", headers=bearer(mine))
    assert own.status_code == 200 and own.json["info"]["key_name"] == "sk-..." + mine[-4:]
    assert client.get("/key/info", headers=bearer(mine), query_string={"key": other["token"]}).status_code == 403


def test_info_of_an_unknown_key_is_404(client, auth):
    response = client.get("/key/info", headers=auth, query_string={"key": "sk-not-a-real-key-000"})
    assert response.status_code == 404 and "sk-not-a-real" not in response.get_data(as_text=True)
    assert client.get("/key/info", headers=auth).status_code == 400


def test_list_pages_and_filters_and_never_shows_keys(client, auth):
    client.post("/user/new", headers=auth, json={"user_id": "u1", "auto_create_key": False})
    keys = [generate(client, auth, user_id="u1" if i < 3 else None, key_alias=f"k{i}")["key"] for i in range(5)]
    page = client.get("/key/list", headers=auth, query_string={"page": 2, "size": 2}).json
    assert page["total_count"] == 5 and page["total_pages"] == 3 and page["current_page"] == 2
    assert [k["key_alias"] for k in page["keys"]] == ["k2", "k3"]
    mine = client.get("/key/list", headers=auth, query_string={"user_id": "u1"}).json
    assert mine["total_count"] == 3
    by_alias = client.get("/key/list", headers=auth, query_string={"key_alias": "k4"}).json
    assert [k["key_alias"] for k in by_alias["keys"]] == ["k4"]
    listing = client.get("/key/list", headers=auth, query_string={"size": 100}).get_data(as_text=True)
    assert not any(k in listing for k in keys)
    assert client.get("/key/list", headers=auth, query_string={"page": 0}).json["error"]["param"] == "page"
    assert client.get("/key/list", headers=auth, query_string={"size": 1000}).json["error"]["param"] == "size"


def test_update_changes_what_a_key_may_do_at_once(client, auth):
    key = generate(client, auth, models=["demo"])["key"]
    assert chat(client, key).status_code == 200  # now cached
    updated = client.post("/key/update", headers=auth, json={"key": key, "models": ["gpt-4o-mini"], "rpm_limit": 3})
    assert updated.status_code == 200 and updated.json["rpm_limit"] == 3
    assert chat(client, key).status_code == 401
    assert client.post("/key/update", headers=auth, json={"key": "sk-unknown-key-000"}).status_code == 404
    assert client.post("/key/update", headers=auth, json={"key": key, "max_budget": -2}).json["error"]["param"] \
        == "max_budget"


def test_block_and_unblock(client, auth):
    key = generate(client, auth)["key"]
    assert chat(client, key).status_code == 200
    assert client.post("/key/block", headers=auth, json={"key": key}).json["blocked"] is True
    blocked = chat(client, key)
    assert blocked.status_code == 401 and "blocked" in blocked.json["error"]["message"]
    client.post("/key/unblock", headers=auth, json={"key": key})
    assert chat(client, key).status_code == 200


def test_delete_by_key_or_alias(client, auth):
    first, second = generate(client, auth)["key"], generate(client, auth, key_alias="gone")["key"]
    assert chat(client, first).status_code == 200
    deleted = client.post("/key/delete", headers=auth, json={"keys": [first], "key_aliases": ["gone"]})
    assert deleted.status_code == 200 and len(deleted.json["deleted_keys"]) == 2
    for key in (first, second):
        refused = chat(client, key)
        assert refused.status_code == 401 and "deleted" in refused.json["error"]["message"]


def test_delete_of_an_unknown_key_deletes_nothing(client, auth):
    key = generate(client, auth)["key"]
    response = client.post("/key/delete", headers=auth, json={"keys": [key, "sk-never-issued-000"]})
    assert response.status_code == 404
    assert chat(client, key).status_code == 200
    assert client.post("/key/delete", headers=auth, json={"key_aliases": ["nope"]}).status_code == 404
    assert client.post("/key/delete", headers=auth, json={}).status_code == 400


def test_regenerate_rotates_the_secret_and_keeps_the_settings(client, auth):
    made = generate(client, auth, key_alias="rot", models=["demo"])
    assert chat(client, made["key"]).status_code == 200
    rotated = client.post("/key/regenerate", headers=auth, json={"key": made["key"], "rpm_limit": 7}).json
    assert rotated["key"] != made["key"] and rotated["key_alias"] == "rot" and rotated["rpm_limit"] == 7
    old = chat(client, made["key"])
    assert old.status_code == 401 and "regenerated" in old.json["error"]["message"]
    assert chat(client, rotated["key"]).status_code == 200


def test_an_expired_key_is_refused_saying_so(client, auth, app):
    key = generate(client, auth, duration="1h")["key"]
    token = client.get("/key/info", headers=auth, query_string={"key": key}).json["key"]
    app.extensions["dheera_ai_state"].store.update_key(token, {"expires": 1.0})
    app.extensions["dheera_ai_state"].auth.invalidate([token])
    refused = chat(client, key)
    assert refused.status_code == 401 and "expired" in refused.json["error"]["message"]


def test_only_a_hash_is_stored(client, auth, base_config):
    key = generate(client, auth, key_alias="secret-check")["key"]
    path = base_config["general_settings"]["database_url"][len("sqlite:///"):]
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(FULL)")
        dump = "\n".join(conn.iterdump())
    assert "secret-check" in dump and key not in dump and key[3:] not in dump
    for suffix in ("", "-wal"):
        try:
            with open(path + suffix, "rb") as f:
                assert key[3:].encode() not in f.read()
        except FileNotFoundError:
            pass


def test_keys_never_reach_the_logs(client, auth, caplog):
    import logging
    caplog.set_level(logging.DEBUG)
    key = generate(client, auth)["key"]
    chat(client, key)
    client.post("/key/block", headers=auth, json={"key": key})
    chat(client, key)
    assert key not in caplog.text


def test_without_a_master_key_nobody_manages_keys(make_app, base_config):
    del base_config["general_settings"]["master_key"]
    client = make_app(base_config).test_client()
    refused = client.post("/key/generate", json={})
    assert refused.status_code == 403 and "master_key" in refused.json["error"]["message"]
