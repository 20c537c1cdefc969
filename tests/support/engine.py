"""Calling the engine directly, for endpoint families whose routes this branch does not serve."""

from __future__ import annotations

import importlib
import uuid

import orjson

import plugins
from dheera_ai.engine import Engine
from dheera_ai.types import GATEWAY_FIELDS, Call, Principal


def make_engine(model_list: list, **sections) -> Engine:
    """An engine with the built-in plugins, as the gateway would build it from this config."""
    return Engine.from_raw_config({"model_list": model_list, **sections}, load_entrypoints=False,
                                  plugins=[importlib.import_module(p) for p in plugins.BUILTIN])


def run(engine: Engine, call_type: str, model: str, body: dict, headers: dict | None = None):
    """Carry out one call as a blueprint would; returns the Reply (its stream unread)."""
    body = dict(body, model=model)
    gateway_params = {k: body.pop(k) for k in GATEWAY_FIELDS if k in body}
    call = Call(call_id=str(uuid.uuid4()), call_type=call_type, model=model, body=body,
                stream=bool(body.get("stream")), headers=headers or {}, gateway_params=gateway_params,
                principal=Principal(kind="master"))
    return engine.pipeline.run(call)


def answer(reply) -> dict:
    """A plain Reply's JSON."""
    return orjson.loads(reply.body if reply.body is not None else orjson.dumps(reply.data))


def streamed(reply) -> bytes:
    """All of a streamed Reply's bytes."""
    return b"".join(reply.stream)


def sse_data(raw: bytes) -> list:
    """The `data:` payloads of an SSE body, JSON-decoded ("[DONE]" kept as is)."""
    out = []
    for block in raw.decode().split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: "):
                payload = line[6:]
                out.append(payload if payload == "[DONE]" else orjson.loads(payload))
    return out


def assert_valid_chat_stream(raw: bytes) -> list:
    """Every chunk of an OpenAI chat stream valid against OpenAI's spec, ending in [DONE]; the chunks."""
    from tests.support.openapi import assert_valid

    payloads = sse_data(raw)
    assert payloads[-1] == "[DONE]"
    for chunk in payloads[:-1]:
        assert_valid("CreateChatCompletionStreamResponse", chunk)
    return payloads[:-1]
