"""A batch's input file, line by line: checked before anything runs, then read again to run.

Each line of OpenAI's input format is `{"custom_id", "method": "POST", "url", "body"}`. The file is
streamed (never held whole): checking keeps an 8-byte digest per custom_id to find duplicates.
Blank lines are skipped; line numbers (in errors, and the results' keys) count every line from 1.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import orjson

MAX_ERRORS = 100  # reported; checking stops there
MAX_CUSTOM_ID = 512


def read_lines(path: str) -> Iterator[tuple[int, bytes]]:
    """(line number from 1, raw line) of every non-blank line."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if raw.strip():
                yield number, raw


def parse(raw: bytes) -> dict:
    return orjson.loads(raw)


def check_file(path: str, endpoint: str, model_problem: Callable[[str], str | None],
               max_requests: int) -> tuple[int, list[dict], list[str]]:
    """(requests, errors, models): everything wrong with the file, OpenAI's BatchError objects."""
    errors: list[dict] = []
    seen: set[bytes] = set()
    models: dict[str, str | None] = {}  # model -> its problem, checked once each
    count = 0

    def error(code: str, message: str, line: int, param: str | None = None) -> None:
        errors.append({"code": code, "message": message, "param": param, "line": line})

    for number, raw in read_lines(path):
        count += 1
        if len(errors) >= MAX_ERRORS:
            continue  # still counted, so the total is right
        try:
            request = parse(raw)
        except orjson.JSONDecodeError as exc:
            error("invalid_json_line", f"This line is not valid JSON: {exc}", number)
            continue
        if not isinstance(request, dict):
            error("invalid_request", "Each line must be a JSON object.", number)
            continue
        custom_id = request.get("custom_id")
        if not isinstance(custom_id, str) or not 0 < len(custom_id) <= MAX_CUSTOM_ID:
            error("missing_required_parameter", f"'custom_id' must be a string of 1 to {MAX_CUSTOM_ID} characters.",
                  number, "custom_id")
            continue
        digest = hashlib.blake2b(custom_id.encode(), digest_size=8).digest()
        if digest in seen:
            error("duplicate_custom_id", f"The custom_id '{custom_id}' is used by an earlier line.", number,
                  "custom_id")
            continue
        seen.add(digest)
        if request.get("method") != "POST":
            error("invalid_method", "'method' must be 'POST'.", number, "method")
            continue
        if request.get("url") != endpoint:
            error("invalid_url", f"'url' must be the batch's endpoint, '{endpoint}'.", number, "url")
            continue
        body = request.get("body")
        if not isinstance(body, dict):
            error("invalid_request", "'body' must be a JSON object.", number, "body")
            continue
        model = body.get("model")
        if not isinstance(model, str) or not model:
            error("missing_required_parameter", "'body.model' is required.", number, "body.model")
            continue
        if model not in models:
            models[model] = model_problem(model)
        if models[model] is not None:
            error("model_not_found", models[model], number, "body.model")
    if count == 0:
        error("empty_file", "The input file has no requests.", 0)
    elif count > max_requests:
        error("too_many_requests", f"The input file has {count} requests; a batch may have at most "
              f"{max_requests} (general_settings.batch_max_requests).", 0)
    return count, errors[:MAX_ERRORS], list(models)


def output_line(request_id: str, custom_id: str, status: int | None, body, error: dict | None = None) -> bytes:
    """One line of an output or error file, OpenAI's format."""
    response = None if status is None else {"status_code": status, "request_id": request_id, "body": body}
    return orjson.dumps({"id": "batch_req_" + request_id.rsplit("-", 1)[-1][:24], "custom_id": custom_id,
                         "response": response, "error": error}) + b"\n"
