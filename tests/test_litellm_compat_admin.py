"""LiteLLM's admin scripts work unchanged: plain HTTP against a live gateway, the way LiteLLM's
own end-to-end tests (test_keys, test_users, test_team) drive its proxy. Written for Dheera AI."""

import pytest
import requests

from tests.conftest import MASTER_KEY

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture
def gateway(live):
    return live.url


def post(url, path, key=MASTER_KEY, **body):
    return requests.post(url + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=10)


def get(url, path, key=MASTER_KEY, **params):
    return requests.get(url + path, params=params, headers={"Authorization": f"Bearer {key}"}, timeout=10)


def chat(url, key, model="demo"):
    return post(url, "/chat/completions", key, model=model, messages=[{"role": "user", "content": "hi"}])


# -- lenient bodies --------------------------------------------------------------------------------

def test_litellm_fields_are_accepted_and_named_in_warnings(gateway):
    made = post(gateway, "/key/generate", aliases={"gpt-4": "demo"}, metadata=None, models=None,
                config={}, permissions={}, model_max_budget={}, spend=0, soft_budget=None)
    assert made.status_code == 200, made.text
    answer = made.json()
    assert answer["key"].startswith("sk-") and answer["token_id"] == answer["token"]
    assert any("'aliases' is a LiteLLM field Dheera AI does not use" in w for w in answer["warnings"])
    assert answer["models"] == [] and answer["metadata"] == {}  # null: not given
    assert chat(gateway, answer["key"]).status_code == 200


def test_user_and_team_bodies_litellm_sends(gateway):
    team = post(gateway, "/team/new", team_alias="t", models=None, metadata=None, model_aliases={"a": "b"})
    assert team.status_code == 200, team.text
    team_id = team.json()["team_id"]
    user = post(gateway, "/user/new", user_id="u-1", aliases={}, team_id=team_id, user_email="u1@example.com")
    assert user.status_code == 200, user.text
    assert team_id in get(gateway, "/user/info", user_id="u-1").json()["teams"]  # team_id: joins it
    updated = post(gateway, "/user/update", user_id="u-1", spend=10, max_budget=5)
    assert updated.status_code == 200 and updated.json()["max_budget"] == 5
    assert any("'spend'" in w for w in updated.json()["warnings"])


def test_wrong_types_and_unknown_names_stay_400_naming_the_field(gateway):
    wrong = post(gateway, "/key/generate", max_budget="lots")
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "max_budget"
    typo = post(gateway, "/key/generate", max_bugdet=5)
    assert typo.status_code == 400 and typo.json()["error"]["param"] == "max_bugdet"
    assert "did you mean 'max_budget'" in typo.json()["error"]["message"]


# -- users created on the fly ----------------------------------------------------------------------

def test_key_generate_creates_an_unknown_user(gateway):
    made = post(gateway, "/key/generate", user_id="new-user-42")
    assert made.status_code == 200, made.text
    info = get(gateway, "/user/info", user_id="new-user-42").json()
    assert info["user_info"]["user_role"] == "internal_user"
    assert [k["token"] for k in info["keys"]] == [made.json()["token"]]


def test_team_new_and_member_add_create_unknown_members(gateway):
    team = post(gateway, "/team/new", members_with_roles=[{"role": "admin", "user_id": "lead-1"},
                                                          {"role": "user", "user_email": "dev@example.com"}])
    assert team.status_code == 200, team.text
    team_id = team.json()["team_id"]
    added = post(gateway, "/team/member_add", team_id=team_id, member={"role": "user", "user_email": "ops@example.com"})
    assert added.status_code == 200
    members = added.json()["members_with_roles"]
    assert {"user_id": "lead-1", "role": "admin"} in members and len(members) == 3
    # The same email again is the same user, not a second one.
    again = post(gateway, "/team/member_add", team_id=team_id,
                 member={"role": "admin", "user_email": "ops@example.com"})
    assert len(again.json()["members_with_roles"]) == 3


def test_team_member_update_changes_a_role(gateway):
    team_id = post(gateway, "/team/new", members_with_roles=[{"role": "user", "user_id": "m-1"}]).json()["team_id"]
    changed = post(gateway, "/team/member_update", team_id=team_id, user_id="m-1", role="admin", max_budget_in_team=3)
    assert changed.status_code == 200 and changed.json()["role"] == "admin"
    assert any("max_budget_in_team" in w for w in changed.json()["warnings"])
    assert post(gateway, "/team/member_update", team_id=team_id, user_id="nobody", role="admin").status_code == 404


# -- self-service keys -----------------------------------------------------------------------------

def test_an_internal_user_makes_its_own_key_within_its_models_and_budget(gateway):
    user = post(gateway, "/user/new", user_id="self-1", models=["demo"], max_budget=10).json()
    own = post(gateway, "/key/generate", user["key"], key_alias="mine")
    assert own.status_code == 200, own.text
    assert own.json()["user_id"] == "self-1" and own.json()["models"] == ["demo"] and own.json()["max_budget"] == 10
    assert chat(gateway, own.json()["key"]).status_code == 200
    assert post(gateway, "/key/generate", user["key"], models=["gpt-4o-mini"]).status_code == 403
    assert post(gateway, "/key/generate", user["key"], max_budget=11).status_code == 403
    assert post(gateway, "/key/generate", user["key"], user_id="someone-else").status_code == 403
    # Still no admin: other admin routes stay closed to it.
    assert post(gateway, "/user/new", user["key"], user_id="x").status_code == 403


# -- listings --------------------------------------------------------------------------------------

def test_team_list_and_user_list_answer_as_litellm(gateway):
    post(gateway, "/team/new", team_alias="listed")
    post(gateway, "/user/new", user_id="listed-user", user_role="internal_user")
    teams = get(gateway, "/team/list").json()
    assert isinstance(teams, list) and [t["team_alias"] for t in teams] == ["listed"]
    assert "members_with_roles" in teams[0] and "spend" in teams[0]
    users = get(gateway, "/user/list", role="internal_user").json()
    assert users["total"] == 1 and users["users"][0]["user_id"] == "listed-user" and users["page"] == 1


def test_max_parallel_requests_zero_blocks_the_key(gateway):
    key = post(gateway, "/key/generate", max_parallel_requests=0).json()["key"]
    assert chat(gateway, key).status_code == 429
