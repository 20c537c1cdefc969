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
    pending = b""
    for data in chunks:
        pending += data
        end = pending.rfind(b"\n\n")
        if end < 0:
            continue
        complete, pending = pending[:end + 2], pending[end + 2:]
        if _USAGE_OBJECT.search(complete):
            complete = _take_usage(complete, reply, keep_usage_chunk)
        if complete:
            yield complete
    if pending.strip():
        if _USAGE_OBJECT.search(pending):
            pending = _take_usage(pending + b"\n\n", reply, keep_usage_chunk)
        if pending:
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
                usage = Usage.from_openai(chunk.get("usage"))
                if usage is not None:
                    reply.usage = usage
                    if not keep_usage_chunk and not chunk.get("choices"):
                        continue
        kept.append(item)
    return b"".join(item + b"\n\n" for item in kept)


def _data_of(item: bytes) -> bytes:
    lines = [line[5:].lstrip() for line in item.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines)
