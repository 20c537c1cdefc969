"""One handler renders every error as OpenAI does: `{"error": {message, type, param, code}}`."""

from __future__ import annotations

import logging

from flask import Flask, g, jsonify
from werkzeug.exceptions import HTTPException

from dheera_ai.errors import DheeraAIError

log = logging.getLogger("dheera_ai.http")

# Werkzeug's own errors (no route, wrong method, body too large) get OpenAI types too.
_HTTP_TYPES = {404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error"}


def render(error: DheeraAIError):
    response = jsonify(error.to_dict())
    response.status_code = error.status
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


def register(app: Flask) -> None:
    app.register_error_handler(DheeraAIError, render)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        status = exc.code or 500
        message = {
            404: "Unknown route; see /v1/models and /v1/chat/completions.",
            413: f"Request body too large: the limit is {app.config['MAX_CONTENT_LENGTH'] // (1024 * 1024)} MB "
                 "(general_settings.max_request_size_mb).",
        }.get(status, exc.description or exc.name)
        error = DheeraAIError(message, status=status, code=exc.name.lower().replace(" ", "_"))
        error.error_type = _HTTP_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
        return render(error)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        call_id = getattr(g, "call_id", None)
        log.exception("unexpected error in call %s", call_id)
        return render(DheeraAIError(f"Internal error; call id {call_id}.", code="internal_error"))
