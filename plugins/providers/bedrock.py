"""Amazon Bedrock: chat through Converse / ConverseStream, embeddings and Anthropic's Messages API
through InvokeModel.

`model: bedrock/<model id>` (`bedrock/converse/<id>` too; inference-profile ids such as
`us.anthropic.claude-3-5-sonnet-20241022-v2:0` and ARNs are model ids). Requests go to
`https://bedrock-runtime.{region}.amazonaws.com/model/{id}/{operation}` (or
`aws_bedrock_runtime_endpoint`), signed with SigV4 by botocore (`dheera_ai.aws`), or with a
Bedrock API key as a Bearer token (`api_key` / `AWS_BEARER_TOKEN_BEDROCK`). Streams arrive in
AWS's event-stream framing, which botocore's parser reads (checksums included); each event is
relayed as soon as it is whole.
"""

from __future__ import annotations

import base64
import os
import time
from urllib.parse import quote

import orjson

from dheera_ai import aws, hookimpl, http
from dheera_ai.bridges import anthropic_via_chat
from dheera_ai.errors import APIConnectionError, DheeraAIError, error_for_kind
from dheera_ai.providers import (
    Provider,
    bad_request,
    drop_params,
    embedding_inputs,
    encode_embeddings,
    upstream_errors,
)
from dheera_ai.sse import named_event, translated_chat_stream
from dheera_ai.translate import bedrock as translate
from dheera_ai.types import Call, Deployment, Reply, Usage
from plugins.providers.anthropic import messages_reply
from plugins.providers.openai import _closing

ANTHROPIC_VERSION = "bedrock-2023-05-31"  # what InvokeModel's Anthropic bodies carry instead of a header
ROUTE_PREFIXES = ("converse/", "converse_like/")

# Bedrock's error types (the x-amzn-ErrorType header, or `__type` in the body) -> our error kinds.
_KINDS = {"ThrottlingException": "rate_limit", "ServiceQuotaExceededException": "rate_limit",
          "TooManyRequestsException": "rate_limit", "ValidationException": "bad_request",
          "AccessDeniedException": "authentication", "UnrecognizedClientException": "authentication",
          "ExpiredTokenException": "authentication", "InvalidSignatureException": "authentication",
          "IncompleteSignatureException": "authentication", "ModelTimeoutException": "timeout",
          "ServiceUnavailableException": "unavailable", "ServiceUnavailable": "unavailable",
          "ModelNotReadyException": "unavailable", "ResourceNotFoundException": "not_found",
          "InternalServerException": "server", "ModelErrorException": "server",
          "ModelStreamErrorException": "server"}


class BedrockStreamError(Exception):
    """An exception message inside an event stream (throttling, validation, ...)."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind, self.message = kind, message


def error_kind(error_type: str | None, message: str) -> str | None:
    """Our error kind for a Bedrock error type (`ThrottlingException:http://...` as AWS sends it)."""
    name = (error_type or "").split(":", 1)[0].rsplit("#", 1)[-1]
    lowered = message.lower()
    if name == "ValidationException" and ("too long" in lowered or "too many tokens" in lowered
                                          or "context window" in lowered or "context length" in lowered):
        return "context_window"
    return _KINDS.get(name)


def classify(status: int, body, headers) -> tuple | None:
    """(kind, the error type as the code) from the x-amzn-ErrorType header, or `__type` in the body."""
    body = body if isinstance(body, dict) else {}
    error_type = (headers.get("x-amzn-errortype") or body.get("__type") or "").split(":", 1)[0]
    kind = error_kind(error_type, str(body.get("message") or body.get("Message") or ""))
    return (kind, error_type) if kind else None


def event_stream(chunks):
    """(event type, payload) for each message of an `application/vnd.amazon.eventstream` body,
    parsed by botocore; an exception message raises `BedrockStreamError`."""
    from botocore.eventstream import EventStreamBuffer, ParserError

    buffer = EventStreamBuffer()
    for data in chunks:
        buffer.add_data(data)
        try:
            messages = list(buffer)
        except ParserError as exc:
            raise APIConnectionError(f"bedrock: the event stream is corrupt ({type(exc).__name__})",
                                     provider="bedrock") from None
        for message in messages:
            headers = message.headers
            payload = orjson.loads(message.payload) if message.payload else {}
            if headers.get(":message-type") == "event":
                yield headers.get(":event-type"), payload
            else:
                raise BedrockStreamError(headers.get(":exception-type") or headers.get(":error-code") or "Error",
                                         str(payload.get("message") or headers.get(":error-message") or ""))


class BedrockProvider(Provider):
    name = "bedrock"
    server_credentials_only = True

    @staticmethod
    def model_id(deployment: Deployment) -> str:
        model = deployment.model
        for prefix in ROUTE_PREFIXES:
            model = model.removeprefix(prefix)
        return model

    def url(self, deployment: Deployment, operation: str) -> str:
        base = deployment.param("aws_bedrock_runtime_endpoint") or deployment.param("api_base") \
            or os.environ.get("AWS_BEDROCK_RUNTIME_ENDPOINT") \
            or f"https://bedrock-runtime.{aws.region(deployment.params)}.amazonaws.com"
        # The id goes in one path segment, ':' and '/' (ARNs) escaped, as the AWS SDKs send it.
        return f"{base.rstrip('/')}/model/{quote(self.model_id(deployment), safe='')}/{operation}"

    def _bearer_token(self, deployment: Deployment) -> str | None:
        if deployment.param("api_key"):
            return deployment.param("api_key")
        explicit = any(deployment.param(name) for name in ("aws_access_key_id", "aws_profile_name", "aws_role_name"))
        return None if explicit or deployment.from_client else os.environ.get("AWS_BEARER_TOKEN_BEDROCK")

    def _post(self, call: Call, deployment: Deployment, operation: str, body: dict, stream: bool = False):
        url = self.url(deployment, operation)
        data = orjson.dumps(body)
        headers = {"Content-Type": "application/json",
                   "Accept": "application/vnd.amazon.eventstream" if stream else "application/json"}
        token = self._bearer_token(deployment)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        else:
            headers = aws.signed_headers("POST", url, data, headers, deployment.params)
        timeout = deployment.param("stream_timeout" if stream else "timeout") or deployment.param("timeout")
        with upstream_errors(classify, self.name, with_headers=True):
            return http.post(url, data=data, headers=headers, timeout=timeout, stream=stream,
                             provider=self.name, call=call)

    # -- chat: Converse --------------------------------------------------------------------------
    def chat_completions(self, call: Call, deployment: Deployment) -> Reply:
        try:
            body = translate.chat_request_to_converse(call.body, drop_unsupported=drop_params(call, deployment))
        except ValueError as exc:
            raise bad_request(exc, self.name) from None
        created, model = int(time.time()), self.model_id(deployment)
        if not call.stream:
            answer = self._post(call, deployment, "converse", body).json()
            chat = translate.converse_response_to_chat(answer, model, created)
            return Reply(data=chat, usage=Usage.from_openai(chat.get("usage")))
        response = self._post(call, deployment, "converse-stream", body, stream=True)
        include_usage = bool((call.body.get("stream_options") or {}).get("include_usage"))
        reply = Reply(content_type="text/event-stream")
        reply.stream = _closing(response, translated_chat_stream(
            http.iter_body(response), translate.ConverseStreamToChat(model, created), reply, include_usage,
            decode=event_stream, failure=BedrockStreamError, convert=_stream_error))
        return reply

    # -- embeddings: InvokeModel -------------------------------------------------------------------
    def embeddings(self, call: Call, deployment: Deployment) -> Reply:
        model = self.model_id(deployment)
        try:
            inputs = embedding_inputs(call.body)
            if call.body.get("encoding_format") not in (None, "float", "base64"):
                raise translate.UnsupportedParamError("encoding_format")
            requests = translate.embedding_requests(model, inputs, call.body.get("dimensions"),
                                                    call.body.get("input_type"))
        except ValueError as exc:
            raise bad_request(exc, self.name) from None
        answers = [self._post(call, deployment, "invoke", body).json() for body in requests]
        result = translate.embedding_answers_to_openai(model, answers, inputs)
        return Reply(data=encode_embeddings(result, call.body.get("encoding_format")),
                     usage=Usage.from_openai(result["usage"]))

    # -- Anthropic's Messages API: InvokeModel with the Anthropic body -------------------------------
    def anthropic_messages(self, call: Call, deployment: Deployment) -> Reply:
        if "anthropic." not in self.model_id(deployment):
            return anthropic_via_chat(call, deployment, self)  # other models answer through Converse
        body = {k: v for k, v in call.body.items() if k not in ("model", "stream")}
        body.setdefault("anthropic_version", ANTHROPIC_VERSION)
        if not call.stream:
            return messages_reply(self._post(call, deployment, "invoke", body), False)
        response = self._post(call, deployment, "invoke-with-response-stream", body, stream=True)
        return messages_reply(response, True, events=_anthropic_events(http.iter_body(response)))


def _anthropic_events(chunks):
    """InvokeModelWithResponseStream's chunks (each an Anthropic event, base64 in `bytes`) as the
    SSE the Messages API streams; an exception message becomes Anthropic's error event."""
    try:
        for event_type, payload in event_stream(chunks):
            if event_type == "chunk" and payload.get("bytes"):
                data = orjson.loads(base64.b64decode(payload["bytes"]))
                yield named_event(str(data.get("type") or "message"), data)
    except BedrockStreamError as exc:
        kind = {"rate_limit": "rate_limit_error", "bad_request": "invalid_request_error",
                "unavailable": "overloaded_error"}.get(error_kind(exc.kind, exc.message) or "", "api_error")
        yield named_event("error", {"type": "error", "error": {"type": kind, "message": exc.message}})


def _stream_error(exc: BedrockStreamError) -> DheeraAIError:
    """An exception event mid-stream, as the error an answer of that type would have been."""
    return error_for_kind(error_kind(exc.kind, exc.message) or "server",
                          f"bedrock: {exc.kind}: {http.redact(exc.message)}", code=exc.kind, provider="bedrock")


@hookimpl
def dheera_ai_register_providers(register):
    register("bedrock", BedrockProvider())
