"""What every model endpoint does: authenticate, parse, build a Call, run it, render the Reply."""

from __future__ import annotations

import functools
import time

import orjson
from flask import Response, current_app, g, request
from marshmallow import Schema

from dheera_ai import ids
from dheera_ai.errors import BadRequestError
from dheera_ai.types import GATEWAY_FIELDS, Call, Credentials, Principal, Reply, Upload
from proxy_app.validation import FastValidator

# Where callers put their key: OpenAI clients, our own header, Azure clients, Anthropic clients.
KEY_HEADERS = ("authorization", "x-dheera-ai-api-key", "api-key", "x-api-key")
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
OUR_HEADER_PREFIX = "x-dheera-ai-"


def engine():
    return current_app.extensions["dheera_ai"]


def start_request() -> None:
    """Stamp the request: its call id and the moment the gateway began working on it."""
    g.started = time.perf_counter()
    g.call_id = request.headers.get("x-dheera-ai-call-id") or ids.call_id()


def credentials() -> Credentials:
    headers = request.headers
    for name in KEY_HEADERS:
        value = headers.get(name)
        if value:
            if name == "authorization":
                scheme, _, token = value.partition(" ")
                value = token.strip() if scheme.lower() == "bearer" else value.strip()
            return Credentials(api_key=value, header=name, headers={}, path=request.path)
    return Credentials(api_key=None, header=None, headers={}, path=request.path)


def authenticate() -> Principal:
    principal = engine().pipeline.authenticate(credentials())
    g.principal = principal
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
    raw = request.get_data(cache=False)
    if not raw:
        raise BadRequestError("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequestError(f"The request body is not valid JSON: {e}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequestError("The request body must be a JSON object.", code="invalid_json")
    return body


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
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower() not in KEY_HEADERS}
    return Call(call_id=g.call_id, call_type=call_type, model=body.get("model", ""), body=body,
                stream=bool(body.get("stream")), headers=headers, gateway_params=gateway_params,
                principal=principal, started=g.started)


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
    form = request.form
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
    g.call = call
    return render(engine().pipeline.run(call))


def render(reply: Reply) -> Response:
    """A Reply as an HTTP response: a stream relayed as it is produced, a body sent as it is."""
    if reply.stream is not None:
        response = Response(reply.stream, status=reply.status, content_type=reply.content_type,
                            headers=STREAM_HEADERS)
    else:
        body = reply.body if reply.body is not None else orjson.dumps(reply.data)
        response = Response(body, status=reply.status, content_type=reply.content_type)
    for name, value in reply.headers.items():
        response.headers[name] = value
    return response


def add_call_headers(response: Response) -> Response:
    """On every response: the call id; for model calls, the deployment and our own overhead."""
    call_id = getattr(g, "call_id", None)
    if call_id:
        response.headers["x-dheera-ai-call-id"] = call_id
    call = getattr(g, "call", None)
    if call is not None:
        if call.deployment is not None:
            response.headers["x-dheera-ai-model-id"] = call.deployment.id
            response.headers["x-dheera-ai-model-group"] = call.deployment.model_name
        response.headers["x-dheera-ai-attempted-retries"] = str(call.attempted_retries)
        response.headers["x-dheera-ai-attempted-fallbacks"] = str(call.attempted_fallbacks)
        overhead = time.perf_counter() - call.started - call.upstream_seconds
        response.headers["x-dheera-ai-overhead-duration-ms"] = f"{overhead * 1000:.3f}"
        for name, value in call.response_headers.items():
            response.headers[name] = value
    if current_app.config["LITELLM_HEADERS"]:
        for name, value in list(response.headers.items()):
            if name.lower().startswith(OUR_HEADER_PREFIX):
                response.headers["x-litellm-" + name[len(OUR_HEADER_PREFIX):]] = value
    return response
