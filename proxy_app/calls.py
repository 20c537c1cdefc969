"""What every model endpoint does: authenticate, parse, build a Call, run it, render the Reply."""

from __future__ import annotations

import time
import uuid

import orjson
from flask import Response, current_app, g, request
from marshmallow import Schema

from dheera_ai.errors import BadRequestError
from dheera_ai.types import GATEWAY_FIELDS, Call, Credentials, Principal

# Where callers put their key: OpenAI clients, our own header, Azure clients, Anthropic clients.
KEY_HEADERS = ("authorization", "x-dheera-ai-api-key", "api-key", "x-api-key")
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def engine():
    return current_app.extensions["dheera_ai"]


def start_request() -> None:
    """Stamp the request: its call id and the moment the gateway began working on it."""
    g.started = time.perf_counter()
    g.call_id = request.headers.get("x-dheera-ai-call-id") or str(uuid.uuid4())


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


def json_body(schema: Schema) -> dict:
    """The request's JSON object, checked against `schema`; a clear 400 naming the field otherwise."""
    raw = request.get_data(cache=False)
    if not raw:
        raise BadRequestError("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequestError(f"The request body is not valid JSON: {e}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequestError("The request body must be a JSON object.", code="invalid_json")
    problems = schema.validate(body)
    if problems:
        field, message = _first_problem(problems)
        raise BadRequestError(f"Invalid value for '{field}': {message}", param=field, code="invalid_value")
    return body


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


def run(call_type: str, schema: Schema) -> Response:
    """The whole life of a model call, as the blueprints use it."""
    principal = authenticate()
    call = new_call(call_type, json_body(schema), principal)
    g.call = call
    reply = engine().pipeline.run(call)
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
    return response
