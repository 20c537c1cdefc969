"""Providers that LiteLLM configs name and Dheera AI has not built yet (AWS SageMaker).

Registered so a config naming one starts (with a start-up warning from the config) and every
other model keeps working; a call to one fails with a clear 501 naming the provider, never a 500.
"""

from __future__ import annotations

from dheera_ai import hookimpl
from dheera_ai.errors import DheeraAIError
from dheera_ai.providers import UNBUILT_PROVIDERS, Provider
from dheera_ai.types import Call, Deployment, Reply


class ProviderNotBuiltError(DheeraAIError):
    status = 501
    error_type = "invalid_request_error"
    default_code = "provider_not_built"


class UnbuiltProvider(Provider):
    def __init__(self, service: str):
        self.service = service

    def handle(self, call: Call, deployment: Deployment) -> Reply:
        raise ProviderNotBuiltError(
            f"Model '{deployment.model_name}' is a {self.service} deployment ({self.name}/{deployment.model}); "
            f"Dheera AI has no {self.service} provider yet, so it cannot be called. "
            f"Other models of this gateway are unaffected.", param="model")

    def supports(self, call_type: str) -> bool:
        return True


@hookimpl
def dheera_ai_register_providers(register):
    for name, service in UNBUILT_PROVIDERS.items():
        register(name, UnbuiltProvider(service))
