"""The Batch API (`/v1/batches`): create, retrieve, list, cancel — OpenAI's shapes.

A batch is created `validating`; a runner (`proxy_app.batches.runner`) in some worker of some
instance checks its input file and runs it. Batches, like files, are their creator's: another
caller's batch is a 404 (admins see all).
"""

from __future__ import annotations

import secrets
import time

from flask import Blueprint, current_app, jsonify, request

from dheera_ai.errors import BadRequestError, NotFoundError
from proxy_app import admin, calls
from proxy_app.blueprints import route
from proxy_app.blueprints.files import PREFIXES, page, viewer, viewer_for
from proxy_app.files import Viewer
from proxy_app.schemas import BatchCreateSchema

bp = Blueprint("batches", __name__)
_schema = BatchCreateSchema()
WINDOW_SECONDS = {"24h": 24 * 3600}
TIMESTAMPS = ("created_at", "in_progress_at", "expires_at", "finalizing_at", "completed_at", "failed_at",
              "expired_at", "cancelling_at", "cancelled_at")
MAX_LIST = 100


def state():
    return current_app.extensions["dheera_ai_state"]


@route(bp, "/batches", methods=("POST",), prefixes=PREFIXES)
def create():
    principal = calls.authenticate()
    who = viewer_for(principal)
    body = calls.json_body(_schema)
    current = state()
    try:
        source = current.files.get(body["input_file_id"], who)
    except NotFoundError:
        raise NotFoundError(f"No such File object: {body['input_file_id']}", param="input_file_id",
                            code="file_not_found") from None
    if source["purpose"] != "batch":
        raise BadRequestError(f"The file {source['file_id']} was uploaded for '{source['purpose']}'; a batch's "
                              "input file must be uploaded with purpose 'batch'.", param="input_file_id",
                              code="invalid_file_purpose")
    now = time.time()
    row = {"batch_id": "batch_" + secrets.token_hex(12), "owner": who.owner, "team_id": who.team_id,
           "principal_kind": principal.kind, "key_hash": principal.key_hash, "endpoint": body["endpoint"],
           "completion_window": body["completion_window"], "input_file_id": source["file_id"],
           "status": "validating", "metadata": body.get("metadata"), "created_at": now,
           "expires_at": now + WINDOW_SECONDS[body["completion_window"]]}
    current.batches.create(row)
    if current.batch_runner is not None:
        current.batch_runner.wake()
    return jsonify(batch_object(current.batches.get(row["batch_id"])))


@route(bp, "/batches", methods=("GET",), prefixes=PREFIXES)
def list_batches():
    who = viewer()
    limit = admin.int_query("limit", 20, 1, MAX_LIST)
    after = request.args.get("after")
    after_row = _visible(after, who) if after else None
    return jsonify(page(state().batches.list(who, after_row, limit), limit, batch_object))


@route(bp, "/batches/<batch_id>", methods=("GET",), prefixes=PREFIXES)
def retrieve(batch_id):
    batch = _visible(batch_id, viewer())
    if batch["deployment"] is not None:
        batch = forwarder().refresh(batch)
    return jsonify(batch_object(batch))


@route(bp, "/batches/<batch_id>/cancel", methods=("POST",), prefixes=PREFIXES)
def cancel(batch_id):
    current = state()
    batch = _visible(batch_id, viewer())
    if batch["deployment"] is not None:
        batch = forwarder().refresh(batch)
        if batch["status"] in ("validating", "in_progress"):
            batch = forwarder().cancel(batch)
    elif batch["status"] in ("validating", "in_progress"):
        current.batches.update(batch_id, {"status": "cancelling", "cancelling_at": time.time()},
                               ("validating", "in_progress"))
        if current.batch_runner is not None:
            current.batch_runner.wake()
        batch = current.batches.get(batch_id)
    if batch["status"] not in ("cancelling", "cancelled"):
        raise BadRequestError(f"The batch is {batch['status']}; only a validating or in-progress batch can be "
                              "cancelled.", param="batch_id", code="batch_not_cancellable")
    return jsonify(batch_object(batch))


def forwarder():
    """Follow-ups of batches at a provider (`proxy_app.batches.forward`)."""
    return state().batch_runner.forwarder


def _visible(batch_id: str, who: Viewer) -> dict:
    batch = state().batches.get(batch_id)
    if batch is None or not state().files.visible(batch, who):
        raise NotFoundError(f"No such Batch object: {batch_id}", param="batch_id", code="batch_not_found")
    return batch


def batch_object(row: dict) -> dict:
    """OpenAI's Batch object."""
    out = {"id": row["batch_id"], "object": "batch", "endpoint": row["endpoint"], "model": row["model"],
           "errors": row["errors"], "input_file_id": row["input_file_id"],
           "completion_window": row["completion_window"], "status": row["status"],
           "output_file_id": row["output_file_id"], "error_file_id": row["error_file_id"]}
    for name in TIMESTAMPS:
        out[name] = int(row[name]) if row[name] is not None else None
    out["request_counts"] = {"total": int(row["request_total"]), "completed": int(row["request_completed"]),
                             "failed": int(row["request_failed"])}
    out["usage"] = {"input_tokens": int(row["input_tokens"]), "output_tokens": int(row["output_tokens"]),
                    "total_tokens": int(row["input_tokens"]) + int(row["output_tokens"]),
                    "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}
    out["metadata"] = row["metadata"]
    return out
