"""Google Vertex AI: Gemini, Anthropic's Claude and Google's embedding models with Google tokens.

`model: vertex_ai/<model>` with `vertex_project`, `vertex_location` (default us-central1; `global`
is served by `aiplatform.googleapis.com`) and `vertex_credentials` (`dheera_ai.gcp`). Requests
go to `{base}/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{model}:{method}`
with `Authorization: Bearer <token>`; `api_base` replaces `https://{location}-aiplatform.googleapis.com`.

- Gemini: `:generateContent`, `:streamGenerateContent?alt=sse`, translated as for Google AI Studio.
- Claude (`claude-*`): `:rawPredict` / `:streamRawPredict` with the Messages API body less `model`
  plus `anthropic_version: vertex-2023-10-16`, translated as for Anthropic's own API.
- Embeddings: `:predict` with one instance per input (text-embedding-005, gemini-embedding-001).
"""

from __future__ import annotations

import os

from dheera_ai import gcp, hookimpl, http
from dheera_ai.bridges import anthropic_via_chat
from dheera_ai.errors import BadRequestError
from dheera_ai.providers import Provider, bad_request, embedding_inputs, encode_embeddings, upstream_errors
from dheera_ai.translate import UnsupportedParamError
from dheera_ai.types import Call, Deployment, Reply, Usage
from plugins.providers import anthropic, gemini

ANTHROPIC_VERSION = "vertex-2023-10-16"
DEFAULT_LOCATION = "us-central1"


def base_url(deployment: Deployment) -> str:
    """`{base}/v1/projects/{project}/locations/{location}`."""
    location = deployment.param("vertex_location") or os.environ.get("VERTEXAI_LOCATION") or DEFAULT_LOCATION
    project = deployment.param("vertex_project") or os.environ.get("VERTEXAI_PROJECT") \
        or gcp.project(deployment.param("vertex_credentials"))
    if not project:
        raise BadRequestError(f"Model '{deployment.model_name}': set vertex_project in its dheera_ai_params "
                              "(or VERTEXAI_PROJECT on the gateway).", code="missing_vertex_project",
                              provider="vertex_ai")
    host = "aiplatform.googleapis.com" if location == "global" else f"{location}-aiplatform.googleapis.com"
    base = (deployment.param("api_base") or f"https://{host}").rstrip("/").removesuffix("/v1")
    return f"{base}/v1/projects/{project}/locations/{location}"


def model_url(deployment: Deployment, publisher: str, method: str) -> str:
    return f"{base_url(deployment)}/publishers/{publisher}/models/{deployment.model}:{method}"


def auth_headers(deployment: Deployment) -> dict:
    return {"Authorization": f"Bearer {gcp.access_token(deployment.param('vertex_credentials'))}"}


class VertexGemini(gemini.GeminiProvider):
    """Gemini's translation and streaming, at Vertex's address with a Google token."""

    name = "vertex_ai"

    def url(self, deployment: Deployment, method: str) -> str:
        return model_url(deployment, "google", method)

    def auth_headers(self, deployment: Deployment) -> dict:
        return auth_headers(deployment)


class VertexClaude(anthropic.AnthropicProvider):
    """Anthropic's translation and streaming, through rawPredict / streamRawPredict."""

    name = "vertex_ai"

    def _post(self, call: Call, deployment: Deployment, body: dict):
        # The model is in the URL; the API version in the body, where Vertex wants it.
        body = {k: v for k, v in body.items() if k != "model"}
        body["anthropic_version"] = ANTHROPIC_VERSION
        headers = auth_headers(deployment)
        if call.headers.get("anthropic-beta"):
            headers["anthropic-beta"] = call.headers["anthropic-beta"]
        timeout = deployment.param("stream_timeout" if call.stream else "timeout") or deployment.param("timeout")
        url = model_url(deployment, "anthropic", "streamRawPredict" if call.stream else "rawPredict")
        with upstream_errors(anthropic.error_kind, self.name):
            return http.post(url, json_body=body, headers=headers, timeout=timeout, stream=call.stream,
                             provider=self.name, call=call)


class VertexProvider(Provider):
    name = "vertex_ai"
    server_credentials_only = True

    def __init__(self):
        self.gemini, self.claude = VertexGemini(), VertexClaude()

    @staticmethod
    def is_claude(deployment: Deployment) -> bool:
        return deployment.model.startswith("claude")

    def chat_completions(self, call: Call, deployment: Deployment) -> Reply:
        return (self.claude if self.is_claude(deployment) else self.gemini).chat_completions(call, deployment)

    def anthropic_messages(self, call: Call, deployment: Deployment) -> Reply:
        if self.is_claude(deployment):
            return self.claude.anthropic_messages(call, deployment)
        return anthropic_via_chat(call, deployment, self)

    def embeddings(self, call: Call, deployment: Deployment) -> Reply:
        body = call.body
        try:
            inputs = embedding_inputs(body)
            if body.get("encoding_format") not in (None, "float", "base64"):
                raise UnsupportedParamError("encoding_format")
        except ValueError as exc:
            raise bad_request(exc, self.name) from None
        extra = {"task_type": str(body["task_type"]).upper()} if body.get("task_type") else {}
        request = {"instances": [{"content": text, **extra} for text in inputs]}
        if body.get("dimensions"):
            request["parameters"] = {"outputDimensionality": body["dimensions"]}
        with upstream_errors(gemini.error_kind, self.name):
            answer = http.post(model_url(deployment, "google", "predict"), json_body=request,
                               headers=auth_headers(deployment), timeout=deployment.param("timeout"),
                               provider=self.name, call=call).json()
        data, tokens = [], 0
        for i, prediction in enumerate(answer.get("predictions") or []):
            embeddings = prediction.get("embeddings") or {}
            data.append({"object": "embedding", "index": i, "embedding": embeddings.get("values") or []})
            tokens += int((embeddings.get("statistics") or {}).get("token_count") or 0)
        result = {"object": "list", "data": data, "model": deployment.model,
                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        return Reply(data=encode_embeddings(result, body.get("encoding_format")),
                     usage=Usage.from_openai(result["usage"]))


@hookimpl
def dheera_ai_register_providers(register):
    register("vertex_ai", VertexProvider())
