"""What the key, user and team routes share: who may call them, request parsing, views of rows."""

from __future__ import annotations

import datetime
import difflib
import uuid

import orjson
from flask import current_app, g, request
from marshmallow import Schema, ValidationError

from dheera_ai.errors import BadRequestError, PermissionDeniedError
from dheera_ai.types import Principal
from proxy_app import calls

ADMIN_ROLE = "proxy_admin"
# The last page a listing serves: page x size stays far inside the store's 64-bit OFFSET.
MAX_PAGE = 10**9
# Fields of LiteLLM's key, user, team and model requests that Dheera AI has no place for. They are
# accepted so LiteLLM's scripts run, and named in the answer's `warnings`.
LITELLM_UNUSED_FIELDS = frozenset({
    "aliases", "model_aliases", "config", "permissions", "model_max_budget", "allowed_cache_controls",
    "soft_budget", "guardrails", "spend", "budget_id", "send_invite_email", "enforced_params",
    "organization_id", "user_alias", "budget_limits", "agent_id", "object_permission", "prompts",
    "auto_rotate", "rotation_interval", "key_type", "allowed_routes", "allowed_passthrough_routes",
    "team_member_permissions", "team_member_budget", "team_member_rpm_limit", "team_member_tpm_limit",
    "team_member_key_duration", "sso_user_id", "budget_fallbacks", "upperbound_key_generate_params",
    "max_budget_in_team", "tpm_limit_type", "rpm_limit_type", "access_group_ids", "router_settings",
    "logging", "secret_manager_settings", "disable_global_guardrails", "expires",
    "key_name", "soft_budget_cooldown", "allowed_vector_store_indexes", "policies",
    "disable_global_policies", "default_model", "guardrail_settings",
    "litellm_changed_by", "admins", "members", "organization", "team_alias_prefix", "user_name",
    "organization_alias", "model_max_budget_limits", "allowed_model_region", "budget_reset_at",
})


def state():
    return current_app.extensions["dheera_ai_state"]


def store():
    current = state()
    current.ensure_schema()
    return current.store


def is_admin(principal: Principal) -> bool:
    return principal.kind == "master" or (principal.kind == "virtual_key" and principal.user_role == ADMIN_ROLE)


def caller() -> Principal:
    return calls.authenticate()


def require_admin() -> Principal:
    """The master key, or a key whose user has the proxy_admin role."""
    principal = caller()
    if principal.kind == "anonymous":
        raise PermissionDeniedError("Managing keys, users and teams needs general_settings.master_key to be set.",
                                    code="master_key_required")
    if not is_admin(principal):
        raise PermissionDeniedError("Only the master key or a proxy_admin user's key may do this.",
                                    code="admin_only")
    return principal


def body(schema: Schema) -> dict:
    """The request's JSON, made lenient the way LiteLLM's scripts need, validated (400 naming the
    first bad field) and loaded.

    LiteLLM's field names that have no place here are dropped and named in the answer's
    `warnings` (see `add_warnings`); a `null` is "not given" where a field has no null meaning.
    A name neither knows stays a 400 with a did-you-mean: a typo must not silently grant
    something else. Wrong types stay 400s naming the field.
    """
    data, ignored = lenient(schema, calls.json_object())
    if _has_nul(data):
        raise BadRequestError("The request body contains a NUL character (\\u0000), which no name or id may have.",
                              code="invalid_value")
    try:
        loaded = schema.load(data)
    except ValidationError as e:
        field, message = calls._first_problem(e.messages)  # the same 400 json_body gives
        if message.startswith("Unknown field"):
            close = difflib.get_close_matches(field, list(schema.fields), n=1)
            message = f"unknown field{f' (did you mean {close[0]!r}?)' if close else ''}"
        raise BadRequestError(f"Invalid value for '{field}': {message}", param=field, code="invalid_value") from None
    warn(*(f"'{name}' is a LiteLLM field Dheera AI does not use; ignored" for name in ignored))
    return loaded


def lenient(schema: Schema, data: dict) -> tuple[dict, list[str]]:
    """`data` without LiteLLM's unused fields and without nulls that mean "not given"."""
    out, ignored = {}, []
    for name, value in data.items():
        known = schema.fields.get(name)
        if known is None and name in LITELLM_UNUSED_FIELDS:
            ignored.append(name)
        elif not (value is None and known is not None and not known.allow_none):
            out[name] = value
    return out, ignored


def warn(*messages: str) -> None:
    """Say something in this admin answer's `warnings` (LiteLLM fields ignored, ...)."""
    if messages:
        g.setdefault("admin_warnings", []).extend(messages)


def add_warnings(response):
    """after_request of the admin blueprints: a JSON object answer gains the request's `warnings`."""
    messages = g.pop("admin_warnings", None)
    if messages and response.is_json and response.status_code < 400:
        data = response.get_json(silent=True)
        if isinstance(data, dict):
            data["warnings"] = list(dict.fromkeys(messages))
            response.set_data(orjson.dumps(data))
    return response


def ensure_user(store, user_id: str | None = None, user_email: str | None = None) -> dict:
    """The user with this id (or, without one, this email), created as an internal_user if there is
    none: LiteLLM creates users named by /key/generate, /team/new and /team/member_add."""
    user = store.get_user(user_id) if user_id else store.user_by_email(user_email)
    if user is None:
        user = store.insert_user({"user_id": user_id or str(uuid.uuid4()), "user_email": user_email,
                                  "user_role": "internal_user", "models": [], "metadata": {}})
        warn(f"user '{user['user_id']}' did not exist and was created (role internal_user)")
    return user


MAX_PAGE_SIZE = 100


def page_args(default_size: int = 10) -> tuple[int, int]:
    """`?page=` (from 1, at most MAX_PAGE) and `?size=` / `?page_size=` (at most MAX_PAGE_SIZE), checked."""
    page = int_query("page", 1, 1, MAX_PAGE)
    name = "size" if "size" in request.args else "page_size"
    return page, int_query(name, default_size, 1, MAX_PAGE_SIZE)


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def query(name: str, required: bool = True) -> str | None:
    value = request.args.get(name)
    if required and not value:
        raise BadRequestError(f"Missing query parameter '{name}'.", param=name, code="missing_parameter")
    return value


def int_query(name: str, default: int, low: int, high: int) -> int:
    """A whole-number query parameter within [low, high]; a 400 naming it otherwise (a page past
    2**63 would overflow the store's OFFSET)."""
    value = request.args.get(name)
    if value is None:
        return default
    # isdigit() alone also accepts digits int() refuses ('²'), hence the ASCII check.
    if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:
        raise BadRequestError(f"'{name}' must be a whole number from {low} to {high}.", param=name,
                              code="invalid_value")
    return int(value)


def timestamp(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat().replace("+00:00", "Z")


def view(row: dict, hidden=()) -> dict:
    """A stored row as the API shows it: times as ISO 8601."""
    out = {k: v for k, v in row.items() if k not in hidden}
    for name in ("expires", "created_at", "updated_at"):
        if name in out:
            out[name] = timestamp(out[name])
    return out
