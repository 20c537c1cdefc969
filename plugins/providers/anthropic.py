"""Anthropic's Messages API: chat completions translated both ways, and /v1/messages passed through.

`POST {api_base}/v1/messages` with `x-api-key` and `anthropic-version` headers. Chat requests are
translated by `dheera_ai.translate.anthropic`; a `/v1/messages` call (`anthropic_messages`) goes
upstream as the client wrote it, and its answer, streamed or not, comes back byte for byte.
"""

from __future__ import annotations

import time

import orjson

from dheera_ai import hookimpl, http
from dheera_ai.errors import error_for_kind
from dheera_ai.providers import Provider, bad_request, drop_params, require_param, server_environ, upstream_errors
from dheera_ai.sse import relay_named_events, translated_chat_stream
from dheera_ai.translate import anthropic as translate
from dheera_ai.types import Call, Deployment, Reply, Usage
from plugins.providers.openai import _closing

DEFAULT_API_BASE = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; OpenAI clients usually leave it out
# Headers an Anthropic client may send that change what the API does; passed on as given.
CLIENT_HEADERS = ("anthropic-version", "anthropic-beta")

# Anthropic's error `type` -> our error kind (docs.claude.com/en/api/errors).
_KINDS = {"invalid_request_error": "bad_request", "authentication_error": "authentication",
          "permission_error": "permission", "billing_error": "permission", "not_found_error": "not_found",
          "rate_limit_error": "rate_limit", "api_error": "server", "overloaded_error": "unavailable",
          "timeout_error": "timeout"}


def error_kind(status: int, body) -> str | None:
    """Our error kind for an Anthropic error answer, or None to go by its status."""
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    message = str(error.get("message") or "").lower()
    if "prompt is too long" in message or "context window" in message or "context length" in message:
        return "context_window"
    if status == 529:
        return "unavailable"
    return _KINDS.get(error.get("type")) if status != 413 else None


class AnthropicProvider(Provider):
    name = "anthropic"

    def url(self, deployment: Deployment) -> str:
        base = deployment.param("api_base") or server_environ(deployment, "ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL") \
            or DEFAULT_API_BASE
        base = base.rstrip("/")
        # Accept a base given with or without the version segment.
        return f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"

    def headers(self, call: Call, deployment: Deployment) -> dict:
        headers = {"x-api-key": require_param(deployment, "api_key", "ANTHROPIC_API_KEY"),
                   "anthropic-version": API_VERSION}
        for name in CLIENT_HEADERS:
            if call.headers.get(name):
                headers[name] = call.headers[name]
        return headers

    def _post(self, call: Call, deployment: Deployment, body: dict):
        timeout = deployment.param("stream_timeout" if call.stream else "timeout") or deployment.param("timeout")
        with upstream_errors(error_kind, self.name):
            return http.post(self.url(deployment), json_body=body, headers=self.headers(call, deployment),
                             timeout=timeout, stream=call.stream, provider=self.name, call=call)

    # -- OpenAI chat completions in, Messages API upstream ------------------------------------
    def chat_completions(self, call: Call, deployment: Deployment) -> Reply:
        try:
            body = translate.chat_request_to_anthropic(
                call.body, deployment.model, int(deployment.param("max_tokens", DEFAULT_MAX_TOKENS)),
                drop_unsupported=drop_params(call, deployment))
        except ValueError as exc:
            raise bad_request(exc, self.name) from None
        created = int(time.time())
        response = self._post(call, deployment, body)
        if not call.stream:
            chat = translate.anthropic_response_to_chat(response.json(), deployment.model, created)
            return Reply(data=chat, usage=Usage.from_openai(chat["usage"], None, chat.get("id")))
        include_usage = bool((call.body.get("stream_options") or {}).get("include_usage"))
        reply = Reply(content_type="text/event-stream")
        stream = translate.AnthropicStreamToChat(deployment.model, created)
        reply.stream = _closing(response, translated_chat_stream(
            http.iter_body(response), stream, reply, include_usage,
            failure=translate.AnthropicStreamError, convert=self._stream_error))
        return reply

    def _stream_error(self, exc):
        """An error event mid-stream, as the error an answer with that type would have been."""
        return error_for_kind(_KINDS.get(exc.type, "server"), f"{self.name}: {http.redact(exc.message)}",
                              provider=self.name)

    # -- Anthropic Messages in and out, untouched -------------------------------------------
    def anthropic_messages(self, call: Call, deployment: Deployment) -> Reply:
        """A /v1/messages body passed through (only `model` becomes the deployment's)."""
        response = self._post(call, deployment, dict(call.body, model=deployment.model))
        return messages_reply(response, call.stream)


def messages_reply(response, stream: bool, events=None) -> Reply:
    """An upstream Messages API answer as the client's, byte for byte, with its usage counted.

    `events` is the stream's SSE bytes when they are not the response's body as it is (Bedrock
    wraps each event in its own framing)."""
    if not stream:
        content = response.content
        try:
            usage = _usage(orjson.loads(content).get("usage"))
        except (orjson.JSONDecodeError, AttributeError):
            usage = None
        return Reply(body=content, usage=usage)
    reply = Reply(content_type="text/event-stream")
    counted: dict = {}

    def watch(name, data):
        # message_start carries input tokens, message_delta the cumulative output tokens.
        if name in ("message_start", "message_delta"):
            try:
                parsed = orjson.loads(data)
            except orjson.JSONDecodeError:
                return
            usage = (parsed.get("message") or {}).get("usage") if name == "message_start" else parsed.get("usage")
            counted.update({k: v for k, v in (usage or {}).items() if isinstance(v, int)})
            reply.usage = _usage(counted)

    reply.stream = _closing(response, relay_named_events(events or http.iter_body(response), watch))
    return reply


def _usage(anthropic_usage) -> Usage | None:
    """Anthropic usage counted the OpenAI way: cache reads and writes are prompt tokens too."""
    if not isinstance(anthropic_usage, dict):
        return None
    return Usage.from_openai(translate._chat_usage(anthropic_usage))


@hookimpl
def dheera_ai_register_providers(register):
    register("anthropic", AnthropicProvider())
