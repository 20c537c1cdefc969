"""Server-sent events: relaying an OpenAI-format stream with as little work per chunk as we can."""

from __future__ import annotations

import re

import orjson

from dheera_ai.types import Reply, Usage

DONE = b"data: [DONE]\n\n"
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')


def event(data) -> bytes:
    """One `data:` event; `data` is serialized unless it is bytes already."""
    payload = data if isinstance(data, bytes) else orjson.dumps(data)
    return b"data: " + payload + b"\n\n"


def relay_openai_events(chunks, reply: Reply, keep_usage_chunk: bool = True):
    """Pass an OpenAI SSE byte stream through whole events at a time.

    Bytes are not re-encoded; only an event that carries a usage object is parsed, to record
    the usage on `reply`. When the gateway asked the upstream for usage and the client did not,
    that usage-only event (`"choices": []`) is dropped, so the client sees what it asked for.
    """
    for events in whole_events(chunks):
        if _USAGE_OBJECT.search(events):
            events = _take_usage(events, reply, keep_usage_chunk)
        if events:
            yield events


_FINAL_RESPONSE = re.compile(rb'"type"\s*:\s*"response\.(completed|incomplete|failed)"')


def relay_responses_events(chunks, reply: Reply):
    """Pass a Responses API event stream through whole events at a time (so each chunk can be
    rewritten on its own); only the final event, which carries usage, is parsed."""
    for events in whole_events(chunks):
        if _FINAL_RESPONSE.search(events):
            for item in events.split(b"\n\n"):
                payload = _data_of(item)
                if payload and _FINAL_RESPONSE.search(payload):
                    try:
                        usage = (orjson.loads(payload).get("response") or {}).get("usage")
                    except (orjson.JSONDecodeError, AttributeError):
                        usage = None
                    reply.usage = Usage.from_openai(usage) or reply.usage
        yield events


def whole_events(chunks):
    """Regroup a byte stream so that each piece ends on an event boundary."""
    pending = b""
    for data in chunks:
        pending += data
        end = pending.rfind(b"\n\n")
        if end < 0:
            continue
        complete, pending = pending[:end + 2], pending[end + 2:]
        yield complete
    if pending.strip():
        yield pending if pending.endswith(b"\n\n") else pending + b"\n\n"


def _take_usage(events: bytes, reply: Reply, keep_usage_chunk: bool) -> bytes:
    kept = []
    for item in events.split(b"\n\n"):
        if not item.strip():
            continue
        if _USAGE_OBJECT.search(item):
            payload = _data_of(item)
            try:
                chunk = orjson.loads(payload) if payload else None
            except orjson.JSONDecodeError:
                chunk = None
            if isinstance(chunk, dict):
                usage = Usage.from_openai(chunk.get("usage"), chunk.get("model"), chunk.get("id"))
                if usage is not None:
                    reply.usage = usage
                    if not keep_usage_chunk and not chunk.get("choices"):
                        continue
        kept.append(item)
    return b"".join(item + b"\n\n" for item in kept)


def _data_of(item: bytes) -> bytes:
    lines = [line[5:].lstrip() for line in item.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines)


def named_event(name: str, data) -> bytes:
    """One named event (`event: X` then `data:`), as Anthropic and the Responses API send them."""
    return b"event: " + name.encode() + b"\n" + event(data)


def parse_events(chunks):
    """(event name or "", data text) for each event of an SSE byte stream; comments are skipped.

    For providers that must translate a stream event by event (Anthropic, Gemini, Responses).
    """
    pending = b""
    for data in chunks:
        pending = (pending + data).replace(b"\r\n", b"\n")
        while True:
            end = pending.find(b"\n\n")
            if end < 0:
                break
            block, pending = pending[:end], pending[end + 2:]
            parsed = _parse_block(block)
            if parsed is not None:
                yield parsed
    if pending.strip():
        parsed = _parse_block(pending)
        if parsed is not None:
            yield parsed


def relay_named_events(chunks, watch):
    """Pass an SSE byte stream through unchanged, whole events at a time, calling
    `watch(name, data_text)` on each event (to read usage) without re-encoding anything."""
    received: list = []

    def tap():
        for data in chunks:
            received.append(data)
            yield data

    for name, data in parse_events(tap()):
        if received:
            yield b"".join(received)
            received.clear()
        watch(name, data)
    if received:
        yield b"".join(received)


def _parse_block(block: bytes):
    name, lines = "", []
    for line in block.split(b"\n"):
        if line.startswith(b"event:"):
            name = line[6:].strip().decode()
        elif line.startswith(b"data:"):
            lines.append(line[5:].lstrip())
    if not lines:
        return None
    return name, b"\n".join(lines).decode("utf-8", "replace")


def translated_chat_stream(chunks, translator, reply: Reply, include_usage: bool, *, feed=None,
                           failure=(), convert=None, decode=None):
    """A foreign event stream as OpenAI chat chunks, ending in `data: [DONE]`.

    `translator` is one of the `dheera_ai.translate` stream classes: `feed(event name, data)`
    (or the `feed` given) returns the chunk dicts for one event, and `usage`/`usage_chunk()` the
    totals. `decode(chunks)` yields the (event name, parsed data) pairs: SSE with JSON data unless
    given (Bedrock's event streams). An exception of a `failure` type (an error event) is raised
    as `convert(exc)`. The usage chunk is sent only when the client asked for it.
    """
    feed = feed or translator.feed
    try:
        for name, data in (decode or json_events)(chunks):
            for chunk in feed(name, data):
                yield event(chunk)
    except failure as exc:
        raise convert(exc) from None
    reply.usage = Usage.from_openai(translator.usage)
    if include_usage and translator.usage is not None:
        yield event(translator.usage_chunk())
    yield DONE


def json_events(chunks):
    """(event name, parsed JSON data) for each SSE event; keep-alives and non-JSON data are skipped."""
    for name, data in parse_events(chunks):
        try:
            yield name, orjson.loads(data)
        except orjson.JSONDecodeError:
            continue  # a keep-alive or a payload no client could use
