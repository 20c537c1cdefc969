"""Chat completions: `/chat/completions` and `/v1/chat/completions`, plain and streamed.

`"model": "a,b"` is LiteLLM's batch completion over several model groups: one call per group,
the answers as a list in the order given (a group that failed answers its error object there).
"""

import orjson
from flask import Blueprint, Response

from dheera_ai.errors import BadRequestError, DheeraAIError
from proxy_app import calls
from proxy_app.blueprints import route
from proxy_app.schemas import ChatCompletionRequestSchema

bp = Blueprint("chat", __name__)
_schema = ChatCompletionRequestSchema()
MAX_BATCH_MODELS = 10


@route(bp, "/chat/completions")
def chat_completions(model=None):
    principal = calls.authenticate()
    body = calls.json_body(_schema, model)
    if "," in body["model"]:
        return _batch(body, principal)
    return calls.execute(calls.new_call("chat_completions", body, principal))


def _batch(body: dict, principal) -> Response:
    names = [name.strip() for name in body["model"].split(",") if name.strip()]
    if body.get("stream"):
        raise BadRequestError("A comma-separated model list (batch completion) cannot be streamed.",
                              param="stream", code="invalid_value")
    if not names or len(names) > MAX_BATCH_MODELS:
        raise BadRequestError(f"A batch completion names 1 to {MAX_BATCH_MODELS} models.", param="model",
                              code="invalid_value")
    answers = []
    for index, name in enumerate(names):
        call = calls.new_call("chat_completions", {**body, "model": name}, principal)
        call.call_id = f"{call.call_id}.{index}"  # one spend row and log line per model
        try:
            reply = calls.engine().pipeline.run(call)
            answers.append(orjson.loads(reply.body) if reply.body is not None else reply.data)
        except DheeraAIError as error:
            answers.append(error.to_dict())
    return Response(orjson.dumps(answers), content_type="application/json")
