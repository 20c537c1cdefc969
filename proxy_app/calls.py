"""What every model endpoint does: authenticate, parse, build a Call, run it, render the Reply."""

from __future__ import annotations

import functools
import re
import time

import orjson
from flask import Response, current_app, g, request
from marshmallow import Schema
from werkzeug.exceptions import RequestEntityTooLarge

from dheera_ai import ids
from dheera_ai.errors import BadRequestError, DheeraAIError
from dheera_ai.types import GATEWAY_FIELDS, Call, Credentials, Principal, Reply, Upload
from proxy_app.validation import FastValidator

# Where callers put their key: OpenAI clients, our own header, Azure clients, Anthropic clients.
KEY_HEADERS = ("authorization", "x-dheera-ai-api-key", "api-key", "x-api-key")
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
OUR_HEADER_PREFIX = "x-dheera-ai-"


# Flask's `request`, `g` and `current_app` are proxies: an attribute read through one took 1.4 µs
# here (a context-variable lookup and three Python calls) against 0.08 µs on the object itself, and
# a call's path read ~20. The functions here take the object behind a proxy once
# (`_get_current_object()`): a cache hit's instructions -8 %, a relayed chat call's -4 %.


def engine():
    return current_app._get_current_object().extensions["dheera_ai"]


# A client's own call id (`x-dheera-ai-call-id`) is kept for tracing, beside ours: short, and of
# characters that are safe in a log line, a header and a URL.
CLIENT_CALL_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
# Far beyond any real request (a JSON schema in `response_format` nests a dozen levels).
MAX_JSON_DEPTH = 100
ORJSON_DEPTH = 254  # orjson.dumps: "Recursion limit reached" beyond it


class FormTooLargeError(DheeraAIError):
    status = 413
    error_type = "invalid_request_error"
    default_code = "form_too_large"


def start_request() -> None:
    """Stamp the request: its call id and the moment the gateway began working on it.

    The call id is always ours, so limits, holds and rows of two calls never share one; a client's
    `x-dheera-ai-call-id` is kept beside it (`client_call_id` in rows and log lines)."""
    here, req = g._get_current_object(), request._get_current_object()
    here.started = time.perf_counter()
    here.call_id = ids.call_id()
    here.client_call_id = None
    # The body limit, read once: Flask's default reads the config through `current_app` each time.
    req.max_content_length = current_app._get_current_object().config["MAX_CONTENT_LENGTH"]
    if b"%00" in req.query_string or "\x00" in req.path:
        # No id, name or date has one, and PostgreSQL cannot even compare a text with it.
        raise BadRequestError("The URL contains a NUL character (%00).", code="invalid_url")
    sent = req.headers.get("x-dheera-ai-call-id")
    if sent is not None:
        if not CLIENT_CALL_ID.fullmatch(sent):
            raise BadRequestError("'x-dheera-ai-call-id' must be 1-128 characters of A-Z, a-z, 0-9, '.', '_' "
                                  "and '-'.", param="x-dheera-ai-call-id", code="invalid_call_id")
        here.client_call_id = sent


def credentials() -> Credentials:
    req = request._get_current_object()
    headers = req.headers
    for name in KEY_HEADERS:
        value = headers.get(name)
        if value:
            if name == "authorization":
                scheme, _, token = value.partition(" ")
                value = token.strip() if scheme.lower() == "bearer" else value.strip()
            return Credentials(api_key=value, header=name, headers={}, path=req.path)
    return Credentials(api_key=None, header=None, headers={}, path=req.path)


def authenticate() -> Principal:
    principal = engine().pipeline.authenticate(credentials())
    g._get_current_object().principal = principal
    return principal


def json_body(schema: Schema, model: str | None = None) -> dict:
    """The request's JSON object, checked against `schema`; a clear 400 naming the field otherwise.
    `model` (from the path, on Azure-style routes) replaces the body's."""
    body = json_object()
    if model is not None:
        body["model"] = model
    check(schema, body)
    return body


def json_object() -> dict:
    """The request's body as a JSON object, unchecked; a clear 400 if it is not one."""
    req = request._get_current_object()
    raw = req.get_data(cache=False)
    _check_whole_stream(req)
    if not raw:
        raise BadRequestError("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequestError(f"The request body is not valid JSON: {e}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequestError("The request body must be a JSON object.", code="invalid_json")
    if too_deep(raw, body):
        raise BadRequestError(f"The request body nests deeper than {MAX_JSON_DEPTH} levels.", code="invalid_json")
    return body


def _check_whole_stream(req) -> None:
    """A body without a Content-Length (chunked) is read up to the limit and no further: one that
    filled it may have been cut there, so it is refused as too large, like a declared one (413)."""
    if req.content_length is None and getattr(req.stream, "is_exhausted", False):
        raise RequestEntityTooLarge()


def too_deep(raw: bytes, body) -> bool:
    """True when `body` nests more than MAX_JSON_DEPTH objects and lists (parsing allows 1,024;
    encoding it again for an upstream or a row allows 254).

    orjson encodes at most ORJSON_DEPTH nested containers: wrapped in ORJSON_DEPTH - MAX_JSON_DEPTH
    lists, a body encodes exactly when it nests at most MAX_JSON_DEPTH levels. That is the check,
    at orjson's speed (a walk in Python took ~0.3 ms for 200 messages with content parts)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:  # the common case
        return False
    wrapped = body
    for _ in range(ORJSON_DEPTH - MAX_JSON_DEPTH):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError as e:
        return "Recursion" in str(e)
    return False


@functools.cache
def _validator(schema: Schema) -> FastValidator:
    return FastValidator(schema)


def check(schema: Schema, body: dict) -> None:
    """A 400 naming the first field `schema` refuses, if any."""
    problems = _validator(schema).errors(body)
    if problems:
        field, message = _first_problem(problems)
        raise BadRequestError(f"Invalid value for '{field}': {message}", param=field, code="invalid_value")


def _first_problem(problems, prefix="") -> tuple[str, str]:
    key = sorted(problems, key=str)[0]
    value = problems[key]
    path = f"{prefix}.{key}" if prefix and not isinstance(key, int) else (f"{prefix}[{key}]" if prefix else str(key))
    if isinstance(value, dict):
        return _first_problem(value, path)
    return path, "; ".join(str(v) for v in value) if isinstance(value, list) else str(value)


def new_call(call_type: str, body: dict, principal: Principal) -> Call:
    gateway_params = {k: body.pop(k) for k in GATEWAY_FIELDS if k in body}
    here = g._get_current_object()
    headers = {k.lower(): v for k, v in request._get_current_object().headers.items()
               if k.lower() not in KEY_HEADERS}
    return Call(call_id=here.call_id, client_call_id=here.client_call_id, call_type=call_type,
                model=body.get("model", ""), body=body, stream=bool(body.get("stream")), headers=headers,
                gateway_params=gateway_params, principal=principal, started=here.started)


def run(call_type: str, schema: Schema, model: str | None = None) -> Response:
    """The whole life of a JSON model call, as the blueprints use it; `model` comes from the path
    on Azure-style routes."""
    principal = authenticate()
    return execute(new_call(call_type, json_body(schema, model), principal))


def run_upload(call_type: str, schema: Schema, model: str | None = None) -> Response:
    """A multipart call (`images/edits`, `audio/transcriptions`): text fields checked like a JSON
    body, files left where the form parser spooled them (memory, or a temporary file when large)
    until the provider streams them upstream. The body limit (413) applies to the whole upload."""
    principal = authenticate()
    body, files = form_body(schema, model)
    call = new_call(call_type, body, principal)
    call.files = files
    call.stream = False  # a form's "stream" is text; these answers are relayed whole
    return execute(call)


def form_body(schema: Schema, model: str | None = None) -> tuple[dict, list[Upload]]:
    if request.mimetype != "multipart/form-data":
        raise BadRequestError("Send this request as multipart/form-data (fields and files).", code="invalid_body")
    try:
        form = request.form
    except RequestEntityTooLarge:
        declared = request.content_length
        if declared is None or declared > request.max_content_length:
            raise  # the body itself is over the limit
        raise FormTooLargeError(f"The form has more than {request.max_form_parts} parts, or a text field over "
                                f"{request.max_form_memory_size // 1024} KB; send files as file parts.") from None
    _check_whole_stream(request)
    if None in form or None in request.files:  # a part with no name= in its Content-Disposition
        raise BadRequestError("Every part of a multipart form needs a name.", code="invalid_body")
    # A repeated field (`include[]`, `timestamp_granularities[]`) stays a list; any other is a string.
    body = {key: values if key.endswith("[]") or len(values) > 1 else values[0]
            for key, values in form.lists()}
    if model is not None:
        body["model"] = model
    check(schema, body)
    files = []
    for field, storage in request.files.items(multi=True):
        stream = storage.stream
        stream.seek(0, 2)
        size = stream.tell()
        stream.seek(0)
        files.append(Upload(field=field, filename=storage.filename or field,
                            content_type=storage.mimetype or "application/octet-stream", stream=stream, size=size))
    return body, files


def execute(call: Call) -> Response:
    """Run a built call through the pipeline and render its Reply."""
    g._get_current_object().call = call
    return render(engine().pipeline.run(call))


def render(reply: Reply) -> Response:
    """A Reply as an HTTP response: a stream relayed as it is produced, a body sent as it is."""
    if reply.stream is not None:
        response = Response(reply.stream, status=reply.status, content_type=reply.content_type,
                            headers=STREAM_HEADERS)
    else:
        body = reply.body if reply.body is not None else orjson.dumps(reply.data)
        response = Response(body, status=reply.status, content_type=reply.content_type)
    set_headers(response.headers, reply.headers.items())
    return response


def set_headers(headers, pairs) -> None:
    """`headers[name] = value` for each pair, in one go. Werkzeug's set scans every header already
    there for each name it sets (a dozen names: ~90 `str.lower` calls a call); here one scan says
    whether any name is there already (or twice among the pairs), and only then are the pairs set
    one by one, the last of a name winning."""
    pairs = list(pairs)
    if not pairs:
        return
    names = {name.lower() for name, _ in pairs}
    if len(names) < len(pairs) or any(name.lower() in names for name in headers.keys()):
        for name, value in pairs:
            headers[name] = value
    else:
        headers.extend(pairs)


def add_call_headers(response: Response) -> Response:
    """On every response: the call id; for model calls, the deployment and our own overhead."""
    ours = []
    here = g._get_current_object()
    call_id = getattr(here, "call_id", None)
    if call_id:
        ours.append(("x-dheera-ai-call-id", call_id))
    client_call_id = getattr(here, "client_call_id", None)
    if client_call_id:
        ours.append(("x-dheera-ai-client-call-id", client_call_id))
    call = getattr(here, "call", None)
    if call is not None:
        if call.deployment is not None:
            ours += [("x-dheera-ai-model-id", call.deployment.id),
                     ("x-dheera-ai-model-group", call.deployment.model_name)]
        overhead = time.perf_counter() - call.started - call.upstream_seconds
        ours += [("x-dheera-ai-attempted-retries", str(call.attempted_retries)),
                 ("x-dheera-ai-attempted-fallbacks", str(call.attempted_fallbacks)),
                 ("x-dheera-ai-overhead-duration-ms", f"{overhead * 1000:.3f}"),
                 *call.response_headers.items()]
    set_headers(response.headers, ours)
    if current_app._get_current_object().config["LITELLM_HEADERS"]:
        set_headers(response.headers, [("x-litellm-" + name[len(OUR_HEADER_PREFIX):], value)
                                       for name, value in response.headers.items()
                                       if name.lower().startswith(OUR_HEADER_PREFIX)])
    return response
