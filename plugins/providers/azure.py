"""Azure OpenAI: the OpenAI wire format at Azure's URLs, with Azure's keys.

Classic API: `{api_base}/openai/deployments/{deployment}/{operation}?api-version={api_version}`.
Next-generation v1 API (`api_version: preview`, `latest` or `v1`, how Codex models are called):
`{api_base}/openai/v1/{operation}` with the deployment as `model` in the body. The Responses API
is served per resource, not per deployment: `{api_base}/openai/responses?api-version=...`.

`azure/responses/<deployment>` answers chat completions through the Responses API, translated
both ways by `dheera_ai.translate.responses`.
"""

from __future__ import annotations

import time

import orjson

from dheera_ai import hookimpl, http
from dheera_ai.errors import ContentPolicyViolationError, ServiceUnavailableError
from dheera_ai.providers import bad_request, require_param, server_environ
from dheera_ai.sse import translated_chat_stream
from dheera_ai.translate import responses as translate
from dheera_ai.types import Call, Deployment, Reply, Usage
from plugins.providers.openai import OpenAIProvider, _closing

DEFAULT_API_VERSION = "2024-10-21"  # the latest GA version of the classic API
# The classic Responses API needs a preview version (2025-03-01-preview or later).
DEFAULT_RESPONSES_API_VERSION = "2025-04-01-preview"
V1_VERSIONS = ("preview", "latest", "v1")
RESPONSES_PREFIX = "responses/"


def deployment_name(deployment: Deployment) -> str:
    """The Azure deployment: the model less an `azure/responses/` route marker."""
    return deployment.model.removeprefix(RESPONSES_PREFIX)


class AzureProvider(OpenAIProvider):
    name = "azure"
    api_key_env = "AZURE_API_KEY"
    key_params = ("api_key", "azure_ad_token")

    def api_base(self, deployment: Deployment) -> str:
        return require_param(deployment, "api_base", "AZURE_API_BASE").rstrip("/")

    def api_version(self, deployment: Deployment, operation: str) -> str:
        version = deployment.param("api_version") or server_environ(deployment, "AZURE_API_VERSION")
        if version:
            return str(version)
        return DEFAULT_RESPONSES_API_VERSION if operation.startswith("responses") else DEFAULT_API_VERSION

    def url(self, deployment: Deployment, operation: str) -> str:
        base, version = self.api_base(deployment), self.api_version(deployment, operation)
        if version in V1_VERSIONS:
            # The v1 API takes no dated version; "preview"/"latest" opt into preview features.
            query = "" if version == "v1" else f"?api-version={version}"
            return f"{base}/openai/v1/{operation}{query}"
        if operation.startswith("responses"):
            return f"{base}/openai/{operation}?api-version={version}"
        return f"{base}/openai/deployments/{deployment_name(deployment)}/{operation}?api-version={version}"

    def auth_headers(self, deployment: Deployment) -> dict:
        """`api-key: <key>`; an Azure AD (Entra ID) token goes as a Bearer token instead."""
        if deployment.param("api_key"):
            return {"api-key": deployment.param("api_key")}
        token = deployment.param("azure_ad_token")
        if token:
            return {"Authorization": f"Bearer {token}"}
        if "api_key" not in deployment.unresolved:
            if server_environ(deployment, self.api_key_env):
                return {"api-key": server_environ(deployment, self.api_key_env)}
            if server_environ(deployment, "AZURE_AD_TOKEN"):
                return {"Authorization": "Bearer " + server_environ(deployment, "AZURE_AD_TOKEN")}
        return {"api-key": require_param(deployment, "api_key", self.api_key_env)}

    def model_name(self, deployment: Deployment) -> str:
        return deployment_name(deployment)

    def batch_url(self, deployment: Deployment, path: str) -> str:
        """Files and batches are the resource's, not a deployment's: `{api_base}/openai/{path}`."""
        base, version = self.api_base(deployment), self.api_version(deployment, "batches")
        if version in V1_VERSIONS:
            query = "" if version == "v1" else f"?api-version={version}"
            return f"{base}/openai/v1/{path}{query}"
        return f"{base}/openai/{path}?api-version={version}"

    def batch_endpoint(self, endpoint: str) -> str:
        return endpoint.removeprefix("/v1")  # Azure's batches name `/chat/completions`

    # -- chat completions ------------------------------------------------------------------
    def chat_completions(self, call: Call, deployment: Deployment) -> Reply:
        if deployment.model.startswith(RESPONSES_PREFIX):
            return self._chat_via_responses(call, deployment)
        reply = super().chat_completions(call, deployment)
        if reply.body is not None and b'"content_filter"' in reply.body:
            _refuse_filtered(reply.body)
        return reply

    def _chat_via_responses(self, call: Call, deployment: Deployment) -> Reply:
        try:
            body = translate.chat_request_to_responses(call.body, deployment_name(deployment))
        except ValueError as exc:
            raise bad_request(exc, self.name) from None
        created = int(time.time())
        response = self._post(call, deployment, "responses", body, stream=call.stream)
        if not call.stream:
            chat = translate.responses_response_to_chat(response.json(), created)
            choice = chat["choices"][0]
            if choice["finish_reason"] == "content_filter":
                raise ContentPolicyViolationError(f"{self.name}: the response was filtered by Azure's content "
                                                  "management policy.", code="content_filter", provider=self.name)
            chat["model"] = chat.get("model") or deployment_name(deployment)
            return Reply(data=chat, usage=Usage.from_openai(chat.get("usage"), chat.get("model"), chat.get("id")))
        include_usage = bool((call.body.get("stream_options") or {}).get("include_usage"))
        reply = Reply(content_type="text/event-stream")
        stream = translate.ResponsesStreamToChat(deployment_name(deployment), created)
        reply.stream = _closing(response, translated_chat_stream(
            http.iter_body(response), stream, reply, include_usage,
            failure=translate.ResponsesStreamError, convert=self._stream_error))
        return reply

    def _stream_error(self, exc):
        """A failed or errored Responses stream, as the error the client gets in the stream."""
        message = f"{self.name}: {http.redact(exc.message)}"
        if "content_filter" in (exc.code or "") or "content management policy" in exc.message:
            return ContentPolicyViolationError(message, code=exc.code, provider=self.name)
        return ServiceUnavailableError(message, code=exc.code, provider=self.name)

def _refuse_filtered(content: bytes) -> None:
    """A completion Azure's content filter cut off is a content-policy error, for fallbacks to act on."""
    try:
        parsed = orjson.loads(content)
    except orjson.JSONDecodeError:
        return
    choices = parsed.get("choices") if isinstance(parsed, dict) else None
    if choices and all(isinstance(c, dict) and c.get("finish_reason") == "content_filter" for c in choices):
        raise ContentPolicyViolationError("azure: the completion was filtered by Azure's content management policy.",
                                          code="content_filter", provider="azure")


@hookimpl
def dheera_ai_register_providers(register):
    register("azure", AzureProvider())
