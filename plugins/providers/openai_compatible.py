"""Servers that speak OpenAI's API at their own address: one table, one class, no copies.

Each row names the provider prefix, its default base URL, the environment variables for its
key and base URL, and the request parameters its documentation says it rejects with a 400.
With `drop_params` (`dheera_ai_settings` or the deployment's params) those are dropped instead;
otherwise the client gets a 400 naming the parameter before any upstream is called.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from dheera_ai import hookimpl
from dheera_ai.errors import UnsupportedParamsError
from dheera_ai.providers import drop_params, replaced_body, require_param, server_environ
from dheera_ai.types import Call, Deployment, Reply
from plugins.providers.openai import OpenAIProvider


@dataclass(frozen=True)
class Compatible:
    """One OpenAI-compatible service."""

    name: str
    api_base: str | None  # None: the deployment must give one (a self-hosted server)
    key_env: str | None
    base_env: str | None = None
    key_required: bool = True  # local servers (ollama, LM Studio, vLLM) usually take none
    # Other names the key goes by (LiteLLM's spelling, the vendor SDK's), tried after key_env.
    key_aliases: tuple = ()
    # parameter -> the one value that is still accepted (None: any value is refused)
    rejects: dict = field(default_factory=dict)


_SAMPLING_PENALTIES = {"frequency_penalty": None, "presence_penalty": None, "logit_bias": None}

TABLE = (
    # console.groq.com/docs/openai: these fields "will result in a 400 error"; n must be 1.
    Compatible("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY", "GROQ_API_BASE",
               rejects={"logprobs": False, "logit_bias": None, "top_logprobs": None, "n": 1}),
    Compatible("together_ai", "https://api.together.xyz/v1", "TOGETHER_API_KEY", "TOGETHER_API_BASE",
               key_aliases=("TOGETHERAI_API_KEY",)),
    Compatible("deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY", "DEEPSEEK_API_BASE"),
    Compatible("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY", "MISTRAL_API_BASE"),
    Compatible("fireworks_ai", "https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY",
               "FIREWORKS_API_BASE", key_aliases=("FIREWORKS_AI_API_KEY",)),
    Compatible("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY", "OPENROUTER_API_BASE"),
    Compatible("perplexity", "https://api.perplexity.ai", "PERPLEXITYAI_API_KEY", "PERPLEXITY_API_BASE",
               key_aliases=("PERPLEXITY_API_KEY",)),
    Compatible("xai", "https://api.x.ai/v1", "XAI_API_KEY", "XAI_API_BASE"),
    # DeepInfra serves its OpenAI API under /v1/openai, not /v1.
    Compatible("deepinfra", "https://api.deepinfra.com/v1/openai", "DEEPINFRA_API_KEY", "DEEPINFRA_API_BASE",
               key_aliases=("DEEPINFRA_TOKEN",)),
    # inference-docs.cerebras.ai: these fields result in a 400.
    Compatible("cerebras", "https://api.cerebras.ai/v1", "CEREBRAS_API_KEY", "CEREBRAS_API_BASE",
               rejects={**_SAMPLING_PENALTIES, "parallel_tool_calls": None, "service_tier": None}),
    Compatible("sambanova", "https://api.sambanova.ai/v1", "SAMBANOVA_API_KEY", "SAMBANOVA_API_BASE"),
    Compatible("nvidia_nim", "https://integrate.api.nvidia.com/v1", "NVIDIA_NIM_API_KEY", "NVIDIA_NIM_API_BASE"),
    Compatible("hosted_vllm", None, "HOSTED_VLLM_API_KEY", "HOSTED_VLLM_API_BASE", key_required=False),
    # Ollama's OpenAI-compatible endpoints live under /v1 of its server.
    Compatible("ollama", "http://localhost:11434/v1", "OLLAMA_API_KEY", "OLLAMA_API_BASE", key_required=False),
    Compatible("lm_studio", "http://localhost:1234/v1", "LM_STUDIO_API_KEY", "LM_STUDIO_API_BASE",
               key_required=False),
)


class OpenAICompatibleProvider(OpenAIProvider):
    """The openai provider at another address, with another key and that server's known limits."""

    batch_api = False  # few such servers have one; their batches are run by the gateway

    def __init__(self, spec: Compatible):
        self.spec = spec
        self.name = spec.name
        self.api_base_envs = (spec.base_env,) if spec.base_env else ()
        self.default_api_base = spec.api_base
        self.key_params = ("api_key",) if spec.key_required else ()

    def api_base(self, deployment: Deployment) -> str:
        if self.default_api_base is None and not deployment.param("api_base"):
            env = server_environ(deployment, *self.api_base_envs)
            return (env or require_param(deployment, "api_base", self.spec.base_env)).rstrip("/")
        return super().api_base(deployment)

    @property
    def api_key_env(self) -> str | None:
        """The first of the key's variable names that is set (the main one when none is)."""
        names = (self.spec.key_env, *self.spec.key_aliases)
        return next((n for n in names if n and os.environ.get(n)), self.spec.key_env)

    def auth_headers(self, deployment: Deployment) -> dict:
        if self.spec.key_required or deployment.param("api_key") or "api_key" in deployment.unresolved:
            return super().auth_headers(deployment)
        key = server_environ(deployment, self.api_key_env)
        return {"Authorization": f"Bearer {key}"} if key else {}

    def handle(self, call: Call, deployment: Deployment) -> Reply:
        rejected = [name for name, allowed in self.spec.rejects.items()
                    if call.body.get(name) is not None and call.body[name] != allowed]
        if not rejected:
            return super().handle(call, deployment)
        if not drop_params(call, deployment):
            raise UnsupportedParamsError(
                f"{self.name} does not support the parameter '{rejected[0]}'. Leave it out, or set "
                "drop_params: true (dheera_ai_settings or the deployment's params) to drop it.",
                param=rejected[0], code="unsupported_parameter", provider=self.name)
        with replaced_body(call, {k: v for k, v in call.body.items() if k not in rejected}):
            return super().handle(call, deployment)


@hookimpl
def dheera_ai_register_providers(register):
    for spec in TABLE:
        register(spec.name, OpenAICompatibleProvider(spec))
