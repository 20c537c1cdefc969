"""A cached answer in one form per API, whether it was streamed or not, and back again.

Chat and text completions are kept as the plain (non-stream) answer; a streamed original is
assembled from its events, so either kind of request can be answered from either kind of
original. A hit on a stream is replayed as the API's own events: for chat the role, the content
in pieces, tool calls, the finish reason, usage when `stream_options.include_usage` asked for it,
and `[DONE]`; for Anthropic's Messages API message_start ... message_stop.
"""

from __future__ import annotations

import re

import orjson

from dheera_ai.sse import DONE, event

VERSION = 1
_PIECE = re.compile(r"\s*\S+\s*|\s+", re.S)
PIECE_CHARS = 24  # a replayed stream sends the text in pieces of about this many characters


class NotCacheable(Exception):
    """This answer cannot be kept (an error event, a shape we do not know)."""


def encode(kind: str, body: dict, created: float) -> bytes:
    return orjson.dumps({"v": VERSION, "kind": kind, "created": created, "body": body})


def decode(raw: bytes, kind: str) -> dict | None:
    """The stored entry, or None for anything unreadable or of another kind (a miss, not an error)."""
    try:
        entry = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):
        return None
    if (not isinstance(entry, dict) or entry.get("v") != VERSION or entry.get("kind") != kind
            or not isinstance(entry.get("body"), (dict, list)) or not isinstance(entry.get("created"), (int, float))):
        return None
    return entry


# -- from the stream's events to the plain answer --------------------------------------------------

def _events(chunks):
    """(event name, parsed data) of each SSE event in the relayed byte chunks; [DONE] ends them."""
    name = None
    for line in b"".join(chunks).split(b"\n"):
        line = line.rstrip(b"\r")
        if line.startswith(b"event:"):
            name = line[6:].strip().decode()
        elif line.startswith(b"data:"):
            payload = line[5:].strip()
            if payload == b"[DONE]":
                return
            try:
                data = orjson.loads(payload)
            except orjson.JSONDecodeError:
                raise NotCacheable("an event is not JSON") from None
            if not isinstance(data, dict) or "error" in data or data.get("type") == "error":
                raise NotCacheable("the stream carried an error")
            yield name, data
            name = None


def assemble_chat(chunks, usage: dict | None) -> dict:
    answer, choices = {}, {}
    for _, chunk in _events(chunks):
        for field in ("id", "created", "model", "system_fingerprint", "service_tier"):
            if chunk.get(field) is not None:
                answer.setdefault(field, chunk[field])
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            slot = choices.setdefault(choice.get("index", 0), {"message": {"role": "assistant", "content": None},
                                                               "tools": {}, "finish_reason": None})
            delta = choice.get("delta") or {}
            message = slot["message"]
            for field in ("content", "refusal", "reasoning_content"):
                if delta.get(field):
                    message[field] = (message.get(field) or "") + delta[field]
            for call in delta.get("tool_calls") or ():
                tool = slot["tools"].setdefault(call.get("index", 0), {"type": "function",
                                                                       "function": {"name": "", "arguments": ""}})
                if call.get("id"):
                    tool["id"] = call["id"]
                function = call.get("function") or {}
                tool["function"]["name"] += function.get("name") or ""
                tool["function"]["arguments"] += function.get("arguments") or ""
            if choice.get("finish_reason"):
                slot["finish_reason"] = choice["finish_reason"]
    if not choices or any(slot["finish_reason"] is None for slot in choices.values()):
        raise NotCacheable("the stream did not finish")
    answer.update(object="chat.completion", choices=[])
    for index in sorted(choices):
        slot = choices[index]
        if slot["tools"]:
            slot["message"]["tool_calls"] = [slot["tools"][i] for i in sorted(slot["tools"])]
        answer["choices"].append({"index": index, "message": slot["message"], "logprobs": None,
                                  "finish_reason": slot["finish_reason"]})
    if usage:
        answer["usage"] = usage
    return answer


def assemble_text(chunks, usage: dict | None) -> dict:
    answer, choices = {}, {}
    for _, chunk in _events(chunks):
        for field in ("id", "created", "model", "system_fingerprint"):
            if chunk.get(field) is not None:
                answer.setdefault(field, chunk[field])
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            slot = choices.setdefault(choice.get("index", 0), {"text": "", "finish_reason": None})
            slot["text"] += choice.get("text") or ""
            slot["finish_reason"] = choice.get("finish_reason") or slot["finish_reason"]
    if not choices or any(slot["finish_reason"] is None for slot in choices.values()):
        raise NotCacheable("the stream did not finish")
    answer.update(object="text_completion", choices=[
        {"index": i, "text": choices[i]["text"], "logprobs": None, "finish_reason": choices[i]["finish_reason"]}
        for i in sorted(choices)])
    if usage:
        answer["usage"] = usage
    return answer


def assemble_anthropic(chunks, usage: dict | None) -> dict:
    message, blocks, stopped = None, {}, False
    for name, data in _events(chunks):
        kind = data.get("type") or name
        if kind == "message_start":
            message = dict(data.get("message") or {})
        elif kind == "content_block_start":
            blocks[data["index"]] = dict(data["content_block"], _json="")
        elif kind == "content_block_delta":
            block, delta = blocks[data["index"]], data.get("delta") or {}
            for field, into in (("text", "text"), ("thinking", "thinking"), ("signature", "signature"),
                                ("partial_json", "_json")):
                if field in delta:
                    block[into] = (block.get(into) or "") + delta[field]
        elif kind == "message_delta" and message is not None:
            message.update({k: v for k, v in (data.get("delta") or {}).items()})
            message["usage"] = {**(message.get("usage") or {}),
                                **{k: v for k, v in (data.get("usage") or {}).items() if v is not None}}
        elif kind == "message_stop":
            stopped = True
    if message is None or not stopped:
        raise NotCacheable("the stream did not finish")
    content = []
    for index in sorted(blocks):
        block = blocks[index]
        partial = block.pop("_json")
        if block.get("type") in ("tool_use", "server_tool_use") and partial:
            block["input"] = orjson.loads(partial)
        content.append(block)
    message["content"] = content
    return message


ASSEMBLE = {"chat_completions": assemble_chat, "completions": assemble_text, "anthropic_messages": assemble_anthropic}


# -- from the plain answer to a stream ----------------------------------------------------------

def pieces(text: str):
    """The text in pieces of about PIECE_CHARS characters, cut between words."""
    piece = ""
    for word in _PIECE.findall(text):
        piece += word
        if len(piece) >= PIECE_CHARS:
            yield piece
            piece = ""
    if piece:
        yield piece


def replay_chat(answer: dict, include_usage: bool):
    base = {"id": answer.get("id"), "object": "chat.completion.chunk", "created": answer.get("created"),
            "model": answer.get("model"), "system_fingerprint": answer.get("system_fingerprint")}

    def chunk(index, delta, finish=None):
        return event({**base, "choices": [{"index": index, "delta": delta, "logprobs": None,
                                           "finish_reason": finish}]})

    for choice in answer.get("choices") or ():
        index, message = choice.get("index", 0), choice.get("message") or {}
        yield chunk(index, {"role": "assistant", "content": ""})
        for piece in pieces(message.get("content") or ""):
            yield chunk(index, {"content": piece})
        if message.get("refusal"):
            yield chunk(index, {"refusal": message["refusal"]})
        for position, call in enumerate(message.get("tool_calls") or ()):
            yield chunk(index, {"tool_calls": [{"index": position, **call}]})
        yield chunk(index, {}, choice.get("finish_reason") or "stop")
    if include_usage and answer.get("usage"):
        yield event({**base, "choices": [], "usage": answer["usage"]})
    yield DONE


def replay_text(answer: dict, include_usage: bool):
    base = {"id": answer.get("id"), "object": "text_completion", "created": answer.get("created"),
            "model": answer.get("model")}
    for choice in answer.get("choices") or ():
        index = choice.get("index", 0)
        for piece in pieces(choice.get("text") or ""):
            yield event({**base, "choices": [{"index": index, "text": piece, "logprobs": None, "finish_reason": None}]})
        yield event({**base, "choices": [{"index": index, "text": "", "logprobs": None,
                                          "finish_reason": choice.get("finish_reason") or "stop"}]})
    if include_usage and answer.get("usage"):
        yield event({**base, "choices": [], "usage": answer["usage"]})
    yield DONE


def replay_anthropic(message: dict, include_usage: bool):
    def named(name, data):
        return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **data}) + b"\n\n"

    usage = message.get("usage") or {}
    start = {k: v for k, v in message.items() if k not in ("content", "stop_reason", "stop_sequence")}
    yield named("message_start", {"message": {**start, "content": [], "stop_reason": None, "stop_sequence": None,
                                              "usage": {**usage, "output_tokens": 0}}})
    for index, block in enumerate(message.get("content") or ()):
        kind = block.get("type")
        if kind == "text":
            yield named("content_block_start", {"index": index, "content_block": {**block, "text": ""}})
            for piece in pieces(block.get("text") or ""):
                yield named("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": piece}})
        elif kind in ("tool_use", "server_tool_use"):
            yield named("content_block_start", {"index": index, "content_block": {**block, "input": {}}})
            yield named("content_block_delta", {"index": index, "delta": {
                "type": "input_json_delta", "partial_json": orjson.dumps(block.get("input") or {}).decode()}})
        elif kind == "thinking":
            yield named("content_block_start", {"index": index, "content_block": {
                **block, "thinking": "", "signature": ""}})
            yield named("content_block_delta", {"index": index, "delta": {
                "type": "thinking_delta", "thinking": block.get("thinking") or ""}})
            yield named("content_block_delta", {"index": index, "delta": {
                "type": "signature_delta", "signature": block.get("signature") or ""}})
        else:
            yield named("content_block_start", {"index": index, "content_block": block})
        yield named("content_block_stop", {"index": index})
    yield named("message_delta", {"delta": {"stop_reason": message.get("stop_reason"),
                                            "stop_sequence": message.get("stop_sequence")},
                                  "usage": {"output_tokens": usage.get("output_tokens", 0)}})
    yield named("message_stop", {})


REPLAY = {"chat_completions": replay_chat, "completions": replay_text, "anthropic_messages": replay_anthropic}
