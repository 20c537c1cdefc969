"""OpenAI, and any server that speaks its API (`api_base`), passed through with minimal decoding."""

from __future__ import annotations

import os

import orjson

from dheera_ai import hookimpl, http
from dheera_ai.providers import Provider, require_param
from dheera_ai.sse import relay_openai_events
from dheera_ai.types import Call, Deployment, Reply, Usage


class OpenAIProvider(Provider):
    name = "openai"
    default_api_base = "https://api.openai.com/v1"
    api_key_env = "OPENAI_API_KEY"
    api_base_envs = ("OPENAI_BASE_URL", "OPENAI_API_BASE")

    def api_base(self, deployment: Deployment) -> str:
        base = deployment.param("api_base")
        if not base:
            base = next((os.environ[v] for v in self.api_base_envs if os.environ.get(v)), self.default_api_base)
        return base.rstrip("/")

    def url(self, deployment: Deployment, operation: str) -> str:
        """Where `operation` ("chat/completions", "embeddings", ...) of this deployment is served;
        subclasses with other URL schemes (Azure) override this and `auth_headers` only."""
        return f"{self.api_base(deployment)}/{operation}"

    def auth_headers(self, deployment: Deployment) -> dict:
        return {"Authorization": "Bearer " + require_param(deployment, "api_key", self.api_key_env)}

    def chat_completions(self, call: Call, deployment: Deployment) -> Reply:
        body = dict(call.body)
        body["model"] = deployment.model
        client_wants_usage = False
        if call.stream:
            options = dict(body.get("stream_options") or {})
            client_wants_usage = bool(options.get("include_usage"))
            # Always ask for usage, so a stream is billed from what the upstream counted.
            options["include_usage"] = True
            body["stream_options"] = options
        timeout = deployment.param("stream_timeout" if call.stream else "timeout") or deployment.param("timeout")
        response = http.post(self.url(deployment, "chat/completions"), json_body=body,
                             headers=self.auth_headers(deployment), timeout=timeout, stream=call.stream,
                             provider=self.name, call=call)
        if not call.stream:
            content = response.content
            return Reply(body=content, usage=_usage_of(content))
        reply = Reply(content_type="text/event-stream")
        reply.stream = _closing(response, relay_openai_events(http.iter_body(response), reply, client_wants_usage))
        return reply


def _usage_of(content: bytes) -> Usage | None:
    try:
        parsed = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    return Usage.from_openai(parsed.get("usage")) if isinstance(parsed, dict) else None


def _closing(response, events):
    """The events, with the upstream connection closed however the stream ends."""
    try:
        yield from events
    finally:
        response.close()


@hookimpl
def dheera_ai_register_providers(register):
    register("openai", OpenAIProvider())
