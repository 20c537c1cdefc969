"""What the key, user and team routes share: who may call them, request parsing, views of rows."""

from __future__ import annotations

import datetime

from flask import current_app, request
from marshmallow import Schema, ValidationError

from dheera_ai.errors import BadRequestError, PermissionDeniedError
from dheera_ai.types import Principal
from proxy_app import calls

ADMIN_ROLE = "proxy_admin"
# The last page a listing serves: page x size stays far inside the store's 64-bit OFFSET.
MAX_PAGE = 10**9


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
    """The request's JSON, validated (400 naming the first bad field) and loaded.

    `load` decides, not only `calls.json_body`'s check: that one may vouch for a body by its known
    fields alone, and admin schemas must also refuse unknown ones.
    """
    data = calls.json_body(schema)
    if _has_nul(data):
        raise BadRequestError("The request body contains a NUL character (\\u0000), which no name or id may have.",
                              code="invalid_value")
    try:
        return schema.load(data)
    except ValidationError as e:
        field, message = calls._first_problem(e.messages)  # the same 400 json_body gives
        raise BadRequestError(f"Invalid value for '{field}': {message}", param=field, code="invalid_value") from None


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
