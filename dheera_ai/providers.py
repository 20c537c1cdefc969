"""The provider interface and the registry that dispatch looks providers up in."""

from __future__ import annotations

import base64
import os
import struct
from contextlib import contextmanager

import orjson

from dheera_ai.errors import (
    AuthenticationError,
    BadRequestError,
    DheeraAIError,
    UnsupportedParamsError,
    error_for_kind,
)
from dheera_ai.translate import TranslationError, UnsupportedParamError
from dheera_ai.types import Call, Deployment, Reply


class Provider:
    """Turns a `Call` into requests to one kind of upstream and the answer back into OpenAI shape.

    A subclass serves a call type by defining a method of that name (`chat_completions`,
    `embeddings`, ...) taking `(call, deployment)` and returning a `Reply`. Nothing from the
    HTTP library may escape: failures are raised as `dheera_ai.errors` classes.
    """

    name = ""
    # Params of which a deployment needs one to authenticate (the first is asked for when all are
    # missing); empty for a provider that needs no key (a local server, the mock).
    key_params: tuple = ("api_key",)
    # True for a cloud provider that signs with the gateway's own cloud credentials (its credential
    # chain, a token it refreshes): a client-built deployment may never use it.
    server_credentials_only: bool = False

    def handle(self, call: Call, deployment: Deployment) -> Reply:
        method = getattr(self, call.call_type, None)
        if method is None:
            raise BadRequestError(
                f"Provider '{self.name}' does not support {call.call_type.replace('_', ' ')} "
                f"(model '{call.model}').", param="model", code="unsupported_endpoint")
        return method(call, deployment)

    def supports(self, call_type: str) -> bool:
        return callable(getattr(self, call_type, None))


def server_environ(deployment: Deployment, *names: str | None) -> str | None:
    """The first of these environment variables that is set, or None.

    The one door to the gateway's environment for providers: a deployment a client built
    (`user_config`, or a client `api_base`) gets nothing through it, neither keys nor addresses,
    so no server credential ever goes to a host the client chose, whatever the provider.
    """
    if deployment.from_client:
        return None
    return next((os.environ[name] for name in names if name and os.environ.get(name)), None)


def require_param(deployment: Deployment, name: str, env_fallback: str | None = None):
    """A deployment parameter the call cannot go without, with a clear error when it is missing.

    The value comes from the config, else from `env_fallback` in the environment (read at call
    time, as a provider's own SDK would; never for a client-built deployment); a config
    `os.environ/NAME` that was unset at load is reported by the variable's name.
    """
    value = deployment.params.get(name)
    if value:
        return value
    if deployment.from_client:
        # Client-supplied routing never borrows the server's secrets, not even from its environment.
        raise AuthenticationError(f"Model '{deployment.model_name}' has no {name}: send it with your api_base "
                                  "or user_config.", code="missing_provider_credentials", provider=deployment.provider)
    if name in deployment.unresolved:
        variable = deployment.unresolved[name]
    else:
        variable = env_fallback
        value = server_environ(deployment, env_fallback)
        if value:
            return value
    where = f"set the environment variable {variable}" if variable else f"set {name} in its dheera_ai_params"
    raise AuthenticationError(
        f"Model '{deployment.model_name}' has no {name} for provider '{deployment.provider}': "
        f"{where} on the gateway.", code="missing_provider_credentials", provider=deployment.provider)


def drop_params(call: Call, deployment: Deployment) -> bool:
    """Whether parameters the upstream is known to reject are dropped instead of refused.

    The deployment's own `drop_params` wins; else `dheera_ai_settings.drop_params`, which the
    enrichment plugin copies onto `call.gateway_params`.
    """
    own = deployment.params.get("drop_params")
    return bool(call.gateway_params.get("drop_params") if own is None else own)


def bad_request(exc: ValueError, provider: str) -> BadRequestError:
    """A translation failure (`dheera_ai.translate`) as the client's 400, naming the field when known."""
    param = getattr(exc, "param", None)
    if isinstance(exc, UnsupportedParamError):
        return UnsupportedParamsError(f"{provider}: {exc} (leave it out, or set drop_params: true to drop it)",
                                      param=param, code="unsupported_parameter", provider=provider)
    return BadRequestError(f"{provider}: {exc}", param=param, code="invalid_value", provider=provider)


@contextmanager
def upstream_errors(classify, provider: str, *, with_headers: bool = False):
    """Re-map an upstream's error answer by what its body says, not only its status.

    `classify(status, parsed_body)` (plus the answer's headers with `with_headers`, for an API
    that names the error in a header) returns an error kind (`dheera_ai.errors.error_for_kind`),
    or (kind, code) to set the error's code too, or None to keep the status-based error. The
    message and Retry-After are kept.
    """
    try:
        yield
    except DheeraAIError as error:
        body = getattr(error, "upstream_body", None)
        if body is None:
            raise
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        extra = (getattr(error, "upstream_headers", None) or {},) if with_headers else ()
        kind = classify(error.upstream_status, parsed, *extra)
        kind, code = kind if isinstance(kind, tuple) else (kind, error.code)
        if kind is None:
            raise
        raise error_for_kind(kind, error.message, code=code, param=error.param, provider=provider,
                             headers=error.headers) from None


@contextmanager
def replaced_body(call: Call, body: dict):
    """`call.body` is `body` for the duration: a provider adjusting what goes upstream for itself
    only, so a retry on another deployment starts again from the client's body."""
    original = call.body
    call.body = body
    try:
        yield
    finally:
        call.body = original


def embedding_inputs(body: dict) -> list[str]:
    """`input` of an embeddings request as a list of strings (token arrays cannot be translated)."""
    value = body.get("input")
    inputs = [value] if isinstance(value, str) else value
    if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) for t in inputs):
        raise TranslationError("input", "input must be a string or a non-empty list of strings for this provider")
    return inputs


def encode_embeddings(result: dict, encoding_format: str | None) -> dict:
    """An OpenAI embedding list with vectors as OpenAI sends them for `encoding_format: base64`
    (little-endian float32, base64) when asked; the openai SDK asks by default."""
    if encoding_format == "base64":
        for item in result["data"]:
            vector = item["embedding"]
            item["embedding"] = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return result


# LiteLLM provider prefixes Dheera AI knows but has not built: a config naming one starts (with a
# warning) and a call to it is a clear 501 (plugins/providers/unbuilt.py). prefix -> service.
UNBUILT_PROVIDERS = {"sagemaker": "AWS SageMaker"}


class ProviderRegistry:
    """Name -> provider, filled once at start-up by the `dheera_ai_register_providers` hook."""

    def __init__(self):
        self._providers: dict[str, Provider] = {}

    def register(self, name: str, provider: Provider) -> None:
        if name in self._providers:
            raise ValueError(f"provider '{name}' is registered twice")
        if not provider.name:
            provider.name = name
        self._providers[name] = provider

    def __getitem__(self, name: str) -> Provider:
        return self._providers[name]

    def __contains__(self, name: str) -> bool:
        return name in self._providers

    def names(self) -> list[str]:
        return sorted(self._providers)
