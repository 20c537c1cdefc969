"""Gateway chaining: another Dheera AI gateway (or any OpenAI-compatible gateway) as the upstream.

`dheera_ai_proxy/openai/gpt-4o` reaches the next gateway as model `openai/gpt-4o`: only the
first prefix is ours. Every endpoint family the openai provider speaks is served the same way.
Unlike any other provider, this one forwards the caller's `tags` and `metadata`, so the next
gateway can log and route on them, and it reads the next gateway's errors back as the classes
that gateway raised (a context-window error stays one, so fallbacks here still act on it).
"""

from __future__ import annotations

from dheera_ai import hookimpl
from dheera_ai.errors import (
    APIConnectionError,
    ContentPolicyViolationError,
    ContextWindowExceededError,
    error_from_answer,
)
from dheera_ai.providers import replaced_body, require_param, upstream_errors
from dheera_ai.types import Call, Deployment, Reply
from plugins.providers.anthropic import messages_reply
from plugins.providers.openai import OpenAIProvider


class DheeraAIProxyProvider(OpenAIProvider):
    name = "dheera_ai_proxy"
    api_key_env = "DHEERA_AI_PROXY_API_KEY"
    api_base_envs = ("DHEERA_AI_PROXY_API_BASE",)
    batch_api = False  # this gateway runs the batch, its lines forwarded one by one

    def api_base(self, deployment: Deployment) -> str:
        # No default: a gateway has no well-known address.
        return require_param(deployment, "api_base", "DHEERA_AI_PROXY_API_BASE").rstrip("/")

    def handle(self, call: Call, deployment: Deployment) -> Reply:
        forwarded = dict(call.body)
        # The enrichment plugin has merged body, metadata.tags and header tags into call.tags.
        metadata = call.metadata or call.gateway_params.get("metadata")
        tags = call.tags or call.gateway_params.get("tags")
        if metadata:
            forwarded["metadata"] = metadata
        if tags:
            forwarded["tags"] = list(tags)
        with replaced_body(call, forwarded), upstream_errors(_raised_there, self.name):
            return super().handle(call, deployment)

    # Families a gateway serves beyond OpenAI's API; the rest come from the openai provider.
    def rerank(self, call: Call, deployment: Deployment) -> Reply:
        """Cohere-shaped rerank, as the next gateway's `/rerank` takes and answers it."""
        return Reply(body=self._post(call, deployment, "rerank").content)

    def anthropic_messages(self, call: Call, deployment: Deployment) -> Reply:
        """The next gateway's `/v1/messages`, answered byte for byte."""
        operation = "messages" if self.api_base(deployment).endswith("/v1") else "v1/messages"
        return messages_reply(self._post(call, deployment, operation, stream=call.stream), call.stream)


# Classes whose status alone (400, 502) would not tell them apart, by their error kind.
_KINDS = {ContextWindowExceededError: "context_window", ContentPolicyViolationError: "content_policy",
          APIConnectionError: "connection"}


def _raised_there(status: int, parsed) -> str | None:
    """The kind of error the next gateway raised, from its answer's code and type."""
    error = parsed.get("error") if isinstance(parsed, dict) else None
    return _KINDS.get(type(error_from_answer(error, status))) if isinstance(error, dict) else None


@hookimpl
def dheera_ai_register_providers(register):
    register("dheera_ai_proxy", DheeraAIProxyProvider())
