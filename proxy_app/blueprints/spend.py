"""Spend: `GET /spend/logs`, `/spend/tags`, `/spend/report`, and LiteLLM's `/global/spend/teams`,
`/global/spend/report`.

Admins see everything; a virtual key sees its own calls only. Rows reach the store from the
spool within about a second of the call (see `proxy_app.spend`).
"""

from __future__ import annotations

import datetime
import math

from flask import Blueprint, jsonify, request

from dheera_ai.errors import BadRequestError, PermissionDeniedError
from proxy_app import admin
from proxy_app.blueprints.keys import token_of
from proxy_app.store.spend import REPORT_GROUPS

bp = Blueprint("spend", __name__)
MAX_PAGE_SIZE = 1000


def _scope() -> dict:
    """Filters the caller may not widen: a virtual key that is no admin sees its own rows."""
    principal = admin.caller()
    if admin.is_admin(principal):
        return {}
    if principal.kind == "virtual_key":
        return {"key": principal.key_hash}
    raise PermissionDeniedError("Spend is visible to the master key, proxy_admin users and each key for itself.",
                                code="admin_only")


def _time(name: str) -> float | None:
    """`start_date` / `end_date`: epoch seconds, a date (UTC midnight) or an ISO 8601 time."""
    value = request.args.get(name)
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequestError(f"'{name}' must be a date (2026-11-22), an ISO 8601 time or epoch seconds.",
                              param=name, code="invalid_value") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def _range() -> tuple[float | None, float | None]:
    start, end = _time("start_date"), _time("end_date")
    if end is not None and request.args.get("end_date", "").count(":") == 0 and len(request.args["end_date"]) == 10:
        end += 86400  # a date as the end means that whole day
    return start, end


@bp.get("/spend/logs")
def logs():
    forced = _scope()
    key = request.args.get("api_key") or request.args.get("key")
    filters = {"key": token_of(key) if key else None, "user": request.args.get("user_id"),
               "team": request.args.get("team_id"), "model": request.args.get("model"),
               "request_id": request.args.get("request_id"), **forced}
    if forced and key and token_of(key) != forced["key"]:
        raise PermissionDeniedError("A key may read its own spend only.", param="api_key", code="admin_only")
    page, size = admin.int_query("page", 1, 1, admin.MAX_PAGE), admin.int_query("size", 50, 1, MAX_PAGE_SIZE)
    start, end = _range()
    rows, total = admin.store().spend_logs(filters=filters, tag=request.args.get("tag"), start=start, end=end,
                                           offset=(page - 1) * size, limit=size)
    for row in rows:
        for name in ("start_time", "end_time"):
            row[name] = admin.timestamp(row[name])
    if request.args.get("format") == "litellm":
        return jsonify([litellm_row(row) for row in rows])
    return {"data": rows, "total_count": total, "current_page": page, "total_pages": math.ceil(total / size)}


# Our spend-row fields -> LiteLLM's names for them (its LiteLLM_SpendLogs table).
LITELLM_NAMES = {"response_id": "request_id", "call_type": "call_type", "key_hash": "api_key", "cost": "spend",
                 "total_tokens": "total_tokens", "prompt_tokens": "prompt_tokens",
                 "completion_tokens": "completion_tokens", "start_time": "startTime", "end_time": "endTime",
                 "model_group": "model", "deployment": "model_id", "user_id": "user", "team_id": "team_id",
                 "tags": "request_tags", "metadata": "metadata", "status": "status",
                 "provider": "custom_llm_provider"}


def litellm_row(row: dict) -> dict:
    """A spend row as LiteLLM's /spend/logs lists it (`?format=litellm`)."""
    out = {theirs: row.get(ours) for ours, theirs in LITELLM_NAMES.items()}
    out["request_id"] = row.get("response_id") or row.get("request_id")  # LiteLLM's is the answer's id
    out["call_id"] = row.get("request_id")
    out["model_group"] = row.get("model_group")
    out["status"] = "success" if row.get("status") == 200 else "failure"
    return out


@bp.get("/spend/tags")
def tags():
    principal = admin.caller()
    if not admin.is_admin(principal):
        raise PermissionDeniedError("Only the master key or a proxy_admin user's key may read spend by tag.",
                                    code="admin_only")
    page, size = admin.int_query("page", 1, 1, admin.MAX_PAGE), admin.int_query("size", 100, 1, MAX_PAGE_SIZE)
    rows, total = admin.store().spend_tags(offset=(page - 1) * size, limit=size)
    return {"data": rows, "total_count": total, "current_page": page, "total_pages": math.ceil(total / size)}


@bp.get("/spend/report")
def report():
    forced = _scope()
    group_by = request.args.get("group_by", "key")
    if group_by not in REPORT_GROUPS:
        raise BadRequestError(f"'group_by' must be one of {', '.join(REPORT_GROUPS)}.", param="group_by",
                              code="invalid_value")
    if forced and group_by != "key":
        raise PermissionDeniedError("A key may report its own spend only (group_by=key).", code="admin_only")
    start, end = _range()
    rows = admin.store().spend_report(group_by, start=start, end=end)
    if forced:
        rows = [r for r in rows if r["key"] == forced["key"]]
    for row in rows:
        row["day"] = admin.timestamp(row["day"])[:10]
    return {"group_by": group_by, "data": rows, "total_spend": sum(r["spend"] for r in rows)}


# /global/spend/report's group_by -> (our grouping, the list's name, each entry's id name): LiteLLM's shape.
GLOBAL_GROUPS = {"team": ("team", "teams", "team_name"), "api_key": ("key", "api_keys", "api_key"),
                 "customer": ("user", "customers", "customer"), "user": ("user", "users", "user"),
                 "model": ("model", "models", "model")}


@bp.get("/global/spend/teams")
def global_spend_teams():
    """LiteLLM's spend per team: per day (`daily_spend`) and in all (`total_spend_per_team`)."""
    admin.require_admin()
    start, end = _range()
    rows = admin.store().spend_report("team", start=start, end=end)
    days: dict = {}
    totals: dict = {}
    for row in rows:
        day = admin.timestamp(row["day"])[:10]
        team = row["team"] or "Unassigned"
        days.setdefault(day, {"date": day})[team] = row["spend"]
        totals[team] = totals.get(team, 0.0) + row["spend"]
    return {"daily_spend": list(days.values()), "teams": sorted(totals),
            "total_spend_per_team": [{"team_id": t, "total_spend": s} for t, s in sorted(totals.items())]}


@bp.get("/global/spend/report")
def global_spend_report():
    """LiteLLM's report: one entry per day, each listing spend per team (or api_key, customer, model)."""
    admin.require_admin()
    group_by = request.args.get("group_by", "team")
    if group_by not in GLOBAL_GROUPS:
        raise BadRequestError(f"'group_by' must be one of {', '.join(GLOBAL_GROUPS)}.", param="group_by",
                              code="invalid_value")
    ours, listed, name = GLOBAL_GROUPS[group_by]
    start, end = _range()
    days: dict = {}
    for row in admin.store().spend_report(ours, start=start, end=end):
        day = admin.timestamp(row["day"])[:10]
        entry = days.setdefault(day, {"group_by_day": day, listed: []})
        entry[listed].append({name: row[ours], "total_spend": row["spend"], "calls": row["calls"],
                              "prompt_tokens": row["prompt_tokens"], "completion_tokens": row["completion_tokens"]})
    return jsonify(list(days.values()))
