"""Translate between the OpenAI Chat Completions and Anthropic Messages wire formats.

Pure functions over plain JSON dicts: no I/O, no HTTP. Two directions:

* OpenAI client -> Anthropic deployment: ``chat_request_to_anthropic``,
  ``anthropic_response_to_chat`` and ``AnthropicStreamToChat``.
* Anthropic client (``/v1/messages``) -> OpenAI deployment: ``anthropic_request_to_chat``,
  ``chat_response_to_anthropic``, ``ChatStreamToAnthropic`` and ``format_sse``.

Shapes follow the Anthropic Messages API reference and streaming guide, and the
openai-python ``ChatCompletion``/``ChatCompletionChunk`` types.
"""

from __future__ import annotations

import json
import uuid

from dheera_ai.translate import UnsupportedParamError, client_input


class AnthropicStreamError(Exception):
    """An ``error`` event received in the middle of an Anthropic stream."""

    def __init__(self, type: str, message: str):
        super().__init__(f"{type}: {message}")
        self.type = type
        self.message = message


# Anthropic stop_reason -> OpenAI finish_reason. pause_turn means "call again to continue",
# which an OpenAI client can only see as a normal stop.
_FINISH_REASON = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop",
                  "max_tokens": "length", "model_context_window_exceeded": "length",
                  "tool_use": "tool_calls", "refusal": "content_filter"}
# OpenAI never says which stop sequence matched, so "stop" can only become end_turn.
_STOP_REASON = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                "function_call": "tool_use", "content_filter": "refusal"}

# stream_options is accepted but not forwarded: the caller answers include_usage itself
# with AnthropicStreamToChat.usage_chunk().
_CHAT_PARAMS = {
    "model", "messages", "max_tokens", "max_completion_tokens", "stop", "stream",
    "stream_options", "temperature", "top_p", "top_k", "tools", "tool_choice",
    "parallel_tool_calls", "user",
}
# Values clients send as explicit defaults; they change nothing, so they are not refused.
_CHAT_NEUTRAL = {"n": 1, "logprobs": False, "presence_penalty": 0, "frequency_penalty": 0}
_ANTHROPIC_PARAMS = {
    "model", "messages", "system", "max_tokens", "stop_sequences", "stream",
    "temperature", "top_p", "tools", "tool_choice", "metadata",
}


def _check_params(body: dict, known: set, neutral: dict, drop: bool) -> None:
    """Raise UnsupportedParamError for the first parameter outside ``known`` unless ``drop``."""
    for key, value in body.items():
        if key in known or value is None or (key in neutral and value == neutral[key]):
            continue
        if not drop:
            raise UnsupportedParamError(key)


def _parse_arguments(name: str, raw) -> dict:
    """Parse a tool call's JSON argument string into the object Anthropic wants."""
    if isinstance(raw, dict):
        return raw
    if raw is None or not raw.strip():
        return {}  # some clients send "" for argument-less functions
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"tool call {name!r} has invalid JSON arguments: {exc}") from exc
    if isinstance(value, dict):
        return value
    # ValueError like the parse failure above: callers treat both as malformed arguments.
    raise ValueError(f"tool call {name!r} arguments must be a JSON object")


# --------------------------------------------------------------------------------------
# OpenAI request -> Anthropic request


@client_input
def chat_request_to_anthropic(body: dict, model: str, default_max_tokens: int = 4096,
                              *, drop_unsupported: bool = False) -> dict:
    """Translate an OpenAI chat completion request body into an Anthropic Messages body.

    System and developer messages are hoisted into ``system``; other messages are merged so
    roles alternate as Anthropic requires. Parameters Anthropic lacks raise
    ``UnsupportedParamError`` unless ``drop_unsupported`` is true, in which case they are
    left out. Malformed content (bad tool arguments, unknown part types) raises ValueError.
    """
    _check_params(body, _CHAT_PARAMS, _CHAT_NEUTRAL, drop_unsupported)
    system, messages = _split_system(body.get("messages") or [])
    max_tokens = next((body[k] for k in ("max_completion_tokens", "max_tokens")
                       if body.get(k) is not None), default_max_tokens)
    out = {"model": model, "messages": messages, "max_tokens": max_tokens}
    if system:
        out["system"] = system
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    for key in ("temperature", "top_p", "top_k"):
        if body.get(key) is not None:
            out[key] = body[key]
    if body.get("stream") is not None:
        out["stream"] = bool(body["stream"])
    if body.get("user"):
        out["metadata"] = {"user_id": body["user"]}
    if body.get("tools"):
        out["tools"] = [_tool_to_anthropic(t) for t in body["tools"]]
        # tool_choice without tools is meaningless to both APIs and rejected by Anthropic.
        choice = _tool_choice_to_anthropic(body.get("tool_choice"),
                                           body.get("parallel_tool_calls"))
        if choice:
            out["tool_choice"] = choice
    return out


def _split_system(messages: list) -> tuple:
    """Return (system, alternating Anthropic messages) from OpenAI messages."""
    system_blocks, merged = [], []
    for msg in messages:
        role = msg.get("role")
        if role in ("system", "developer"):
            system_blocks.extend(_content_blocks(msg.get("content"), text_only=True))
            continue
        if role == "tool":
            content = msg.get("content")
            role, blocks = "user", [{"type": "tool_result", "tool_use_id": msg["tool_call_id"],
                                     "content": content if isinstance(content, str)
                                     else _content_blocks(content)}]
        elif role == "assistant":
            blocks = _content_blocks(msg.get("content"))
            blocks += [_tool_use_block(call) for call in msg.get("tool_calls") or []]
        elif role == "user":
            blocks = _content_blocks(msg.get("content"))
        else:
            raise ValueError(f"unsupported message role {role!r}")
        if not blocks:
            continue  # Anthropic rejects messages with empty content
        if merged and merged[-1]["role"] == role:
            merged[-1]["content"].extend(blocks)
        else:
            merged.append({"role": role, "content": blocks})
    # Cache breakpoints only exist on blocks, so keep blocks when any was marked.
    if any("cache_control" in b for b in system_blocks):
        return system_blocks, merged
    return "\n\n".join(b["text"] for b in system_blocks), merged


def _content_blocks(content, text_only: bool = False) -> list:
    """Convert OpenAI message content (string or parts) into Anthropic content blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            if not part.get("text"):
                continue  # Anthropic rejects empty text blocks
            block = {"type": "text", "text": part["text"]}
            if part.get("cache_control"):
                block["cache_control"] = part["cache_control"]
            blocks.append(block)
        elif kind == "image_url" and not text_only:
            blocks.append(_image_block(part["image_url"]))
        else:
            raise ValueError(f"unsupported content part type {kind!r}")
    return blocks


def _image_block(image_url) -> dict:
    """Convert an OpenAI image_url (data: or http(s) URL) into an Anthropic image block."""
    url = image_url["url"] if isinstance(image_url, dict) else image_url
    if url.startswith("data:"):
        header, _, data = url[5:].partition(",")
        media_type, *params = header.split(";")
        if "base64" not in params:
            raise ValueError("image data URLs must be base64-encoded")
        source = {"type": "base64", "media_type": media_type, "data": data}
    elif url.startswith(("http://", "https://")):
        source = {"type": "url", "url": url}
    else:
        raise ValueError(f"unsupported image URL scheme in {url[:30]!r}")
    return {"type": "image", "source": source}


def _tool_use_block(call: dict) -> dict:
    """Convert an OpenAI assistant tool call into an Anthropic tool_use block."""
    fn = call["function"]
    return {"type": "tool_use", "id": call["id"], "name": fn["name"],
            "input": _parse_arguments(fn["name"], fn.get("arguments"))}


def _tool_to_anthropic(tool: dict) -> dict:
    """Convert an OpenAI function tool into an Anthropic tool with input_schema."""
    if tool.get("type") != "function":
        raise ValueError(f"unsupported tool type {tool.get('type')!r}")
    fn = tool["function"]
    out = {"name": fn["name"],
           "input_schema": fn.get("parameters") or {"type": "object", "properties": {}}}
    if fn.get("description"):
        out["description"] = fn["description"]
    return out


def _tool_choice_to_anthropic(choice, parallel) -> dict | None:
    """Map OpenAI tool_choice and parallel_tool_calls onto an Anthropic tool_choice."""
    if choice is None:
        out = {"type": "auto"} if parallel is False else None
    elif choice in ("auto", "none"):
        out = {"type": choice}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        out = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise ValueError(f"unsupported tool_choice {choice!r}")
    # The "none" variant has no disable_parallel_tool_use field.
    if out and parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


# --------------------------------------------------------------------------------------
# Anthropic response / stream -> OpenAI


def _chat_usage(usage: dict) -> dict:
    """Convert Anthropic usage to OpenAI usage; Anthropic input_tokens excludes cached tokens."""
    read = usage.get("cache_read_input_tokens") or 0
    created = usage.get("cache_creation_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + read + created
    completion = usage.get("output_tokens") or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": read},
            "cache_creation_input_tokens": created, "cache_read_input_tokens": read}


def _finish_reason(stop_reason: str | None) -> str | None:
    """Map a stop_reason, treating reasons newer than this module as a plain stop."""
    return _FINISH_REASON.get(stop_reason, "stop") if stop_reason else None


def _assistant_to_chat(blocks: list) -> dict:
    """Build an OpenAI assistant message from Anthropic text and tool_use blocks."""
    # Thinking and server-tool blocks have no OpenAI equivalent, so they are left out.
    texts = [b["text"] for b in blocks if b.get("type") == "text"]
    message = {"role": "assistant", "content": "".join(texts) if texts else None}
    calls = [{"id": b["id"], "type": "function",
              "function": {"name": b["name"], "arguments": json.dumps(b.get("input") or {})}}
             for b in blocks if b.get("type") == "tool_use"]
    if calls:
        message["tool_calls"] = calls
    return message


def anthropic_response_to_chat(resp: dict, model: str, created: int) -> dict:
    """Translate an Anthropic message object into an OpenAI ``chat.completion`` object.

    Text blocks are concatenated into ``content``; tool_use blocks become ``tool_calls``
    with JSON-string arguments. Other block types (e.g. thinking) are not represented.
    """
    message = {**_assistant_to_chat(resp.get("content") or []), "refusal": None}
    return {"id": resp["id"], "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": _finish_reason(resp.get("stop_reason"))}],
            "usage": _chat_usage(resp.get("usage") or {})}


class AnthropicStreamToChat:
    """Turn Anthropic SSE events into OpenAI ``chat.completion.chunk`` dicts, one event at a time.

    Unknown event types (and ping, content_block_stop, message_stop) yield nothing, as
    Anthropic's streaming guide asks clients to tolerate new event types.
    """

    def __init__(self, model: str, created: int):
        self.model = model
        self.created = created
        self._id = ""
        self._usage = None
        self._tool_index = {}  # Anthropic content block index -> OpenAI tool_calls index

    @property
    def usage(self) -> dict | None:
        """OpenAI usage so far: None before message_start, final after message_delta."""
        return None if self._usage is None else _chat_usage(self._usage)

    def usage_chunk(self) -> dict:
        """The trailing chunk OpenAI sends for ``stream_options.include_usage``."""
        return {"id": self._id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [], "usage": self.usage}

    def feed(self, event: str, data: dict) -> list:
        """Translate one Anthropic event (name and parsed data) into zero or more chunks."""
        kind = event or data.get("type")
        if kind == "message_start":
            message = data["message"]
            self._id = message["id"]
            self._usage = dict(message.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = data["content_block"]
            if block.get("type") == "tool_use":
                position = self._tool_index[data["index"]] = len(self._tool_index)
                return [self._chunk({"tool_calls": [{
                    "index": position, "id": block["id"], "type": "function",
                    "function": {"name": block["name"], "arguments": ""}}]})]
            return [self._chunk({"content": block["text"]})] if block.get("text") else []
        if kind == "content_block_delta":
            delta = data["delta"]
            if delta.get("type") == "text_delta":
                return [self._chunk({"content": delta["text"]})]
            # Server tools (web search etc.) also stream input_json_delta; only client tools
            # were announced as tool_calls.
            if (delta.get("type") == "input_json_delta" and delta.get("partial_json")
                    and data["index"] in self._tool_index):
                return [self._chunk({"tool_calls": [{
                    "index": self._tool_index[data["index"]],
                    "function": {"arguments": delta["partial_json"]}}]})]
            return []  # thinking and signature deltas have no OpenAI equivalent
        if kind == "message_delta":
            # message_delta usage counts are cumulative, so they replace earlier values.
            usage = {k: v for k, v in (data.get("usage") or {}).items() if v is not None}
            self._usage = {**(self._usage or {}), **usage}
            stop = (data.get("delta") or {}).get("stop_reason")
            return [self._chunk({}, _finish_reason(stop))] if stop else []
        if kind == "error":
            error = data.get("error") or {}
            raise AnthropicStreamError(error.get("type", "error"), error.get("message", ""))
        return []

    def _chunk(self, delta: dict, finish_reason: str | None = None) -> dict:
        """Wrap a delta in a single-choice chat.completion.chunk."""
        return {"id": self._id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None,
                             "finish_reason": finish_reason}]}


# --------------------------------------------------------------------------------------
# Anthropic request -> OpenAI request, and OpenAI response / stream -> Anthropic


@client_input
def anthropic_request_to_chat(body: dict, *, drop_unsupported: bool = False) -> dict:
    """Translate an Anthropic Messages request body into an OpenAI chat completion body.

    ``system`` becomes a leading system message, tool_result blocks become tool messages and
    tool_use blocks become assistant tool_calls; thinking blocks are dropped. Streaming
    requests ask for a usage chunk (``stream_options.include_usage``) so token counts can be
    reported back. Parameters OpenAI lacks (top_k, thinking, ...) raise
    ``UnsupportedParamError`` unless ``drop_unsupported`` is true.
    """
    _check_params(body, _ANTHROPIC_PARAMS, {}, drop_unsupported)
    messages = []
    system = body.get("system")
    if isinstance(system, list):
        system = "\n\n".join(b["text"] for b in system if b.get("type") == "text")
    if system:
        messages.append({"role": "system", "content": system})
    for msg in body.get("messages") or []:
        messages.extend(_message_to_chat(msg))
    out = {"model": body.get("model"), "messages": messages}
    for key in ("max_tokens", "temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    if body.get("stop_sequences"):
        out["stop"] = list(body["stop_sequences"])
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    user_id = (body.get("metadata") or {}).get("user_id")
    if user_id:
        out["user"] = user_id
    if body.get("tools"):
        out["tools"] = [_tool_to_chat(t) for t in body["tools"]]
    choice = body.get("tool_choice")
    if choice:
        out["tool_choice"] = _tool_choice_to_chat(choice)
        if choice.get("disable_parallel_tool_use"):
            out["parallel_tool_calls"] = False
    return out


def _tool_choice_to_chat(choice: dict):
    """Map an Anthropic tool_choice onto the OpenAI string or named-function form."""
    kind = choice.get("type")
    if kind == "tool":
        return {"type": "function", "function": {"name": choice["name"]}}
    if kind not in ("auto", "any", "none"):
        raise ValueError(f"unsupported tool_choice type {kind!r}")
    return "required" if kind == "any" else kind


def _message_to_chat(msg: dict) -> list:
    """Convert one Anthropic message into one or more OpenAI messages."""
    role, content = msg["role"], msg["content"]
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if role == "assistant":
        return [_assistant_to_chat(content)]
    tool_messages, parts = [], []
    for block in content:
        if block["type"] == "tool_result":
            text, images = _tool_result_to_chat(block.get("content"))
            tool_messages.append({"role": "tool", "tool_call_id": block["tool_use_id"],
                                  "content": text})
            parts.extend(images)
        elif block["type"] == "text":
            parts.append({"type": "text", "text": block["text"]})
        elif block["type"] == "image":
            parts.append(_image_part(block["source"]))
        else:
            raise ValueError(f"unsupported user content block {block['type']!r}")
    if len(parts) == 1 and parts[0]["type"] == "text":
        return tool_messages + [{"role": "user", "content": parts[0]["text"]}]
    return tool_messages + ([{"role": "user", "content": parts}] if parts else [])


def _tool_result_to_chat(content) -> tuple:
    """Split tool_result content into tool-message text and image parts."""
    # OpenAI tool messages carry text only, so images travel in the following user message.
    if content is None or isinstance(content, str):
        return content or "", []
    texts = [b["text"] for b in content if b["type"] == "text"]
    images = [_image_part(b["source"]) for b in content if b["type"] == "image"]
    return "\n".join(texts), images


def _image_part(source: dict) -> dict:
    """Convert an Anthropic image source into an OpenAI image_url part."""
    if source["type"] == "base64":
        url = f"data:{source['media_type']};base64,{source['data']}"
    elif source["type"] == "url":
        url = source["url"]
    else:
        raise ValueError(f"unsupported image source type {source['type']!r}")
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_to_chat(tool: dict) -> dict:
    """Convert an Anthropic custom tool into an OpenAI function tool."""
    if "input_schema" not in tool:
        raise ValueError(f"server tool {tool.get('type') or tool.get('name')!r} is not supported")
    fn = {"name": tool["name"], "parameters": tool["input_schema"]}
    if tool.get("description"):
        fn["description"] = tool["description"]
    return {"type": "function", "function": fn}


def _anthropic_usage(usage: dict | None) -> dict:
    """Convert OpenAI usage to Anthropic usage; OpenAI prompt_tokens includes cached tokens."""
    usage = usage or {}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return {"input_tokens": (usage.get("prompt_tokens") or 0) - cached,
            "output_tokens": usage.get("completion_tokens") or 0,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached}


def chat_response_to_anthropic(resp: dict, model: str) -> dict:
    """Translate an OpenAI ``chat.completion`` object into an Anthropic message object.

    Only the first choice is used. ``stop_sequence`` is always null because OpenAI does not
    report which stop sequence matched; a stop becomes ``end_turn``.
    """
    choice = resp["choices"][0]
    message = choice.get("message") or {}
    content = []
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or []:
        content.append(_tool_use_block(call))
    return {"id": resp["id"], "type": "message", "role": "assistant", "model": model,
            "content": content,
            "stop_reason": _STOP_REASON.get(choice.get("finish_reason"), "end_turn"),
            "stop_sequence": None, "usage": _anthropic_usage(resp.get("usage"))}


class ChatStreamToAnthropic:
    """Turn OpenAI ``chat.completion.chunk`` dicts into Anthropic (event, data) pairs.

    Anthropic blocks are strictly sequential, so a new block closes the previous one. The
    stop reason is held until ``finish()`` because OpenAI's usage chunk arrives after the
    finish_reason chunk and Anthropic reports both in one message_delta.
    """

    def __init__(self, model: str, message_id: str):
        self.model = model
        self.message_id = message_id
        self._started = self._finished = False
        self._block = None  # index of the open Anthropic content block
        self._kind = None  # "text", or ("tool", OpenAI tool_calls index)
        self._next_block = 0
        self._stop_reason = None
        self._usage = None

    def feed(self, chunk: dict) -> list:
        """Translate one OpenAI chunk into zero or more Anthropic events."""
        if self._finished:
            return []
        events = self._start()
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue  # an Anthropic message has exactly one candidate
            delta = choice.get("delta") or {}
            if delta.get("content"):
                events += self._text(delta["content"])
            for call in delta.get("tool_calls") or []:
                events += self._tool(call)
            if choice.get("finish_reason"):
                self._stop_reason = _STOP_REASON.get(choice["finish_reason"], "end_turn")
                events += self._close()
        return events

    def finish(self) -> list:
        """Close any open block and emit message_delta and message_stop (once)."""
        if self._finished:
            return []
        self._finished = True
        usage = _anthropic_usage(self._usage)
        return self._start() + self._close() + [
            ("message_delta", {"type": "message_delta",
                               "delta": {"stop_reason": self._stop_reason or "end_turn",
                                         "stop_sequence": None},
                               "usage": usage}),
            ("message_stop", {"type": "message_stop"}),
        ]

    def _start(self) -> list:
        """Emit message_start before anything else; input tokens are unknown until the end."""
        if self._started:
            return []
        self._started = True
        return [("message_start", {"type": "message_start", "message": {
            "id": self.message_id, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0}}})]

    def _open(self, kind, block: dict) -> list:
        """Close the current block and start a new one."""
        events = self._close()
        self._block, self._kind = self._next_block, kind
        self._next_block += 1
        return events + [("content_block_start", {"type": "content_block_start",
                                                  "index": self._block, "content_block": block})]

    def _close(self) -> list:
        """Stop the open block, if any."""
        if self._block is None:
            return []
        events = [("content_block_stop", {"type": "content_block_stop", "index": self._block})]
        self._block = self._kind = None
        return events

    def _text(self, text: str) -> list:
        """Emit a text_delta, opening a text block if needed."""
        events = [] if self._kind == "text" else self._open("text", {"type": "text", "text": ""})
        return events + [self._delta({"type": "text_delta", "text": text})]

    def _tool(self, call: dict) -> list:
        """Emit input_json_delta fragments, opening a tool_use block for a new tool index."""
        fn = call.get("function") or {}
        kind, events = ("tool", call.get("index", 0)), []
        if self._kind != kind:
            # Some OpenAI-compatible servers omit the id; Anthropic clients need one.
            events = self._open(kind, {"type": "tool_use",
                                       "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                                       "name": fn.get("name") or "", "input": {}})
        if fn.get("arguments"):
            events.append(self._delta({"type": "input_json_delta",
                                       "partial_json": fn["arguments"]}))
        return events

    def _delta(self, delta: dict) -> tuple:
        """A content_block_delta event for the open block."""
        return ("content_block_delta", {"type": "content_block_delta", "index": self._block,
                                        "delta": delta})


def format_sse(event: str, data: dict) -> bytes:
    """Encode one server-sent event the way Anthropic frames them."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
