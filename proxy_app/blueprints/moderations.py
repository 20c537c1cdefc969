"""Moderations: `/moderations`. Without `model`, the gateway's moderation model answers, as in
LiteLLM: the first model group whose model_info.mode is `moderation` (or whose name says so)."""

from flask import Blueprint

from dheera_ai.errors import BadRequestError
from proxy_app import calls
from proxy_app.blueprints import route
from proxy_app.schemas import ModerationRequestSchema

bp = Blueprint("moderations", __name__)
_schema = ModerationRequestSchema()


@route(bp, "/moderations")
def moderations(model=None):
    principal = calls.authenticate()
    body = calls.json_object()
    if model is None and not body.get("model"):
        body["model"] = default_model()
    if model is not None:
        body["model"] = model
    calls.check(_schema, body)
    return calls.execute(calls.new_call("moderations", body, principal))


def default_model() -> str:
    router = calls.engine().router
    for name, group in router.groups.items():
        if any(d.model_info.get("mode") == "moderation" for d in group.deployments):
            return name
    for name in router.groups:
        if "moderation" in name:
            return name
    raise BadRequestError("No 'model' given and no moderation model is configured (give one a model_info "
                          "mode: moderation).", param="model", code="missing_parameter")
