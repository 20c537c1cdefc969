"""Chat completions: `/chat/completions` and `/v1/chat/completions`, plain and streamed."""

from flask import Blueprint

from proxy_app import calls
from proxy_app.schemas import ChatCompletionRequestSchema

bp = Blueprint("chat", __name__)
_schema = ChatCompletionRequestSchema()


@bp.post("/chat/completions")
@bp.post("/v1/chat/completions")
def chat_completions():
    return calls.run("chat_completions", _schema)
