"""Routing a client brings along: `api_key`/`api_base`/`api_version` in the body, or a whole
per-request router (`user_config`). Both are off unless the config turns them on.

`general_settings.allow_client_side_credentials: true` allows both; a deployment's
`configurable_clientside_auth_params: [api_key, {api_base: "<regex>"}]` allows just those
params for that deployment. Even then: a client value is never resolved as `os.environ/...`,
a client `api_base` only reaches addresses `dheera_ai.netguard` allows, and a deployment
pointed at a client's `api_base` carries none of the server's credentials (nor reads its
environment: `dheera_ai.providers.server_environ`). A `user_config` deployment brings its own key
where its provider needs one, and its `model_info` never sets its price.
"""

from __future__ import annotations

import dataclasses
import re

from marshmallow import ValidationError

from dheera_ai.config import CLIENTSIDE_PARAMS, ENV_PREFIX, flatten_errors, load_router_settings, parse_deployment
from dheera_ai.cost import SERVER_ONLY_INFO
from dheera_ai.errors import BadRequestError
from dheera_ai.netguard import check_client_url, parse_allowed
from dheera_ai.router.cooldowns import MemoryCooldowns
from dheera_ai.types import Call, Deployment

# Deployment params that hold credentials: dropped when a deployment is pointed at a client's api_base.
_SECRET_WORDS = ("key", "token", "secret", "password", "credential")


class ClientCredentials:
    """The credentials a client sent, and which deployments accept them."""

    def __init__(self, values: dict, allow_all: bool, allowed_hosts: tuple):
        self.values = values
        self.allow_all = allow_all
        self.allowed_hosts = allowed_hosts

    def permits(self, deployment: Deployment) -> bool:
        if self.allow_all:
            return True
        granted = deployment.params.get("configurable_clientside_auth_params") or ()
        for name, value in self.values.items():
            if not any(_grants(item, name, value) for item in granted):
                return False
        return True

    def excluded(self, deployments) -> frozenset:
        return frozenset(d.id for d in deployments if not self.permits(d))

    def apply(self, deployment: Deployment) -> Deployment:
        """The deployment as this client's attempt uses it."""
        params = dict(deployment.params)
        client_base = "api_base" in self.values
        if client_base:
            params = {k: v for k, v in params.items() if not any(w in k.lower() for w in _SECRET_WORDS)}
        params.update(self.values)
        return dataclasses.replace(deployment, params=params, unresolved={},
                                   from_client=deployment.from_client or client_base,
                                   allowed_hosts=self.allowed_hosts)


def _grants(item, name: str, value: str) -> bool:
    if isinstance(item, str):
        return item == name or (item == "base_url" and name == "api_base")
    if isinstance(item, dict) and name == "api_base":
        pattern = item.get("api_base", item.get("base_url"))
        return pattern is not None and re.match(str(pattern), value) is not None
    return False


def client_routing(call: Call, config, router, providers):
    """The router for this call (the server's, or one built from `user_config`) and the client's
    credentials (None when it sent none). Raises a 400 for anything the config does not allow."""
    params = call.gateway_params
    values = {}
    for name in CLIENTSIDE_PARAMS:
        value = params.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise BadRequestError(f"'{name}' must be a non-empty string.", param=name, code="invalid_value")
        values["api_base" if name == "base_url" else name] = value
    user_config = params.get("user_config")
    if not values and user_config is None:
        return router, None

    settings = config.general_settings
    allow_all = bool(settings.get("allow_client_side_credentials"))
    offered = list(values) + (["user_config"] if user_config is not None else [])
    allowed_hosts = parse_allowed(settings.get("allowed_client_api_base_hosts"))
    if user_config is not None and not allow_all:
        raise _disabled(offered, per_deployment=False)
    _refuse_server_references({"user_config": user_config, **values})
    if "api_key" in values:
        check_header_value(values["api_key"], "api_key")
    if user_config is not None:
        router = user_router(user_config, allowed_hosts, providers)
    if not values:
        return router, None
    credentials = ClientCredentials(values, allow_all, allowed_hosts)
    group = router.group(call.model)
    if len(credentials.excluded(group.deployments)) == len(group.deployments):
        raise _disabled(offered, per_deployment=True, model=call.model)
    if "api_base" in values:
        check_client_url(values["api_base"], allowed_hosts)
        if any(providers[d.provider].server_credentials_only for d in group.deployments if d.provider in providers):
            raise BadRequestError("A client-supplied api_base cannot be used with a cloud provider that signs with "
                                  "the gateway's own credentials.", param="api_base", code="client_provider_refused")
        if "api_key" not in values:
            # Otherwise the deployment's own key would go to an address the client chose.
            raise BadRequestError("A client-supplied api_base needs a client-supplied api_key as well.",
                                  param="api_key", code="client_api_key_required")
    return router, credentials


def user_router(raw, allowed_hosts: tuple, providers):
    """A throw-away router from a request's `user_config` (LiteLLM's RouterConfig shape);
    `providers` is the registry (names, and which params each needs for a key)."""
    from dheera_ai.router import Router

    if not isinstance(raw, dict) or not isinstance(raw.get("model_list"), list) or not raw["model_list"]:
        raise BadRequestError("'user_config' must be an object with a non-empty model_list.",
                              param="user_config", code="invalid_user_config")
    deployments = []
    for index, entry in enumerate(raw["model_list"]):
        where = f"user_config.model_list[{index}]"
        try:
            deployment = parse_deployment(index, entry, providers.names())
        except ValidationError as e:
            problem = flatten_errors(e.messages, ())[0] if isinstance(entry, dict) else "must be an object"
            raise BadRequestError(f"Invalid {where}: {problem}", param=where, code="invalid_user_config") from None
        except ValueError as e:
            raise BadRequestError(f"Invalid {where}.model: {e}", param=where, code="invalid_user_config") from None
        if deployment.params.get("api_key") is not None:
            check_header_value(deployment.params["api_key"], f"{where}.api_key")
        if deployment.params.get("api_base") is not None:
            check_client_url(deployment.params["api_base"], allowed_hosts, param=f"{where}.api_base")
        if providers[deployment.provider].server_credentials_only:
            raise BadRequestError(f"{where}: the {deployment.provider} provider signs with the gateway's own cloud "
                                  "credentials, which a user_config deployment never gets.",
                                  param=f"{where}.litellm_params.model", code="client_provider_refused")
        key_params = providers[deployment.provider].key_params
        if key_params and not any(deployment.params.get(name) for name in key_params):
            # Without one, the provider would look for the server's own key.
            raise BadRequestError(f"{where} needs an {key_params[0]} of its own (a user_config deployment never "
                                  "uses the gateway's credentials).", param=f"{where}.litellm_params.{key_params[0]}",
                                  code="client_api_key_required")
        # Prices (and the limits a budget hold is estimated by) are the server's to set.
        model_info = {k: v for k, v in deployment.model_info.items() if k not in SERVER_ONLY_INFO}
        deployments.append(dataclasses.replace(deployment, id=f"user-config-{index}", from_client=True,
                                               model_info=model_info, allowed_hosts=allowed_hosts))
    try:
        settings = load_router_settings({k: v for k, v in raw.items() if k != "model_list"},
                                        {d.model_name for d in deployments})
    except ValidationError as e:
        problem = flatten_errors(e.messages, ("user_config",))[0]
        raise BadRequestError(f"Invalid {problem}", param="user_config", code="invalid_user_config") from None
    return Router(deployments, settings, MemoryCooldowns())


def check_header_value(value, param: str) -> None:
    """A client's key goes upstream in a header: printable ASCII only (a zero-width space or a
    line break cannot be sent, or would split the header)."""
    if not isinstance(value, str) or not value or not all("!" <= c <= "~" for c in value):
        raise BadRequestError(f"'{param}' must be printable ASCII without spaces.", param=param,
                              code="invalid_value")


def _refuse_server_references(value, path: str = "") -> None:
    """A client may not point at the server's environment: `os.environ/NAME` is refused anywhere."""
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_server_references(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_server_references(item, f"{path}[{index}]")
    elif isinstance(value, str) and value.strip().lower().startswith(ENV_PREFIX.lower()):
        raise BadRequestError(f"'{path}' refers to the server's environment ({ENV_PREFIX}...), which clients "
                              "may not do: send the value itself.", param=path, code="server_reference_refused")


def _disabled(offered, per_deployment: bool, model: str | None = None) -> BadRequestError:
    names = ", ".join(offered)
    how = "set general_settings.allow_client_side_credentials"
    if per_deployment:
        how += f", or list them in configurable_clientside_auth_params of a '{model}' deployment"
    return BadRequestError(f"This gateway does not accept client-side {names}: {how} to allow it.",
                           param=offered[0], code="client_side_credentials_disabled")
