"""`/models` and `/v1/models`: the configured model names, in OpenAI's list shape; `/routes`.

`?only_model_access_groups=True` (LiteLLM's) lists the access groups (model_info.access_groups)
instead of the models.
"""

from flask import Blueprint, current_app, request

from dheera_ai.errors import NotFoundError
from dheera_ai.router.wildcards import model_allowed
from proxy_app import calls

bp = Blueprint("models", __name__)
# OpenAI's list has a creation time; ours is fixed so the answer is stable.
CREATED = 1700000000


def _visible_models(principal) -> list[str]:
    """What this caller may call: the configured names and aliases, then the wildcard patterns
    (`openai/*`, `*`) as LiteLLM lists them when asked for wildcard routes."""
    router = calls.engine().router
    names = router.model_names() + router.wildcards.patterns
    if principal.models is not None:
        names = [n for n in names if model_allowed(n, principal.models)]
    return names


def _model(name: str) -> dict:
    return {"id": name, "object": "model", "created": CREATED, "owned_by": "dheera_ai"}


@bp.get("/models")
@bp.get("/v1/models")
def list_models():
    principal = calls.authenticate()
    if request.args.get("only_model_access_groups", "").lower() in ("true", "1"):
        groups = current_app.extensions["dheera_ai_state"].auth.groups
        visible = set(_visible_models(principal))
        return {"object": "list", "data": [_model(g) for g, members in sorted(groups.items()) if members & visible]}
    return {"object": "list", "data": [_model(n) for n in _visible_models(principal)]}


@bp.get("/routes")
def routes():
    """Every route the gateway serves, as LiteLLM's /routes lists them; any valid key may ask."""
    calls.authenticate()
    rules = sorted(current_app.url_map.iter_rules(), key=lambda r: r.rule)
    return {"routes": [{"path": r.rule, "methods": sorted(r.methods - {"HEAD", "OPTIONS"}), "name": r.endpoint}
                       for r in rules]}


@bp.get("/models/<path:name>")
@bp.get("/v1/models/<path:name>")
def get_model(name):
    principal = calls.authenticate()
    wildcards = calls.engine().router.wildcards
    matched = wildcards.matches(name) and (principal.models is None or model_allowed(name, principal.models))
    if name not in _visible_models(principal) and not matched:
        raise NotFoundError(f"The model '{name}' does not exist on this gateway.", param="model",
                            code="model_not_found")
    return _model(name)
