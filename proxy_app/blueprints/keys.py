"""Virtual keys: `/key/generate`, `/key/info`, `/key/list`, `/key/update`, `/key/delete`,
`/key/regenerate`, `/key/block`, `/key/unblock`.

A key is shown once, when generated or regenerated; afterwards it is known by its `token` (the
SHA-256 the store keeps) or its alias. Routes that name a key accept either the key or its token.
"""

from __future__ import annotations

import math
import time

from flask import Blueprint, request

from dheera_ai.errors import BadRequestError, NotFoundError, PermissionDeniedError
from proxy_app import admin
from proxy_app.admin_schemas import (
    KeyDeleteSchema,
    KeyGenerateSchema,
    KeyRefSchema,
    KeyRegenerateSchema,
    KeyUpdateSchema,
)
from proxy_app.virtual_keys import KEY_PREFIX, effective_models, hash_key, masked, new_key, parse_duration

bp = Blueprint("keys", __name__)
bp.after_request(admin.add_warnings)
_generate, _update, _regenerate = KeyGenerateSchema(), KeyUpdateSchema(), KeyRegenerateSchema()
_ref, _delete = KeyRefSchema(), KeyDeleteSchema()
BOUNDED_LIMITS = ("max_budget", "rpm_limit", "tpm_limit", "max_parallel_requests")
SELF_SERVICE_ROLE = "internal_user"


def key_view(row: dict) -> dict:
    out = admin.view(row, hidden=("key_hash",))
    return {"token": row["key_hash"], **out}


def token_of(ref: str) -> str:
    """A key or its token -> the token."""
    return hash_key(ref) if ref.startswith(KEY_PREFIX) else ref


def existing_key(store, ref: str) -> dict:
    row = store.get_key(token_of(ref))
    if row is None:
        raise NotFoundError("No such key (give the key itself or its token).", param="key", code="key_not_found")
    return row


def key_changes(store, data: dict, existing: dict | None = None, create_user: bool = False) -> dict:
    """Request fields -> stored columns: `duration` becomes `expires`, LiteLLM's per-model limits
    go into `metadata`; the team must exist, the owner too (or is created, as LiteLLM does on
    /key/generate), and a key never asks for more than its team allows."""
    changes = dict(data)
    if "duration" in changes:
        duration = changes.pop("duration")
        changes["expires"] = None if duration is None else time.time() + parse_duration(duration)
    per_model = {name: changes.pop(name) for name in ("model_rpm_limit", "model_tpm_limit") if name in changes}
    if per_model:
        changes["metadata"] = {**(existing or {}).get("metadata", {}), **changes.get("metadata", {}), **per_model}
    merged = {**(existing or {}), **changes}
    if merged.get("user_id") and store.get_user(merged["user_id"]) is None:
        if not create_user:
            raise BadRequestError(f"There is no user '{merged['user_id']}'; create it with /user/new first.",
                                  param="user_id", code="user_not_found")
        admin.ensure_user(store, user_id=merged["user_id"])
    if merged.get("team_id"):
        team = store.get_team(merged["team_id"])
        if team is None:
            raise BadRequestError(f"There is no team '{merged['team_id']}'.", param="team_id", code="team_not_found")
        check_within_team(merged, team, admin.state().auth.groups)
        members = {m["user_id"] for m in store.team_members(team["team_id"])}
        if merged.get("user_id") and merged["user_id"] not in members:
            raise BadRequestError(f"User '{merged['user_id']}' is not a member of team '{team['team_id']}'; add "
                                  "them with /team/member_add first.", param="user_id", code="user_not_in_team")
    return changes


def check_within_team(key: dict, team: dict, groups: dict) -> None:
    """400 if the key asks for a model or a limit beyond its team's."""
    team_models = effective_models(team["models"], None, groups)
    key_models = effective_models(key.get("models"), None, groups)
    if team_models is not None and key_models is not None and not key_models <= team_models:
        beyond = ", ".join(sorted(key_models - team_models))
        raise BadRequestError(f"The key asks for models its team '{team['team_id']}' does not have: {beyond}. "
                              f"The team allows: {', '.join(sorted(team_models))}.",
                              param="models", code="beyond_team_models")
    for name in BOUNDED_LIMITS:
        if team[name] is not None and key.get(name) is not None and key[name] > team[name]:
            raise BadRequestError(f"The key's {name} ({key[name]}) exceeds its team's ({team[name]}).",
                                  param=name, code="beyond_team_limits")


def create_key(store, data: dict) -> dict:
    """Store a new key (the caller's or a fresh one); the answer holds the plaintext, once.
    An unknown `user_id` becomes a new user, as in LiteLLM."""
    key = data.pop("key", None) or new_key()
    row = key_changes(store, data, create_user=True)
    row.update(key_hash=hash_key(key), key_name=masked(key))
    view = key_view(store.insert_key(row))
    return {"key": key, "token_id": view["token"], **view}


@bp.post("/key/generate")
def generate():
    principal = admin.caller()
    if principal.kind == "virtual_key" and principal.user_role == SELF_SERVICE_ROLE:
        data = admin.body(_generate)
        return create_key(admin.store(), own_key_request(admin.store(), principal, data))
    admin.require_admin()
    return create_key(admin.store(), admin.body(_generate))


def own_key_request(store, principal, data: dict) -> dict:
    """An internal_user's key asking for a key of its own (LiteLLM's self-service keys): for its
    own user, within the user's models and limits, in a team only if it is a member."""
    if principal.user_id is None:
        raise PermissionDeniedError("This key belongs to no user, so it cannot make keys.", code="admin_only")
    if data.get("user_id") not in (None, principal.user_id):
        raise PermissionDeniedError("An internal_user may only make keys for itself.", param="user_id",
                                    code="admin_only")
    user = store.get_user(principal.user_id)
    if user is None:
        raise PermissionDeniedError("This key's user no longer exists.", code="admin_only")
    if data.get("team_id") and data["team_id"] not in store.user_teams(user["user_id"]):
        raise PermissionDeniedError(f"Not a member of team '{data['team_id']}'.", param="team_id", code="admin_only")
    data["user_id"] = user["user_id"]
    groups = admin.state().auth.groups
    allowed = effective_models(user["models"], None, groups)
    asked = effective_models(data.get("models"), None, groups)
    if allowed is not None:
        if asked is None:
            data["models"] = sorted(user["models"])  # "every model" means every model the user has
        elif not asked <= allowed:
            raise PermissionDeniedError(f"Your user may not use: {', '.join(sorted(asked - allowed))}.",
                                        param="models", code="beyond_user_models")
    for name in BOUNDED_LIMITS:
        if user[name] is None:
            continue
        if data.get(name) is None:
            data[name] = user[name]  # a user's own key is never less bounded than the user
        elif data[name] > user[name]:
            raise PermissionDeniedError(f"The key's {name} ({data[name]}) exceeds your user's ({user[name]}).",
                                        param=name, code="beyond_user_limits")
    return data


@bp.get("/key/info")
def info():
    principal = admin.caller()
    ref = request.args.get("key")
    store = admin.store()
    if not admin.is_admin(principal):
        # Any key may look itself up; only admins may look up others.
        if principal.kind != "virtual_key" or (ref and token_of(ref) != principal.key_hash):
            raise PermissionDeniedError("A key may only look up itself.", code="admin_only")
        ref = principal.key_hash
    if not ref:
        raise BadRequestError("Missing query parameter 'key'.", param="key", code="missing_parameter")
    row = existing_key(store, ref)
    return {"key": row["key_hash"], "info": {**key_view(row), "spend": store.spend_of("key", row["key_hash"])}}


@bp.get("/key/list")
def list_keys():
    admin.require_admin()
    page, size = admin.page_args()
    rows, total = admin.store().list_keys(user_id=request.args.get("user_id"), team_id=request.args.get("team_id"),
                                          key_alias=request.args.get("key_alias"),
                                          offset=(page - 1) * size, limit=size)
    return {"keys": [key_view(r) for r in rows], "total_count": total, "current_page": page,
            "total_pages": math.ceil(total / size)}


@bp.post("/key/update")
def update():
    admin.require_admin()
    return update_key(admin.store(), admin.body(_update))


def update_key(store, data: dict) -> dict:
    """Apply a validated /key/update body (`key` names the key)."""
    existing = existing_key(store, data.pop("key"))
    row = store.update_key(existing["key_hash"], key_changes(store, data, existing))
    admin.state().auth.invalidate([existing["key_hash"]])
    return key_view(row)


@bp.post("/key/delete")
def delete():
    admin.require_admin()
    return delete_keys(admin.store(), admin.body(_delete))


def delete_keys(store, data: dict) -> dict:
    """Delete the keys a validated /key/delete body names (by key, token or alias): all or none."""
    refs, aliases = data.get("keys") or [], data.get("key_aliases") or []
    if not refs and not aliases:
        raise BadRequestError("Give 'keys' or 'key_aliases' to delete.", param="keys", code="missing_parameter")
    by_alias = store.key_hashes_for_aliases(aliases)
    missing = [a for a in aliases if a not in by_alias]
    if missing:
        raise NotFoundError(f"No key has the alias {', '.join(missing)}.", param="key_aliases",
                            code="key_not_found")
    tokens = list(dict.fromkeys([token_of(r) for r in refs] + list(by_alias.values())))
    unknown = [t for t in tokens if store.get_key(t) is None]
    if unknown:
        # All or nothing: a typo in a list of keys to revoke must not half-succeed silently.
        raise NotFoundError(f"{len(unknown)} of the keys given do not exist; nothing was deleted.",
                            param="keys", code="key_not_found")
    deleted = store.delete_keys(tokens)
    admin.state().auth.invalidate(deleted)
    return {"deleted_keys": deleted}


@bp.post("/key/regenerate")
def regenerate():
    admin.require_admin()
    return regenerate_key(admin.store(), admin.body(_regenerate))


def regenerate_key(store, data: dict) -> dict:
    """A new secret for the key a validated /key/regenerate body names; the answer holds it, once."""
    existing = existing_key(store, data.pop("key"))
    key = data.pop("new_key", None) or new_key()
    changes = key_changes(store, data, existing)
    row = store.regenerate_key(existing["key_hash"], hash_key(key), masked(key), changes)
    admin.state().auth.invalidate([existing["key_hash"]])
    return {"key": key, **key_view(row)}


@bp.post("/key/block")
def block():
    return _set_blocked(True)


@bp.post("/key/unblock")
def unblock():
    return _set_blocked(False)


def _set_blocked(blocked: bool):
    admin.require_admin()
    return set_blocked(admin.store(), admin.body(_ref)["key"], blocked)


def set_blocked(store, ref: str, blocked: bool) -> dict:
    existing = existing_key(store, ref)
    row = store.update_key(existing["key_hash"], {"blocked": blocked})
    admin.state().auth.invalidate([existing["key_hash"]])
    return key_view(row)
