"""Message content on spans, for the destinations that capture it.

On the call's path the content is only copied, raw (`raw`: the request's messages as JSON text,
the answer's body or a stream's events as received). The exporters' thread turns that into the
GenAI convention's attributes (`finished`): `gen_ai.input.messages` and `gen_ai.output.messages`,
`[{"role", "parts": [{"type": "text", "content"}, ...], "finish_reason"}]`, secrets masked, each
bounded. A destination that does not capture content gets neither form. Secrets are masked in
each value as the messages are built (`_said`): the keys are ours, so that is what `redact_data`
over the finished messages would do, without walking them again.
"""

from __future__ import annotations

import orjson

from dheera_ai.redact import redact, redact_data

RAW_REQUEST = "dheera_ai.content.request"
RAW_ANSWER = "dheera_ai.content.answer"
RAW_STREAMED = "dheera_ai.content.streamed"
RAW = (RAW_REQUEST, RAW_ANSWER, RAW_STREAMED)
INPUT, OUTPUT = "gen_ai.input.messages", "gen_ai.output.messages"
LIMIT = 64 * 1024  # characters kept per attribute
RAW_LIMIT = 1024 * 1024  # bytes of a raw answer copied (a longer one is cut, then parsed as far as it goes)


def raw(call, outcome) -> dict:
    body = call.body
    out = {}
    request = {k: body[k] for k in ("messages", "input", "prompt") if body.get(k) is not None}
    if request:
        out[RAW_REQUEST] = orjson.dumps(request, default=str).decode()
    reply = outcome.reply
    if reply is None:
        return out
    if reply.stream is None:
        answer = reply.body if reply.body is not None else (
            orjson.dumps(reply.data, default=str) if reply.data is not None else b"")
        if answer and reply.content_type.startswith("application/json"):
            out[RAW_ANSWER] = answer[:RAW_LIMIT].decode("utf-8", "replace")
    elif call.delivered:
        out[RAW_ANSWER] = b"".join(call.delivered)[:RAW_LIMIT].decode("utf-8", "replace")
        out[RAW_STREAMED] = True
    return out


def finished(attributes: dict, capture: bool) -> dict:
    """`attributes` with the raw content replaced by the convention's (or dropped: `capture` False)."""
    if RAW_REQUEST not in attributes and RAW_ANSWER not in attributes:
        return attributes
    out = {k: v for k, v in attributes.items() if k not in RAW}
    if not capture:
        return out
    try:
        request = orjson.loads(attributes[RAW_REQUEST]) if RAW_REQUEST in attributes else {}
    except orjson.JSONDecodeError:
        request = {}
    inputs = input_messages(request)
    if inputs:
        out[INPUT] = _json(inputs)
    answer = attributes.get(RAW_ANSWER)
    if answer:
        outputs = streamed_messages(answer.encode()) if attributes.get(RAW_STREAMED) else answer_messages(answer)
        if outputs:
            out[OUTPUT] = _json(outputs)
    return out


def input_messages(request: dict) -> list:
    messages = request.get("messages")
    if isinstance(messages, list):
        return [_message(m) for m in messages if isinstance(m, dict)]
    value = request.get("input", request.get("prompt"))
    return [{"role": "user", "parts": [_text_part(value)]}] if value is not None else []


def answer_messages(answer: str) -> list:
    try:
        document = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(document, dict):
        return []
    out = []
    for choice in document.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        text = message.get("content")
        if text is None:
            text = choice.get("text")
        item = _message({"role": "assistant", **message, "content": text})
        item["finish_reason"] = _said(choice.get("finish_reason"))
        out.append(item)
    if document.get("type") == "message" and isinstance(document.get("content"), list):
        out.append(_message({"role": "assistant", "content": document["content"]}))
    return out


def streamed_messages(events: bytes) -> list:
    text, reason = [], None
    for document in sse_documents([events]):
        for choice in document.get("choices") or ():
            if isinstance(choice, dict):
                delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
                piece = delta.get("content")
                piece = piece if piece is not None else choice.get("text")
                if isinstance(piece, str):
                    text.append(piece)
                reason = choice.get("finish_reason") or reason
    if not text:
        return []
    return [{"role": "assistant", "parts": [_text_part("".join(text))], "finish_reason": _said(reason)}]


def sse_documents(chunks):
    """The JSON objects of SSE `data:` lines (a Responses event's `response` when it has one)."""
    for chunk in chunks:
        for line in chunk.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if not data or data == b"[DONE]":
                continue
            try:
                parsed = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(parsed, dict):
                inner = parsed.get("response")
                yield inner if str(parsed.get("type", "")).startswith("response.") and isinstance(inner, dict) \
                    else parsed


def _message(message: dict) -> dict:
    content = message.get("content")
    if isinstance(content, list):
        parts = [_text_part(p.get("text")) if isinstance(p, dict) and p.get("type") in ("text", "input_text",
                                                                                        "output_text")
                 else {"type": redact(str(p.get("type", "unknown"))) if isinstance(p, dict) else "unknown"}
                 for p in content]
    elif content is None:
        parts = []
    else:
        parts = [_text_part(content)]
    for tool_call in message.get("tool_calls") or ():
        if isinstance(tool_call, dict):
            function = tool_call.get("function") if isinstance(tool_call.get("function"), dict) else {}
            parts.append({"type": "tool_call", "id": _said(tool_call.get("id")), "name": _said(function.get("name")),
                          "arguments": _said(function.get("arguments"))})
    return {"role": redact(str(message.get("role", "user"))), "parts": parts}


def _text_part(value) -> dict:
    return {"type": "text", "content": redact(value if isinstance(value, str) else orjson.dumps(value).decode())}


def _said(value):
    """A value a client or upstream sent, secrets masked."""
    return redact(value) if isinstance(value, str) else redact_data(value)


def _json(value) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= LIMIT else text[:LIMIT]
