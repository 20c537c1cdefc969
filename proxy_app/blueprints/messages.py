"""The Anthropic Messages API (`/v1/messages`), so the Anthropic SDK can use the gateway.

A provider that speaks it natively gets the call as it is; any other is served through chat
completions (`dheera_ai.bridges`). Errors here are in Anthropic's shape, which its SDKs parse.
"""

import logging

from flask import Blueprint, g, jsonify
from werkzeug.exceptions import HTTPException

from dheera_ai.bridges import anthropic_error
from dheera_ai.errors import DheeraAIError
from proxy_app import calls
from proxy_app.schemas import AnthropicMessagesRequestSchema

bp = Blueprint("messages", __name__)
_schema = AnthropicMessagesRequestSchema()
log = logging.getLogger("dheera_ai.http")


@bp.post("/v1/messages")
def messages():
    principal = calls.authenticate()
    call = calls.new_call("anthropic_messages", calls.json_body(_schema), principal)
    metadata = call.gateway_params.get("metadata")
    if isinstance(metadata, dict) and metadata.get("user_id"):
        # Anthropic's own field inside the gateway's `metadata`: it goes upstream too.
        call.body["metadata"] = {"user_id": metadata["user_id"]}
    return calls.execute(call)


@bp.errorhandler(DheeraAIError)
def dheera_ai_error(error: DheeraAIError):
    return _render(error)


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException):
    error = DheeraAIError(exc.description or exc.name, status=exc.code or 500)
    return _render(error)


@bp.errorhandler(Exception)
def unexpected(exc: Exception):
    log.exception("unexpected error in call %s", getattr(g, "call_id", None))
    return _render(DheeraAIError(f"Internal error; call id {getattr(g, 'call_id', None)}."))


def _render(error: DheeraAIError):
    response = jsonify(anthropic_error(error))
    response.status_code = error.status
    for name, value in error.headers.items():
        response.headers[name] = value
    return response
