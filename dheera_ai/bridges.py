"""Serving the Responses and Anthropic Messages APIs on deployments that only speak chat
completions, and giving every response id its deployment.

The default dispatch hands a call to its provider when the provider has a method for the call
type; otherwise, for the call types below, it translates the call into chat completions
(`dheera_ai.translate`), runs that on the same provider, and translates the answer back.
"""

from __future__ import annotations

import dataclasses
import re
import time
import uuid

import orjson

from dheera_ai import response_ids
from dheera_ai.errors import BadRequestError, DheeraAIError, NotFoundError
from dheera_ai.response_store import ResponseStore
from dheera_ai.sse import named_event, parse_events
from dheera_ai.translate import anthropic as anthropic_translate
from dheera_ai.translate import responses as responses_translate
from dheera_ai.types import Call, Deployment, Reply

RESPONSES_CALLS = ("responses", "responses_get", "responses_delete", "responses_input_items")
# Upstream response ids, wherever the Responses API puts them, in a plain body or a stream event.
_RESPONSE_ID = re.compile(rb'"(id|previous_response_id|response_id)"(\s*:\s*)"(resp_[A-Za-z0-9_\-]+)"')


class Bridges:
    """The default dispatch's logic; one per engine, holding the bridged responses."""

    def __init__(self, store: ResponseStore | None = None):
        self.store = store or ResponseStore()

    def dispatch(self, call: Call, deployment: Deployment, provider) -> Reply:
        if provider.supports(call.call_type) or not provider.supports("chat_completions"):
            reply = provider.handle(call, deployment)
        elif call.call_type == "anthropic_messages":
            reply = anthropic_via_chat(call, deployment, provider)
        elif call.call_type in RESPONSES_CALLS:
            reply = getattr(self, call.call_type)(call, deployment, provider)
        else:
            reply = provider.handle(call, deployment)  # raises: unsupported call type
        if call.call_type in RESPONSES_CALLS:
            _encode_response_ids(reply, deployment.id, call.response_secret)
        if reply.stream is not None and reply.error_event is None:
            reply.error_event = STREAM_ERROR_EVENTS.get(call.call_type)
        return reply

    # -- Responses over chat completions ------------------------------------------------------
    def responses(self, call: Call, deployment: Deployment, provider) -> Reply:
        body = call.body
        history = []
        if body.get("previous_response_id"):
            history = self._stored(call, body["previous_response_id"], "previous_response_id")["messages"]
        chat = _translated(responses_translate.responses_request_to_chat, body)
        lead = 1 if body.get("instructions") else 0  # instructions are not inherited
        chat["messages"][lead:lead] = history
        response_id = "resp_" + uuid.uuid4().hex
        created = int(time.time())
        sub = _chat_call(call, chat)
        inner = provider.handle(sub, deployment)
        store = body.get("store") is not False
        if inner.stream is None:
            call.upstream_seconds = sub.upstream_seconds
            response = responses_translate.chat_response_to_responses(
                _json_of(inner), body, response_id, created)
            if store:
                self._remember(call, response, chat["messages"])
            return Reply(data=response, usage=inner.usage)

        translator = responses_translate.ChatStreamToResponses(body, response_id, created)
        reply = Reply(content_type="text/event-stream")

        def events():
            yield from _named(translator.start())
            for data in _chunks(inner.stream):
                yield from _named(translator.feed(data))
            final = translator.finish()
            if store:
                self._remember(call, final[-1][1]["response"], chat["messages"])
            yield from _named(final)

        reply.stream = _bridged_stream(events(), call, sub, inner, reply)
        return reply

    def responses_get(self, call: Call, deployment: Deployment, provider) -> Reply:
        return Reply(data=self._stored(call, call.body["response_id"])["response"])

    def responses_delete(self, call: Call, deployment: Deployment, provider) -> Reply:
        response_id = call.body["response_id"]
        if not self.store.delete(response_id, owner=_owner(call)):
            raise _not_found(response_id)
        return Reply(data={"id": response_id, "object": "response", "deleted": True})

    def responses_input_items(self, call: Call, deployment: Deployment, provider) -> Reply:
        items = list(self._stored(call, call.body["response_id"])["input_items"])
        if call.body.get("order", "desc") == "desc":
            items.reverse()
        if call.body.get("after"):
            ids = [item["id"] for item in items]
            items = items[ids.index(call.body["after"]) + 1:] if call.body["after"] in ids else []
        limit = int(call.body.get("limit") or 20)
        page = items[:limit]
        return Reply(data={"object": "list", "data": page, "has_more": len(items) > limit,
                           "first_id": page[0]["id"] if page else None,
                           "last_id": page[-1]["id"] if page else None})

    def _stored(self, call: Call, response_id: str, param: str | None = None) -> dict:
        # Another key's response is as absent as one that never was: nothing says it exists.
        stored = self.store.get(response_id, owner=_owner(call))
        if stored is None:
            raise _not_found(response_id, param)
        return stored

    def _remember(self, call: Call, response: dict, messages: list) -> None:
        request = call.body
        answer = responses_translate.responses_request_to_chat({"input": response["output"]})["messages"]
        system = 1 if request.get("instructions") else 0
        self.store.put(response["id"], response, _input_items(request.get("input"), response["id"]),
                       messages[system:] + answer, owner=_owner(call))


def _owner(call: Call) -> str | None:
    """Whose a stored response is: the key that made it (its hash; the master key by its kind);
    None in-process (the SDK), where there is only one caller."""
    principal = call.principal
    return (principal.key_hash or principal.kind) if principal is not None else None


def _not_found(response_id: str, param: str | None = None) -> NotFoundError:
    return NotFoundError(f"Response with id '{response_id}' not found.", param=param, code="response_not_found")


def _input_items(input_, response_id: str) -> list:
    """The request's input as listed by input_items: every item with an id and a status."""
    if input_ is None:
        return []
    items = [{"type": "message", "role": "user", "content": input_}] if isinstance(input_, str) else input_
    listed = []
    for index, item in enumerate(items):
        item = dict(item)
        item.setdefault("type", "message")
        if item["type"] == "message" and isinstance(item.get("content"), str):
            item["content"] = [{"type": "input_text", "text": item["content"]}]
        item.setdefault("id", f"msg_{response_id.removeprefix('resp_')}_in{index}")
        item.setdefault("status", "completed")
        listed.append(item)
    return listed


# -- Anthropic Messages over chat completions ----------------------------------------------------

def anthropic_via_chat(call: Call, deployment: Deployment, provider) -> Reply:
    chat = _translated(anthropic_translate.anthropic_request_to_chat, call.body)
    sub = _chat_call(call, chat)
    inner = provider.handle(sub, deployment)
    message_id = "msg_" + uuid.uuid4().hex[:24]  # Anthropic's id shape, not the chat completion's
    if inner.stream is None:
        call.upstream_seconds = sub.upstream_seconds
        message = anthropic_translate.chat_response_to_anthropic(_json_of(inner), call.model)
        return Reply(data=dict(message, id=message_id), usage=inner.usage)
    translator = anthropic_translate.ChatStreamToAnthropic(call.model, message_id)
    reply = Reply(content_type="text/event-stream")

    def events():
        for data in _chunks(inner.stream):
            yield from _named(translator.feed(data))
        yield from _named(translator.finish())

    reply.stream = _bridged_stream(events(), call, sub, inner, reply)
    return reply


# Our error classes as Anthropic names them (https://docs.anthropic.com/en/api/errors).
ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                         404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                         500: "api_error", 529: "overloaded_error"}


def anthropic_error(error: DheeraAIError) -> dict:
    """`{"type": "error", "error": {"type", "message"}}`, the shape Anthropic's SDKs parse."""
    status = getattr(error, "status", 500)
    kind = ANTHROPIC_ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": getattr(error, "message", str(error))}}


def anthropic_error_event(error: DheeraAIError) -> bytes:
    return named_event("error", anthropic_error(error))


def responses_error_event(error: DheeraAIError) -> bytes:
    return named_event("error", {"type": "error", "code": getattr(error, "code", None),
                                 "message": getattr(error, "message", str(error)),
                                 "param": getattr(error, "param", None), "sequence_number": 0})


# A late error is written in the stream's own format; in audio it is no event at all (the stream ends).
STREAM_ERROR_EVENTS = {"responses": responses_error_event, "anthropic_messages": anthropic_error_event,
                       "audio_speech": lambda error: b""}


# -- helpers ------------------------------------------------------------------------------------

def _translated(translate, body: dict) -> dict:
    try:
        return translate(body)
    except ValueError as e:  # TranslationError names the field; a plain ValueError does not
        raise BadRequestError(f"{e} (on this model, which is served through chat completions).",
                              param=getattr(e, "param", None), code="unsupported_parameter") from None


def _chat_call(call: Call, chat: dict) -> Call:
    """The chat-completions call that serves `call`; its own body, the same everything else."""
    return dataclasses.replace(call, call_type="chat_completions", body=chat, stream=bool(chat.get("stream")))


def _json_of(reply: Reply) -> dict:
    return reply.data if reply.data is not None else orjson.loads(reply.body)


def _chunks(stream):
    """The chat chunks of an OpenAI SSE stream, as dicts."""
    for _, data in parse_events(stream):
        if data.strip() == "[DONE]":
            return
        chunk = orjson.loads(data)
        if isinstance(chunk, dict) and chunk.get("error"):
            error = chunk["error"]
            raise DheeraAIError(str(error.get("message")), code=error.get("code"))
        yield chunk


def _bridged_stream(events, call: Call, sub: Call, inner: Reply, reply: Reply):
    """The translated events; however they end, the chat stream is closed and its usage and
    upstream time become the bridged call's."""
    try:
        yield from events
    finally:
        _close(inner.stream)
        reply.usage = inner.usage
        call.upstream_seconds = sub.upstream_seconds


def _named(events):
    for name, data in events:
        yield named_event(name, data)


def _close(stream) -> None:
    close = getattr(stream, "close", None)
    if close is not None:
        close()


def _encode_response_ids(reply: Reply, deployment_id: str, secret: bytes) -> None:
    """Replace the upstream's response ids with ids that carry the deployment, sealed for the
    caller (see response_ids)."""
    def rewrite(data: bytes) -> bytes:
        return _RESPONSE_ID.sub(lambda m: b'"' + m.group(1) + b'"' + m.group(2) + b'"' + response_ids.encode(
            deployment_id, m.group(3).decode(), secret).encode() + b'"', data)

    if reply.data is not None:
        reply.body, reply.data = rewrite(orjson.dumps(reply.data)), None
    elif reply.body is not None:
        reply.body = rewrite(reply.body)
    elif reply.stream is not None:  # whole events per chunk, so an id is never split
        reply.stream = _mapped(rewrite, reply.stream)


def _mapped(function, stream):
    try:
        for chunk in stream:
            yield function(chunk)
    finally:
        _close(stream)
