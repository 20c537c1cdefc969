"""The Responses API: create (plain or streamed), retrieve, delete, input_items.

Every response id the gateway returns names the deployment that made it (`dheera_ai.response_ids`),
so a follow-up (GET, DELETE, input_items, `previous_response_id`) goes back to that deployment;
and it is sealed for its owner (the key's user, else the key), so another key's follow-up is a 404.
"""

from flask import Blueprint, request

from dheera_ai import response_ids
from dheera_ai.errors import NotFoundError
from proxy_app import calls
from proxy_app.blueprints import PREFIXES, route
from proxy_app.schemas import ResponseCreateRequestSchema

bp = Blueprint("responses", __name__)
_schema = ResponseCreateRequestSchema()
# Azure's AzureOpenAI client calls /openai/responses.
_PREFIXES = (*PREFIXES, "/openai")


@route(bp, "/responses", prefixes=_PREFIXES)
def create():
    principal = calls.authenticate()
    call = calls.new_call("responses", calls.json_body(_schema), principal)
    call.response_secret = _secret(principal)
    previous = call.body.get("previous_response_id")
    pinned = response_ids.decode(previous, call.response_secret)
    if pinned is None and response_ids.is_ours(previous):  # another caller's response
        raise _not_found(previous, "previous_response_id")
    if pinned is not None:
        call.deployment_id, call.body["previous_response_id"] = pinned
        # The group actually used is the one access checks must see, whatever `model` said.
        call.model = calls.engine().router.find(call.deployment_id).model_name
    return calls.execute(call)


@route(bp, "/responses/<response_id>", methods=("GET",), prefixes=_PREFIXES)
def retrieve(response_id):
    return _follow_up("responses_get", response_id)


@route(bp, "/responses/<response_id>", methods=("DELETE",), prefixes=_PREFIXES)
def delete(response_id):
    return _follow_up("responses_delete", response_id)


@route(bp, "/responses/<response_id>/input_items", methods=("GET",), prefixes=_PREFIXES)
def input_items(response_id):
    return _follow_up("responses_input_items", response_id)


def _follow_up(call_type: str, response_id: str):
    principal = calls.authenticate()
    secret = _secret(principal)
    pinned = response_ids.decode(response_id, secret)
    if pinned is None:
        raise _not_found(response_id, "response_id")
    deployment = calls.engine().router.find(pinned[0])
    query = {key: values if len(values) > 1 else values[0] for key, values in request.args.lists()}
    call = calls.new_call(call_type, {**query, "model": deployment.model_name, "response_id": pinned[1]},
                          principal)
    call.deployment_id = deployment.id
    call.response_secret = secret
    return calls.execute(call)


def _secret(principal) -> bytes:
    """What seals this caller's response ids: a key's user owns them (all their keys share them),
    else the key; the master key's are its own."""
    return response_ids.owner_secret(calls.engine().config.master_key, principal.owner)


def _not_found(response_id: str, param: str) -> NotFoundError:
    return NotFoundError(f"Response with id '{response_id}' not found.", param=param, code="response_not_found")
