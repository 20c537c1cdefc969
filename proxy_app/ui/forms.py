"""HTML form fields -> the JSON bodies the admin API's schemas validate, so a form and a request
are checked by the same rules and answered with the same messages."""

from __future__ import annotations

import orjson
from marshmallow import Schema, ValidationError

from dheera_ai.errors import BadRequestError
from proxy_app import calls

# How each form field becomes a JSON value; a field left empty is left out (or cleared, on edit).
LISTS = {"models", "tags", "teams", "user_ids", "team_ids"}
INTEGERS = {"rpm_limit", "tpm_limit", "max_parallel_requests"}
FLOATS = {"max_budget"}
JSON_OBJECTS = {"metadata"}
CLEARABLE = {"key_alias", "duration", "budget_duration", "user_email", "team_alias", "user_id", "team_id",
             *INTEGERS, *FLOATS}
PAGE_SIZE = 25


def body(form, names, schema: Schema, clear_empty: bool = False, **fixed) -> dict:
    """The named fields of `form` as a request body, loaded by `schema` (a 400 naming the field
    otherwise). With `clear_empty`, an emptied limit or name becomes null: the edit form clears it."""
    data = {}
    for name in names:
        raw = form.get(name)
        if raw is None:
            continue
        value = raw.strip()
        if not value:
            if clear_empty and name in CLEARABLE:
                data[name] = None
            elif clear_empty and name in LISTS | JSON_OBJECTS:
                data[name] = [] if name in LISTS else {}
            continue
        data[name] = _value(name, value)
    data.update(fixed)
    return load(schema, data)


def load(schema: Schema, data: dict) -> dict:
    """`data` loaded by the admin API's schema; its first problem as the API's 400."""
    try:
        return schema.load(data)
    except ValidationError as e:
        field, message = calls._first_problem(e.messages)
        raise BadRequestError(f"Invalid value for '{field}': {message}", param=field, code="invalid_value") from None


def _value(name: str, value: str):
    if name in LISTS:
        return [part.strip() for part in value.replace("\n", ",").split(",") if part.strip()]
    if name in INTEGERS:
        return _number(name, value, int)
    if name in FLOATS:
        return _number(name, value, float)
    if name in JSON_OBJECTS:
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            raise BadRequestError(f"Invalid value for '{name}': not valid JSON.", param=name,
                                  code="invalid_value") from None
    return value


def _number(name, value, kind):
    try:
        return kind(value)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise BadRequestError(f"Invalid value for '{name}': must be {what}.", param=name,
                              code="invalid_value") from None


def page_number(args) -> int:
    raw = args.get("page", "1")
    return int(raw) if raw.isascii() and raw.isdigit() and int(raw) >= 1 else 1


def values_of(row: dict) -> dict:
    """A stored row as the form's text fields (lists comma-separated, metadata as JSON)."""
    values = {}
    for name, value in row.items():
        if value is None:
            continue
        if isinstance(value, list):
            values[name] = ", ".join(value)
        elif isinstance(value, dict):
            values[name] = orjson.dumps(value).decode() if value else ""
        elif isinstance(value, float):
            values[name] = str(int(value)) if value.is_integer() else repr(value)  # 500, not 500.0
        else:
            values[name] = str(value)
    return values
