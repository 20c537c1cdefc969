"""Model management, LiteLLM's routes: `/model/new`, `/model/update`, `/model/delete`,
`/model/info`, `/v2/model/info`, `/model_group/info`.

Models added here live in the state store (proxy_app/live_models.py): they survive restarts and
reach every worker and instance within about a second. The config's own models are read-only
here: change them in the config file. Answers never show a secret (`api_key` and the like).
"""

from __future__ import annotations

import uuid

from flask import Blueprint, request
from marshmallow import ValidationError

from dheera_ai.config import ENV_PREFIX, flatten_errors, parse_deployment
from dheera_ai.errors import BadRequestError, NotFoundError
from dheera_ai.redact import redact_data
from proxy_app import admin, calls

bp = Blueprint("model_admin", __name__)
bp.after_request(admin.add_warnings)
# model_info fields /model_group/info sums up per group, as LiteLLM's answer names them.
GROUP_INFO_FIELDS = ("max_input_tokens", "max_output_tokens", "max_tokens", "input_cost_per_token",
                     "output_cost_per_token", "mode")


def live():
    return admin.state().models


def model_view(deployment, stored_ids, full: bool = True) -> dict:
    """A deployment as LiteLLM's /model/info shows it, secrets masked; `full=False` (a key that is
    no admin) shows the model, not where or how it is reached."""
    model = f"{deployment.provider}/{deployment.model}"
    params = redact_data({**deployment.params, "model": model}) if full else {"model": model}
    info = {**deployment.model_info, "id": deployment.id, "db_model": deployment.id in stored_ids}
    return {"model_name": deployment.model_name, "litellm_params": params, "model_info": info}


def _visible(principal, deployments):
    if admin.is_admin(principal) or principal.models is None:
        return deployments
    return [d for d in deployments if d.model_name in principal.models]


@bp.get("/model/info")
@bp.get("/v1/model/info")
@bp.get("/v2/model/info")
def info():
    """Every model the caller may use (admins: all); `?litellm_model_id=` or `?model_id=` picks one."""
    principal = calls.authenticate()
    models = live()
    stored_ids = {d.id for d in models.stored}
    deployments = _visible(principal, models.deployments())
    wanted = request.args.get("litellm_model_id") or request.args.get("model_id")
    if wanted:
        deployments = [d for d in deployments if d.id == wanted]
    if request.args.get("model"):
        deployments = [d for d in deployments if d.model_name == request.args["model"]]
    full = admin.is_admin(principal)
    return {"data": [model_view(d, stored_ids, full) for d in deployments]}


@bp.get("/model_group/info")
def group_info():
    """One entry per model group: its providers and what its model_info says, LiteLLM's shape."""
    principal = calls.authenticate()
    groups: dict = {}
    for deployment in _visible(principal, live().deployments()):
        group = groups.setdefault(deployment.model_name, {"model_group": deployment.model_name, "providers": []})
        if deployment.provider not in group["providers"]:
            group["providers"].append(deployment.provider)
        for name in GROUP_INFO_FIELDS:
            if deployment.model_info.get(name) is not None:
                group.setdefault(name, deployment.model_info[name])
    wanted = request.args.get("model_group")
    data = [g for name, g in groups.items() if not wanted or name == wanted]
    return {"data": data}


@bp.post("/model/new")
def new():
    admin.require_admin()
    body = calls.json_object()
    model_id = str((body.get("model_info") or {}).get("id") or uuid.uuid4())
    models = live()
    if model_id in models.config_ids or any(d.id == model_id for d in models.stored):
        raise BadRequestError(f"A model with id '{model_id}' exists already.", param="model_info.id",
                              code="model_exists")
    deployment = _checked(body, model_id)
    _save(model_id, deployment)
    return {"model_id": model_id, **model_view(deployment, {model_id})}


@bp.post("/model/update")
def update():
    """LiteLLM's update: `model_info.id` names the model; the given parts replace the stored ones
    (params are merged, so a script may change `rpm` without resending the key)."""
    admin.require_admin()
    body = calls.json_object()
    model_id = (body.get("model_info") or {}).get("id") or body.get("id") or body.get("model_id")
    if not model_id:
        raise BadRequestError("Name the model to update with model_info.id.", param="model_info.id",
                              code="missing_parameter")
    stored = _stored_row(str(model_id))
    params = {**stored["params"], **(body.get("litellm_params") or body.get("dheera_ai_params") or {})}
    merged = {"model_name": body.get("model_name") or stored["model_name"], "litellm_params": params,
              "model_info": {**stored["model_info"], **(body.get("model_info") or {})}}
    deployment = _checked(merged, stored["model_id"])
    _save(stored["model_id"], deployment)
    return {"model_id": stored["model_id"], **model_view(deployment, {stored["model_id"]})}


@bp.post("/model/delete")
def delete():
    admin.require_admin()
    body = calls.json_object()
    model_id = body.get("id") or body.get("model_id")
    if not isinstance(model_id, str) or not model_id:
        raise BadRequestError("Give the id of the model to delete ('id').", param="id", code="missing_parameter")
    stored = _stored_row(model_id)
    admin.store().delete_model(stored["model_id"])
    live().reload()
    return {"message": f"Model {model_id} deleted.", "id": model_id}


def _stored_row(model_id: str) -> dict:
    if model_id in live().config_ids:
        raise BadRequestError(f"Model '{model_id}' is defined in the config file; change or remove it there "
                              "(only models added with /model/new can be changed through the API).",
                              param="id", code="config_model")
    for row in admin.store().stored_models():
        if row["model_id"] == model_id:
            return row
    raise NotFoundError(f"There is no model '{model_id}'.", param="id", code="model_not_found")


def _checked(body: dict, model_id: str):
    """The body as a deployment, validated like a config entry; 400 naming what is wrong."""
    if not isinstance(body.get("model_name"), str) or not body["model_name"]:
        raise BadRequestError("'model_name' is required.", param="model_name", code="missing_parameter")
    params = body.get("litellm_params") if "litellm_params" in body else body.get("dheera_ai_params")
    if not isinstance(params, dict):
        raise BadRequestError("'litellm_params' must be an object with at least 'model'.", param="litellm_params",
                              code="invalid_value")
    for name, value in params.items():
        if isinstance(value, str) and value.startswith(ENV_PREFIX):
            # The environment is read from the config file only, never from a request.
            raise BadRequestError(f"litellm_params.{name}: os.environ/ values are read from the config file only; "
                                  "send the value itself.", param=f"litellm_params.{name}", code="invalid_value")
    info = body.get("model_info") or {}
    if not isinstance(info, dict):
        raise BadRequestError("'model_info' must be an object.", param="model_info", code="invalid_value")
    entry = {"model_name": body["model_name"], "dheera_ai_params": params, "model_info": {**info, "id": model_id}}
    try:
        return parse_deployment(0, entry, calls.engine().providers.names())
    except ValidationError as e:
        problem = flatten_errors(e.messages)[0].replace("dheera_ai_params", "litellm_params")
        raise BadRequestError(problem, param=problem.split(":", 1)[0], code="invalid_value") from None
    except ValueError as e:
        raise BadRequestError(f"litellm_params.model: {e}", param="litellm_params.model",
                              code="invalid_value") from None


def _save(model_id: str, deployment) -> None:
    info = {k: v for k, v in deployment.model_info.items() if k != "id"}
    admin.store().save_model(model_id, deployment.model_name, deployment.params, info)
    live().reload()  # this worker at once; the others at their next poll
