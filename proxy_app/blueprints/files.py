"""The Files API (`/v1/files`): upload, list, retrieve, content, delete — OpenAI's shapes.

An upload streams into the files directory as the form is parsed (never whole in memory), up to
`general_settings.max_file_size_mb` (413 beyond). Each file is its uploader's (`proxy_app.files`).
"""

from __future__ import annotations

import os
import time

from flask import Blueprint, current_app, jsonify, request, send_file
from werkzeug.exceptions import RequestEntityTooLarge

from dheera_ai.errors import BadRequestError
from proxy_app import admin, calls
from proxy_app.blueprints import route
from proxy_app.files import Files, FileTooLargeError, Viewer, file_object, viewer_of
from proxy_app.schemas import FileUploadSchema

bp = Blueprint("files", __name__)
_upload_schema = FileUploadSchema()
PREFIXES = ("/v1", "", "/openai")
# The multipart framing and text fields around the file part.
FORM_OVERHEAD = 64 * 1024
MAX_LIST = 10_000


def files() -> Files:
    return current_app.extensions["dheera_ai_state"].files


def viewer() -> Viewer:
    return viewer_for(calls.authenticate())


def viewer_for(principal) -> Viewer:
    return viewer_of(principal, admin.is_admin(principal))


@route(bp, "/files", methods=("POST",), prefixes=PREFIXES)
def upload():
    who = viewer()
    store = files()
    request.max_content_length = store.max_bytes + FORM_OVERHEAD
    spooled = []

    def into_files_dir(total_content_length, content_type, filename=None, content_length=None):
        spooled.append(store.spool())
        return spooled[-1]
    request._get_file_stream = into_files_dir  # the form parser's stream factory, for this request
    try:
        try:
            body, uploads = calls.form_body(_upload_schema)
        except RequestEntityTooLarge:
            raise FileTooLargeError(f"The file is larger than the limit of {store.max_bytes} bytes "
                                    f"(general_settings.max_file_size_mb).", param="file") from None
        parts = [u for u in uploads if u.field == "file"]
        if len(parts) != 1 or len(uploads) != 1:
            raise BadRequestError("Send exactly one file, in the form field 'file'.", param="file",
                                  code="invalid_file")
        expires_at = None
        if "expires_after[seconds]" in body:
            expires_at = time.time() + int(body["expires_after[seconds]"])
        name = os.path.basename(parts[0].filename or "file")[:255] or "file"
        row = store.keep(parts[0].stream, name, body["purpose"], who, expires_at)
    finally:
        for spool in spooled:
            spool.close()
            if os.path.exists(spool.name):
                os.unlink(spool.name)
    return jsonify(file_object(row))


@route(bp, "/files", methods=("GET",), prefixes=PREFIXES)
def list_files():
    who = viewer()
    limit = admin.int_query("limit", MAX_LIST, 1, MAX_LIST)
    order = request.args.get("order", "desc")
    if order not in ("asc", "desc"):
        raise BadRequestError("'order' must be 'asc' or 'desc'.", param="order", code="invalid_value")
    rows = files().list(who, request.args.get("purpose"), request.args.get("after"), limit, order == "asc")
    return jsonify(page(rows, limit, file_object))


@route(bp, "/files/<file_id>", methods=("GET",), prefixes=PREFIXES)
def retrieve(file_id):
    return jsonify(file_object(files().get(file_id, viewer())))


@route(bp, "/files/<file_id>", methods=("DELETE",), prefixes=PREFIXES)
def delete(file_id):
    row = files().delete(file_id, viewer())
    return jsonify({"id": row["file_id"], "object": "file", "deleted": True})


@route(bp, "/files/<file_id>/content", methods=("GET",), prefixes=PREFIXES)
def content(file_id):
    store = files()
    row = store.get(file_id, viewer())
    if row["deployment"] is not None:  # a forwarded batch's output, read from its provider
        return current_app.extensions["dheera_ai_state"].batch_runner.forwarder.file_content(row)
    return send_file(store.path(file_id), mimetype="application/octet-stream", conditional=False, etag=False,
                     max_age=0)


def page(rows: list[dict], limit: int, render) -> dict:
    """OpenAI's list object from up to `limit` + 1 rows."""
    shown = [render(row) for row in rows[:limit]]
    return {"object": "list", "data": shown, "first_id": shown[0]["id"] if shown else None,
            "last_id": shown[-1]["id"] if shown else None, "has_more": len(rows) > limit}

