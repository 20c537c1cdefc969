"""`/ui/logs`: the spend log, filtered and paged by keyset (fast at any depth), and one row's detail."""

from __future__ import annotations

import datetime
from urllib.parse import urlencode

from flask import jsonify, render_template, request

from dheera_ai.errors import BadRequestError, NotFoundError
from dheera_ai.redact import redact, redact_data
from proxy_app import admin, calls
from proxy_app.blueprints.keys import token_of
from proxy_app.ui.blueprint import bp
from proxy_app.ui.session import login_required

PAGE_SIZE = 50
FILTERS = ("key", "user", "team", "model", "tag", "status", "start", "end")


@bp.get("/logs")
@login_required
def logs():
    store = admin.store()
    args = {name: request.args.get(name, "").strip() for name in FILTERS}
    filters = {"key": _key_token(store, args["key"]) if args["key"] else None,
               "user": args["user"] or None, "team": args["team"] or None, "model": args["model"] or None}
    status = args["status"] if args["status"] in ("ok", "error") else None
    rows = store.spend_log_page(filters=filters, tag=args["tag"] or None, status=status,
                                start=_time(args["start"], "start"), end=_time(args["end"], "end"),
                                after=_after(request.args.get("after")), limit=PAGE_SIZE + 1)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    chosen = {name: value for name, value in args.items() if value}
    older = urlencode({**chosen, "after": f"{rows[-1]['start_time']!r}:{rows[-1]['row_id']}"}) if more else None
    return render_template("logs.html", rows=rows, args=args, older=older, newest=urlencode(chosen),
                           paged=bool(request.args.get("after")),
                           models=sorted(calls.engine().router.model_names()))


def _key_token(store, value: str) -> str:
    """The key filter takes an alias, a token or the key itself."""
    by_alias = store.key_hashes_for_aliases([value])
    return by_alias.get(value) or token_of(value)


def _time(value: str, name: str) -> float | None:
    """A `datetime-local` input's value (taken as UTC) or a date."""
    if not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise BadRequestError(f"'{name}' must be a date and time like 2026-11-22T09:30.", param=name,
                              code="invalid_value") from None
    return parsed.replace(tzinfo=parsed.tzinfo or datetime.UTC).timestamp()


def _after(value: str | None) -> tuple[float, str] | None:
    """The previous page's last row, as `<start_time>:<row_id>`."""
    if not value:
        return None
    moment, _, row_id = value.partition(":")
    try:
        return float(moment), row_id
    except ValueError:
        raise BadRequestError("'after' is not a position this page made.", param="after",
                              code="invalid_value") from None


@bp.get("/logs/<row_id>")
@login_required
def log_row(row_id):
    row = admin.store().spend_log_row(row_id)
    if row is None:
        raise NotFoundError("There is no such spend log row.", param="row_id", code="row_not_found")
    # Shown as logs show it: secret-named fields masked, credential-shaped text redacted.
    row["metadata"] = redact_data(row["metadata"], max_string=2000)
    row["error_type"] = redact(row["error_type"]) if row["error_type"] else None
    return render_template("log_row.html", row=row)


@bp.get("/logs/call/<call_id>.json")
@login_required
def call_summary(call_id):
    """What the spend log recorded for one call (the playground asks once the stream has ended)."""
    rows = admin.store().spend_log_page(filters={"request": call_id}, limit=1)
    if not rows:
        return jsonify({"recorded": False}), 404
    row = rows[0]
    return jsonify({"recorded": True, "cost": row["cost"], "priced": row["priced"],
                    "prompt_tokens": row["prompt_tokens"], "completion_tokens": row["completion_tokens"],
                    "latency_ms": row["latency_ms"], "row_id": row["row_id"]})
