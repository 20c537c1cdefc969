"""Chat completions: `/chat/completions` and `/v1/chat/completions`, plain and streamed."""

from flask import Blueprint

from proxy_app import calls
from proxy_app.blueprints import route
from proxy_app.schemas import ChatCompletionRequestSchema

bp = Blueprint("chat", __name__)
_schema = ChatCompletionRequestSchema()


@route(bp, "/chat/completions")
def chat_completions(model=None):
    return calls.run("chat_completions", _schema, model)
