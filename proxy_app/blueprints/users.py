"""Users: `/user/new`, `/user/info`, `/user/list`, `/user/update`, `/user/delete`.

A user owns keys and may belong to teams; its `user_role` decides whether its keys are admin
keys (`proxy_admin`). Deleting a user deletes its keys.
"""

from __future__ import annotations

import math
import uuid

from flask import Blueprint, request

from dheera_ai.errors import BadRequestError, NotFoundError, PermissionDeniedError
from proxy_app import admin
from proxy_app.admin_schemas import UserDeleteSchema, UserNewSchema, UserUpdateSchema
from proxy_app.blueprints.keys import create_key, key_view

bp = Blueprint("users", __name__)
bp.after_request(admin.add_warnings)
_new, _update, _delete = UserNewSchema(), UserUpdateSchema(), UserDeleteSchema()
DEFAULT_ROLE = "internal_user"


@bp.post("/user/new")
def new():
    admin.require_admin()
    return new_user(admin.store(), admin.body(_new))


def new_user(store, data: dict) -> dict:
    """Create the user a validated /user/new body describes (and its first key, unless told not to)."""
    teams = data.pop("teams", [])
    if data.get("team_id"):
        teams = list(dict.fromkeys([*teams, data["team_id"]]))
    data.pop("team_id", None)
    for team_id in teams:
        if store.get_team(team_id) is None:
            raise BadRequestError(f"There is no team '{team_id}'.", param="teams", code="team_not_found")
    key_fields = {name: data.pop(name) for name in ("key_alias", "duration") if name in data}
    auto_create_key = data.pop("auto_create_key")
    per_model = {name: data.pop(name) for name in ("model_rpm_limit", "model_tpm_limit") if name in data}
    if per_model:
        data["metadata"] = {**data.get("metadata", {}), **per_model}
    data.setdefault("user_id", str(uuid.uuid4()))
    data.setdefault("user_role", DEFAULT_ROLE)
    user = store.insert_user(data)
    for team_id in teams:
        store.add_team_members(team_id, [(user["user_id"], "user")])
    out = {**admin.view(user), "teams": teams}
    if auto_create_key:
        key = create_key(store, {"user_id": user["user_id"], "models": user["models"], **key_fields})
        out["key"] = key["key"]
        out["token"] = key["token"]
    return out


@bp.get("/user/info")
def info():
    principal = admin.caller()
    user_id = admin.query("user_id", required=not principal.user_id) or principal.user_id
    if not admin.is_admin(principal) and user_id != principal.user_id:
        raise PermissionDeniedError("A key may only look up its own user.", code="admin_only")
    store = admin.store()
    user = store.get_user(user_id)
    if user is None:
        raise NotFoundError(f"There is no user '{user_id}'.", param="user_id", code="user_not_found")
    keys, _ = store.list_keys(user_id=user_id, limit=1000)
    return {"user_id": user_id, "user_info": {**admin.view(user), "spend": store.spend_of("user", user_id)},
            "keys": [key_view(k) for k in keys],
            "teams": store.user_teams(user_id)}


@bp.get("/user/list")
def list_users():
    """LiteLLM's shape: {users, total, page, page_size, total_pages}; `?role=` filters."""
    admin.require_admin()
    page, size = admin.page_args()
    store = admin.store()
    rows, total = store.list_users(user_role=request.args.get("role") or request.args.get("user_role"),
                                   offset=(page - 1) * size, limit=size)
    users = [{**admin.view(u), "spend": store.spend_of("user", u["user_id"])} for u in rows]
    return {"users": users, "total": total, "page": page, "page_size": size,
            "total_pages": math.ceil(total / size)}


@bp.post("/user/update")
def update():
    admin.require_admin()
    return update_user(admin.store(), admin.body(_update))


def update_user(store, data: dict) -> dict:
    user_id = data.pop("user_id")
    per_model = {name: data.pop(name) for name in ("model_rpm_limit", "model_tpm_limit") if name in data}
    if per_model:
        existing = store.get_user(user_id) or {"metadata": {}}
        data["metadata"] = {**existing["metadata"], **data.get("metadata", {}), **per_model}
    user = store.update_user(user_id, data)
    if user is None:
        raise NotFoundError(f"There is no user '{user_id}'.", param="user_id", code="user_not_found")
    # A role or model change alters what the user's cached keys may do.
    admin.state().auth.invalidate()
    return admin.view(user)


@bp.post("/user/delete")
def delete():
    admin.require_admin()
    return delete_users(admin.store(), admin.body(_delete)["user_ids"])


def delete_users(store, user_ids: list[str]) -> dict:
    """Delete these users and their keys: all or none."""
    missing = [u for u in user_ids if store.get_user(u) is None]
    if missing:
        raise NotFoundError(f"There is no user {', '.join(missing)}; nothing was deleted.",
                            param="user_ids", code="user_not_found")
    deleted, keys = store.delete_users(user_ids)
    admin.state().auth.invalidate(keys)
    return {"deleted_users": deleted, "deleted_keys": keys}
