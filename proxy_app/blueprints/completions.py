"""Legacy text completions: `/completions`, plain and streamed."""

from flask import Blueprint

from proxy_app import calls
from proxy_app.blueprints import route
from proxy_app.schemas import CompletionRequestSchema

bp = Blueprint("completions", __name__)
_schema = CompletionRequestSchema()


@route(bp, "/completions")
def completions(model=None):
    return calls.run("completions", _schema, model)
