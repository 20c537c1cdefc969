"""Gemini through Google AI Studio (the Generative Language API, v1beta).

Chat: `POST {api_base}/v1beta/models/{model}:generateContent`, streamed with
`:streamGenerateContent?alt=sse`. Embeddings: `:batchEmbedContents`. The key travels in the
`x-goog-api-key` header, never in the URL (`?key=` ends up in access logs). Translations are in
`dheera_ai.translate.gemini`.
"""

from __future__ import annotations

import time
import uuid

from dheera_ai import hookimpl, http
from dheera_ai.errors import ContentPolicyViolationError
from dheera_ai.providers import (
    Provider,
    bad_request,
    drop_params,
    embedding_inputs,
    encode_embeddings,
    require_param,
    server_environ,
    upstream_errors,
)
from dheera_ai.sse import translated_chat_stream
from dheera_ai.translate import gemini as translate
from dheera_ai.types import Call, Deployment, Reply, Usage
from plugins.providers.openai import _closing

DEFAULT_API_BASE = "https://generativelanguage.googleapis.com"


def error_kind(status: int, body) -> str:
    return translate.gemini_error_to_status(body if isinstance(body, dict) else {}, status)[0]


class GeminiProvider(Provider):
    name = "gemini"

    def url(self, deployment: Deployment, method: str) -> str:
        base = deployment.param("api_base") or server_environ(deployment, "GEMINI_API_BASE") or DEFAULT_API_BASE
        base = base.rstrip("/")
        base = base.removesuffix("/v1beta")  # a base copied from Google's docs often includes it
        model = deployment.model.removeprefix("models/")
        return f"{base}/v1beta/models/{model}:{method}"

    def auth_headers(self, deployment: Deployment) -> dict:
        if not deployment.param("api_key") and "api_key" not in deployment.unresolved \
                and not server_environ(deployment, "GEMINI_API_KEY") and server_environ(deployment, "GOOGLE_API_KEY"):
            return {"x-goog-api-key": server_environ(deployment, "GOOGLE_API_KEY")}
        return {"x-goog-api-key": require_param(deployment, "api_key", "GEMINI_API_KEY")}

    def _post(self, call: Call, deployment: Deployment, method: str, body: dict, stream: bool = False,
              params: dict | None = None):
        timeout = deployment.param("stream_timeout" if stream else "timeout") or deployment.param("timeout")
        with upstream_errors(error_kind, self.name):
            return http.post(self.url(deployment, method), json_body=body, headers=self.auth_headers(deployment),
                             params=params, timeout=timeout, stream=stream, provider=self.name, call=call)

    def chat_completions(self, call: Call, deployment: Deployment) -> Reply:
        try:
            body = translate.chat_request_to_gemini(call.body, drop_unsupported=drop_params(call, deployment))
        except ValueError as exc:
            raise bad_request(exc, self.name) from None
        created, response_id = int(time.time()), "chatcmpl-" + uuid.uuid4().hex[:24]
        if not call.stream:
            response = self._post(call, deployment, "generateContent", body)
            try:
                chat = translate.gemini_response_to_chat(response.json(), deployment.model, created, response_id)
            except translate.GeminiContentBlockedError as exc:
                raise self._blocked(exc) from None
            for choice in chat["choices"]:  # required (nullable) in OpenAI's response message
                choice["message"].setdefault("refusal", None)
            return Reply(data=chat, usage=Usage.from_openai(chat.get("usage"), None, chat.get("id")))
        response = self._post(call, deployment, "streamGenerateContent", body, stream=True, params={"alt": "sse"})
        include_usage = bool((call.body.get("stream_options") or {}).get("include_usage"))
        reply = Reply(content_type="text/event-stream")
        stream = translate.GeminiStreamToChat(deployment.model, created, response_id)
        reply.stream = _closing(response, translated_chat_stream(
            http.iter_body(response), stream, reply, include_usage, feed=lambda _, data: stream.feed(data),
            failure=translate.GeminiContentBlockedError, convert=self._blocked))
        return reply

    def _blocked(self, exc) -> ContentPolicyViolationError:
        return ContentPolicyViolationError(f"{self.name}: the prompt was blocked ({exc.reason}).",
                                           code="content_filter", provider=self.name)

    def embeddings(self, call: Call, deployment: Deployment) -> Reply:
        try:
            inputs = embedding_inputs(call.body)
            if call.body.get("encoding_format") not in (None, "float", "base64"):
                raise translate.UnsupportedParamError("encoding_format")
            body = translate.embedding_request_to_gemini(inputs, deployment.model, call.body.get("dimensions"),
                                                         call.body.get("task_type"))
        except ValueError as exc:
            raise bad_request(exc, self.name) from None
        response = self._post(call, deployment, "batchEmbedContents", body)
        result = translate.gemini_embeddings_to_openai(response.json(), deployment.model)
        return Reply(data=encode_embeddings(result, call.body.get("encoding_format")),
                     usage=Usage.from_openai(result["usage"]))


@hookimpl
def dheera_ai_register_providers(register):
    register("gemini", GeminiProvider())
