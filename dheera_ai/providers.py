"""The provider interface and the registry that dispatch looks providers up in."""

from __future__ import annotations

from dheera_ai.errors import AuthenticationError, BadRequestError
from dheera_ai.types import Call, Deployment, Reply


class Provider:
    """Turns a `Call` into requests to one kind of upstream and the answer back into OpenAI shape.

    A subclass serves a call type by defining a method of that name (`chat_completions`,
    `embeddings`, ...) taking `(call, deployment)` and returning a `Reply`. Nothing from the
    HTTP library may escape: failures are raised as `dheera_ai.errors` classes.
    """

    name = ""

    def handle(self, call: Call, deployment: Deployment) -> Reply:
        method = getattr(self, call.call_type, None)
        if method is None:
            raise BadRequestError(
                f"Provider '{self.name}' does not support {call.call_type.replace('_', ' ')} "
                f"(model '{call.model}').", param="model", code="unsupported_endpoint")
        return method(call, deployment)

    def supports(self, call_type: str) -> bool:
        return callable(getattr(self, call_type, None))


def require_param(deployment: Deployment, name: str, env_fallback: str | None = None):
    """A deployment parameter the call cannot go without, with a clear error when it is missing.

    The value comes from the config, else from `env_fallback` in the environment (read at call
    time, as a provider's own SDK would); a config `os.environ/NAME` that was unset at load is
    reported by the variable's name.
    """
    import os

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
        value = os.environ.get(env_fallback) if env_fallback else None
        if value:
            return value
    where = f"set the environment variable {variable}" if variable else f"set {name} in its dheera_ai_params"
    raise AuthenticationError(
        f"Model '{deployment.model_name}' has no {name} for provider '{deployment.provider}': "
        f"{where} on the gateway.", code="missing_provider_credentials", provider=deployment.provider)


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
