"""Teams: `/team/new`, `/team/info`, `/team/list`, `/team/update`, `/team/member_add`,
`/team/member_update`, `/team/member_delete`, `/team/delete`.

A team's models and limits bound its keys: a key asking for more is refused when it is made,
and a team narrowed later narrows its keys at once (they are checked against both).
"""

from __future__ import annotations

import uuid

from flask import Blueprint, jsonify

from dheera_ai.errors import BadRequestError, NotFoundError, PermissionDeniedError
from proxy_app import admin
from proxy_app.admin_schemas import (
    TeamDeleteSchema,
    TeamMemberAddSchema,
    TeamMemberDeleteSchema,
    TeamMemberUpdateSchema,
    TeamNewSchema,
    TeamUpdateSchema,
)
from proxy_app.blueprints.keys import key_view

bp = Blueprint("teams", __name__)
bp.after_request(admin.add_warnings)
_new, _update, _delete = TeamNewSchema(), TeamUpdateSchema(), TeamDeleteSchema()
_member_add, _member_delete = TeamMemberAddSchema(), TeamMemberDeleteSchema()
_member_update = TeamMemberUpdateSchema()


def existing_team(store, team_id: str) -> dict:
    team = store.get_team(team_id)
    if team is None:
        raise NotFoundError(f"There is no team '{team_id}'.", param="team_id", code="team_not_found")
    return team


def team_view(store, team: dict) -> dict:
    return {**admin.view(team), "members_with_roles": store.team_members(team["team_id"])}


def _members(store, members: list[dict]) -> list[tuple[str, str]]:
    """(user id, role) of each member; users not known yet are created, as LiteLLM does."""
    return [(admin.ensure_user(store, m.get("user_id"), m.get("user_email"))["user_id"], m["role"])
            for m in members]


@bp.post("/team/new")
def new():
    admin.require_admin()
    return new_team(admin.store(), admin.body(_new))


def new_team(store, data: dict) -> dict:
    members = _members(store, data.pop("members_with_roles", []))
    data.setdefault("team_id", str(uuid.uuid4()))
    return team_view(store, store.insert_team(data, members))


@bp.get("/team/info")
def info():
    principal = admin.caller()
    team_id = admin.query("team_id", required=not principal.team_id) or principal.team_id
    if not admin.is_admin(principal) and team_id != principal.team_id:
        raise PermissionDeniedError("A key may only look up its own team.", code="admin_only")
    store = admin.store()
    team = existing_team(store, team_id)
    if admin.is_admin(principal) or _team_admin(store, team["team_id"], principal.user_id):
        keys, _ = store.list_keys(team_id=team["team_id"], limit=1000)
    else:  # a member sees the team, and of its keys only their own
        keys = [k for k in store.list_keys(team_id=team["team_id"], limit=1000)[0]
                if k["key_hash"] == principal.key_hash or (principal.user_id and k["user_id"] == principal.user_id)]
    return {"team_id": team["team_id"], "team_info": {**team_view(store, team), "spend": store.spend_of(
        "team", team["team_id"])}, "keys": [key_view(k) for k in keys]}


def _team_admin(store, team_id: str, user_id: str | None) -> bool:
    return user_id is not None and {"user_id": user_id, "role": "admin"} in store.team_members(team_id)


@bp.post("/team/update")
def update():
    admin.require_admin()
    return update_team(admin.store(), admin.body(_update))


def update_team(store, data: dict) -> dict:
    team_id = data.pop("team_id")
    existing_team(store, team_id)
    team = store.update_team(team_id, data)
    admin.state().auth.invalidate()  # every key of the team is bounded anew
    return team_view(store, team)


@bp.post("/team/member_add")
def member_add():
    admin.require_admin()
    return add_members(admin.store(), admin.body(_member_add))


def add_members(store, data: dict) -> dict:
    team = existing_team(store, data["team_id"])
    store.add_team_members(team["team_id"], _members(store, data["member"]))
    return team_view(store, team)


@bp.post("/team/member_update")
def member_update():
    """A member's role; LiteLLM's per-member budget fields are ignored with a warning."""
    admin.require_admin()
    data = admin.body(_member_update)
    store = admin.store()
    team = existing_team(store, data["team_id"])
    user = store.get_user(data["user_id"]) if data.get("user_id") else (
        store.user_by_email(data["user_email"]) if data.get("user_email") else None)
    members = {m["user_id"]: m["role"] for m in store.team_members(team["team_id"])}
    if user is None or user["user_id"] not in members:
        raise NotFoundError(f"Not a member of team '{team['team_id']}'.", param="user_id", code="member_not_found")
    role = data.get("role") or members[user["user_id"]]
    store.add_team_members(team["team_id"], [(user["user_id"], role)])
    admin.state().auth.invalidate()
    return {"team_id": team["team_id"], "user_id": user["user_id"], "role": role}


@bp.get("/team/list")
def list_teams():
    """LiteLLM answers a list of teams, each with its members and spend."""
    admin.require_admin()
    store = admin.store()
    page, size = admin.page_args(default_size=admin.MAX_PAGE_SIZE)
    rows, _ = store.list_teams(offset=(page - 1) * size, limit=size)
    return jsonify([{**team_view(store, t), "spend": store.spend_of("team", t["team_id"])} for t in rows])


@bp.post("/team/member_delete")
def member_delete():
    admin.require_admin()
    return remove_members(admin.store(), admin.body(_member_delete))


def remove_members(store, data: dict) -> dict:
    user_ids = ([data["user_id"]] if data.get("user_id") else []) + (data.get("user_ids") or [])
    if not user_ids:
        raise BadRequestError("Give 'user_id' or 'user_ids'.", param="user_id", code="missing_parameter")
    team = existing_team(store, data["team_id"])
    removed = store.remove_team_members(team["team_id"], user_ids)
    missing = [u for u in user_ids if u not in removed]
    if missing:
        raise NotFoundError(f"Not a member of team '{team['team_id']}': {', '.join(missing)}.",
                            param="user_id", code="member_not_found")
    return team_view(store, team)


@bp.post("/team/delete")
def delete():
    admin.require_admin()
    return delete_teams(admin.store(), admin.body(_delete)["team_ids"])


def delete_teams(store, team_ids: list[str]) -> dict:
    """Delete these teams and their keys: all or none."""
    missing = [t for t in team_ids if store.get_team(t) is None]
    if missing:
        raise NotFoundError(f"There is no team {', '.join(missing)}; nothing was deleted.",
                            param="team_ids", code="team_not_found")
    deleted, keys = store.delete_teams(team_ids)
    admin.state().auth.invalidate(keys)
    return {"deleted_teams": deleted, "deleted_keys": keys}
