"""`/user/*` and `/team/*`: who owns keys, and how a team bounds them."""

import pytest

from tests.test_keys import bearer, chat, generate


def post(client, auth, path, **fields):
    return client.post(path, headers=auth, json=fields)


def test_a_new_user_gets_a_key_and_shows_in_info(client, auth):
    made = post(client, auth, "/user/new", user_id="ann", user_email="ann@example.com", models=["demo"]).json
    assert made["user_id"] == "ann" and made["user_role"] == "internal_user" and made["key"].startswith("sk-")
    info = client.get("/user/info", headers=auth, query_string={"user_id": "ann"}).json
    assert info["user_info"]["user_email"] == "ann@example.com"
    assert [k["token"] for k in info["keys"]] == [made["token"]]
    assert made["key"] not in str(info)
    # The key reads its own user without naming it.
    assert client.get("/user/info", headers=bearer(made["key"])).json["user_id"] == "ann"


def test_user_update_and_delete(client, auth):
    made = post(client, auth, "/user/new", user_id="bob").json
    updated = post(client, auth, "/user/update", user_id="bob", user_role="proxy_admin", max_budget=10)
    assert updated.json["user_role"] == "proxy_admin" and updated.json["max_budget"] == 10
    # The role change reaches the user's cached key at once: it is an admin key now.
    assert client.get("/key/list", headers=bearer(made["key"])).status_code == 200
    assert post(client, auth, "/user/update", user_id="nobody").status_code == 404
    deleted = post(client, auth, "/user/delete", user_ids=["bob"]).json
    assert deleted == {"deleted_users": ["bob"], "deleted_keys": [made["token"]]}
    assert chat(client, made["key"]).status_code == 401
    assert client.get("/user/info", headers=auth, query_string={"user_id": "bob"}).status_code == 404


@pytest.mark.parametrize("path, fields, param", [
    ("/user/new", {"user_role": "king"}, "user_role"),
    ("/user/new", {"max_budget": -1}, "max_budget"),
    ("/user/new", {"teams": ["no-such-team"]}, "teams"),
    ("/user/new", {"nickname": "x"}, "nickname"),
    ("/user/update", {}, "user_id"),
    ("/user/delete", {"user_ids": []}, "user_ids"),
    ("/team/new", {"rpm_limit": -1}, "rpm_limit"),
    ("/team/new", {"members_with_roles": [{"role": "user"}]}, "members_with_roles[0].user_id"),
    ("/team/new", {"members_with_roles": [{"user_id": "x", "role": "owner"}]}, "members_with_roles[0].role"),
    ("/team/update", {"models": ["demo"]}, "team_id"),
    ("/team/member_add", {"team_id": "t"}, "member"),
    ("/team/delete", {"team_ids": "t"}, "team_ids"),
])
def test_bad_user_and_team_requests_are_400_naming_the_field(client, auth, path, fields, param):
    response = post(client, auth, path, **fields)
    assert response.status_code == 400, response.json
    assert response.json["error"]["param"] == param


def test_user_and_team_routes_need_an_admin(client, auth):
    key = generate(client, auth)["key"]
    for path in ("/user/new", "/user/update", "/user/delete", "/team/new", "/team/update", "/team/member_add",
                 "/team/member_delete", "/team/delete"):
        assert client.post(path, headers=bearer(key), json={}).status_code == 403, path


def test_a_team_bounds_its_keys(client, auth):
    post(client, auth, "/team/new", team_id="eng", models=["demo"], rpm_limit=100, max_budget=50)
    too_many_models = post(client, auth, "/key/generate", team_id="eng", models=["demo", "gpt-4o-mini"])
    assert too_many_models.status_code == 400 and too_many_models.json["error"]["param"] == "models"
    assert "gpt-4o-mini" in too_many_models.json["error"]["message"]
    too_fast = post(client, auth, "/key/generate", team_id="eng", rpm_limit=500)
    assert too_fast.status_code == 400 and too_fast.json["error"]["param"] == "rpm_limit"
    too_rich = post(client, auth, "/key/generate", team_id="eng", max_budget=51)
    assert too_rich.json["error"]["param"] == "max_budget"

    key = generate(client, auth, team_id="eng")["key"]  # no models of its own: the team's
    assert chat(client, key).status_code == 200
    assert chat(client, key, model="gpt-4o-mini").status_code == 401
    moved = post(client, auth, "/key/update", key=key, models=["gpt-4o-mini"])
    assert moved.status_code == 400 and moved.json["error"]["param"] == "models"


def test_narrowing_or_blocking_a_team_reaches_its_keys_at_once(client, auth):
    post(client, auth, "/team/new", team_id="ops", models=["demo", "gpt-4o-mini"])
    key = generate(client, auth, team_id="ops", models=["demo"])["key"]
    assert chat(client, key).status_code == 200
    post(client, auth, "/team/update", team_id="ops", models=["gpt-4o-mini"])
    assert chat(client, key).status_code == 401
    post(client, auth, "/team/update", team_id="ops", models=["demo"], blocked=True)
    refused = chat(client, key)
    assert refused.status_code == 401 and "team" in refused.json["error"]["message"]


def test_team_info_members_and_delete(client, auth):
    for user in ("a", "b", "c"):
        post(client, auth, "/user/new", user_id=user, auto_create_key=False)
    made = post(client, auth, "/team/new", team_alias="Research",
                members_with_roles=[{"user_id": "a", "role": "admin"}])
    team_id = made.json["team_id"]
    post(client, auth, "/team/member_add", team_id=team_id, member=[{"user_id": "b"}, {"user_id": "c"}])
    post(client, auth, "/team/member_delete", team_id=team_id, user_id="c")
    key = generate(client, auth, team_id=team_id, user_id="a")
    info = client.get("/team/info", headers=auth, query_string={"team_id": team_id}).json
    assert info["team_info"]["team_alias"] == "Research"
    assert info["team_info"]["members_with_roles"] == [{"user_id": "a", "role": "admin"},
                                                       {"user_id": "b", "role": "user"}]
    assert [k["token"] for k in info["keys"]] == [key["token"]]
    assert client.get("/user/info", headers=auth, query_string={"user_id": "b"}).json["teams"] == [team_id]
    assert post(client, auth, "/team/member_delete", team_id=team_id, user_id="zz").status_code == 404
    # An unknown member is created, as in LiteLLM.
    assert post(client, auth, "/team/member_add", team_id=team_id, member={"user_id": "ghost"}).status_code == 200
    assert client.get("/user/info", headers=auth, query_string={"user_id": "ghost"}).json["teams"] == [team_id]

    deleted = post(client, auth, "/team/delete", team_ids=[team_id]).json
    assert deleted == {"deleted_teams": [team_id], "deleted_keys": [key["token"]]}
    assert chat(client, key["key"]).status_code == 401
    assert client.get("/team/info", headers=auth, query_string={"team_id": team_id}).status_code == 404
    assert post(client, auth, "/team/delete", team_ids=[team_id]).status_code == 404


def test_a_key_carries_the_tighter_of_its_own_and_its_teams_limits(app, client, auth):
    from dheera_ai.types import Credentials
    post(client, auth, "/team/new", team_id="lim", rpm_limit=100, tpm_limit=1000, tags=["team-tag"])
    key = generate(client, auth, team_id="lim", rpm_limit=50, tags=["key-tag"])["key"]
    post(client, auth, "/team/update", team_id="lim", rpm_limit=10)  # narrowed after the key was made
    principal = app.extensions["dheera_ai"].pipeline.authenticate(
        Credentials(api_key=key, header="authorization", headers={}, path="/v1/chat/completions"))
    assert principal.kind == "virtual_key" and principal.team_id == "lim"
    assert principal.limits == {"rpm_limit": 10, "tpm_limit": 1000}
    assert principal.tags == ("key-tag", "team-tag")
