"""Translate between OpenAI chat/embeddings and Amazon Bedrock's Converse API and embedding models.

Pure functions over JSON dicts, no I/O. Shapes follow the Bedrock Runtime API reference:
``POST /model/{modelId}/converse`` (``messages``, ``system``, ``inferenceConfig``,
``toolConfig``), ``/converse-stream`` (an ``application/vnd.amazon.eventstream`` whose events are
messageStart, contentBlockStart, contentBlockDelta, contentBlockStop, messageStop, metadata), and
``/invoke`` bodies for Titan and Cohere embedding models.
"""

from __future__ import annotations

import json
import uuid

from dheera_ai.translate import TranslationError, UnsupportedParamError, client_input

_INFERENCE = {"max_tokens": "maxTokens", "max_completion_tokens": "maxTokens", "temperature": "temperature",
              "top_p": "topP"}
_KNOWN = {"model", "messages", "tools", "tool_choice", "stop", "stream", "stream_options", "user", "top_k",
          *_INFERENCE}
_NEUTRAL = {"n": 1, "logprobs": False, "parallel_tool_calls": True, "presence_penalty": 0, "frequency_penalty": 0}
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                  "image/webp": "webp"}
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
           "guardrail_intervened": "content_filter", "content_filtered": "content_filter",
           "model_context_window_exceeded": "length"}


@client_input
def chat_request_to_converse(body: dict, *, drop_unsupported: bool = False) -> dict:
    """A Converse (or ConverseStream) body from an OpenAI chat request; the model goes in the URL.

    Images must be base64 data URLs: Converse takes bytes, and the gateway does not fetch a
    client's URLs for it. ``top_k`` goes in ``additionalModelRequestFields`` (model-specific).
    """
    for key, value in body.items():
        if key in _KNOWN or value is None or _NEUTRAL.get(key, object()) == value:
            continue
        if not drop_unsupported:
            raise UnsupportedParamError(key)
    system, messages = _messages(body.get("messages") or [])
    out: dict = {"messages": messages}
    if system:
        out["system"] = system
    config = {target: body[key] for key, target in _INFERENCE.items() if body.get(key) is not None}
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if config:
        out["inferenceConfig"] = config
    if body.get("top_k") is not None:
        out["additionalModelRequestFields"] = {"top_k": body["top_k"]}
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if tools and choice != "none":  # Converse has no "none": leaving the tools out is the same
        out["toolConfig"] = {"tools": [_tool(t) for t in tools]}
        if choice == "required":
            out["toolConfig"]["toolChoice"] = {"any": {}}
        elif isinstance(choice, dict) and choice.get("type") == "function":
            out["toolConfig"]["toolChoice"] = {"tool": {"name": choice["function"]["name"]}}
        elif choice not in (None, "auto"):
            raise UnsupportedParamError("tool_choice", f"tool_choice {choice!r} is not supported")
    elif _has_tool_history(messages):
        # Converse refuses toolUse/toolResult blocks unless toolConfig is present.
        out["toolConfig"] = {"tools": [_placeholder_tool(messages)]}
    return out


def _messages(messages: list) -> tuple[list, list]:
    """(system blocks, alternating Converse messages): same-role turns merge, tool results are user turns."""
    system, out = [], []
    for i, msg in enumerate(messages):
        role, where = msg.get("role"), f"messages[{i}]"
        if role in ("system", "developer"):
            system.extend(_text_blocks(msg.get("content"), where))
            continue
        if role == "user":
            turn, blocks = "user", _content(msg.get("content"), where)
        elif role == "assistant":
            turn = "assistant"
            blocks = [b for b in _text_blocks(msg.get("content"), where) if b["text"]]
            blocks += [_tool_use(call, where) for call in msg.get("tool_calls") or []]
        elif role == "tool":
            turn, blocks = "user", [_tool_result(msg, where)]
        else:
            raise UnsupportedParamError("messages", f"{where}: role {role!r} is not supported")
        if not blocks:
            continue  # Converse rejects empty content
        if out and out[-1]["role"] == turn:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": turn, "content": blocks})
    return system, out


def _text_blocks(content, where: str) -> list[dict]:
    if content is None or isinstance(content, str):
        return [{"text": content}] if content else []
    blocks = []
    for part in content:
        if part.get("type") != "text":
            raise UnsupportedParamError("messages", f"{where}: only text is allowed here")
        blocks.append({"text": part["text"]})
    return blocks


def _content(content, where: str) -> list[dict]:
    if content is None or isinstance(content, str):
        return [{"text": content}] if content else []
    blocks = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            blocks.append({"text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image(part["image_url"], where))
        else:
            raise UnsupportedParamError("messages", f"{where}: content part {kind!r} is not supported")
    return blocks


def _image(image_url, where: str) -> dict:
    url = image_url["url"] if isinstance(image_url, dict) else image_url
    if not url.startswith("data:"):
        raise TranslationError("messages", f"{where}: Bedrock takes images as base64 data URLs "
                                           "(data:image/png;base64,...), not links")
    header, _, data = url[5:].partition(",")
    media_type, *options = header.split(";")
    if "base64" not in options or media_type not in _IMAGE_FORMATS:
        raise TranslationError("messages", f"{where}: images must be base64 png, jpeg, gif or webp")
    # The Converse JSON protocol carries the image's bytes as base64: the client's text as it is.
    return {"image": {"format": _IMAGE_FORMATS[media_type], "source": {"bytes": data}}}


def _tool_use(call: dict, where: str) -> dict:
    fn = call.get("function") or {}
    raw = fn.get("arguments") or "{}"
    try:
        arguments = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        arguments = None
    if not isinstance(arguments, dict):
        raise TranslationError("messages", f"{where}: tool call arguments must be a JSON object")
    return {"toolUse": {"toolUseId": call["id"], "name": fn["name"], "input": arguments}}


def _tool_result(msg: dict, where: str) -> dict:
    text = "".join(b["text"] for b in _text_blocks(msg.get("content"), where))
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    block = {"json": value} if isinstance(value, dict) else {"text": text or " "}
    return {"toolResult": {"toolUseId": msg["tool_call_id"], "content": [block]}}


def _tool(tool: dict) -> dict:
    if tool.get("type") != "function":
        raise UnsupportedParamError("tools", f"tool type {tool.get('type')!r} is not supported")
    fn = tool["function"]
    spec = {"name": fn["name"], "inputSchema": {"json": fn.get("parameters") or {"type": "object", "properties": {}}}}
    if fn.get("description"):
        spec["description"] = fn["description"]
    return {"toolSpec": spec}


def _has_tool_history(messages: list) -> bool:
    return any("toolUse" in b or "toolResult" in b for m in messages for b in m["content"])


def _placeholder_tool(messages: list) -> dict:
    """A declaration for a tool the history used, so Converse accepts a conversation whose client
    no longer sends `tools` (LiteLLM does the same)."""
    names = [b["toolUse"]["name"] for m in messages for b in m["content"] if "toolUse" in b]
    return {"toolSpec": {"name": names[0] if names else "dummy_tool",
                         "description": "A tool used earlier in this conversation.",
                         "inputSchema": {"json": {"type": "object", "properties": {}}}}}


# -- answers ---------------------------------------------------------------------------------

def usage(bedrock_usage: dict | None) -> dict | None:
    """Converse usage in OpenAI's names; cache reads and writes are prompt tokens too (Bedrock's
    inputTokens leaves them out), with the parts kept as Anthropic's clients name them."""
    if not isinstance(bedrock_usage, dict):
        return None
    read = bedrock_usage.get("cacheReadInputTokens") or 0
    written = bedrock_usage.get("cacheWriteInputTokens") or 0
    prompt = (bedrock_usage.get("inputTokens") or 0) + read + written
    completion = bedrock_usage.get("outputTokens") or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": read},
            "cache_read_input_tokens": read, "cache_creation_input_tokens": written}


def converse_response_to_chat(resp: dict, model: str, created: int) -> dict:
    """A Converse answer as an OpenAI ``chat.completion``."""
    blocks = ((resp.get("output") or {}).get("message") or {}).get("content") or []
    texts = [b["text"] for b in blocks if "text" in b]
    calls = [{"id": b["toolUse"]["toolUseId"], "type": "function",
              "function": {"name": b["toolUse"]["name"], "arguments": json.dumps(b["toolUse"].get("input") or {})}}
             for b in blocks if "toolUse" in b]
    message: dict = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    out = {"id": "chatcmpl-" + uuid.uuid4().hex[:24], "object": "chat.completion", "created": created,
           "model": model, "choices": [{"index": 0, "message": message, "logprobs": None,
                                        "finish_reason": _FINISH.get(resp.get("stopReason"), "stop")}]}
    if resp.get("usage"):
        out["usage"] = usage(resp["usage"])
    return out


class ConverseStreamToChat:
    """ConverseStream events (event type, payload dict) as ``chat.completion.chunk`` dicts."""

    def __init__(self, model: str, created: int):
        self.model, self.created = model, created
        self.id = "chatcmpl-" + uuid.uuid4().hex[:24]
        self._usage: dict | None = None
        self._tools: dict = {}  # contentBlockIndex -> OpenAI tool_calls index

    def feed(self, event_type: str, data: dict) -> list[dict]:
        if event_type == "messageStart":
            return [self._chunk({"role": data.get("role", "assistant"), "content": ""})]
        if event_type == "contentBlockStart":
            tool = (data.get("start") or {}).get("toolUse")
            if not tool:
                return []
            position = self._tools[data.get("contentBlockIndex", 0)] = len(self._tools)
            return [self._chunk({"tool_calls": [{"index": position, "id": tool["toolUseId"], "type": "function",
                                                 "function": {"name": tool["name"], "arguments": ""}}]})]
        if event_type == "contentBlockDelta":
            delta = data.get("delta") or {}
            if "text" in delta:
                return [self._chunk({"content": delta["text"]})]
            if "toolUse" in delta and data.get("contentBlockIndex", 0) in self._tools:
                return [self._chunk({"tool_calls": [{"index": self._tools[data.get("contentBlockIndex", 0)],
                                                     "function": {"arguments": delta["toolUse"].get("input", "")}}]})]
            return []  # reasoning content has no OpenAI counterpart
        if event_type == "messageStop":
            return [self._chunk({}, _FINISH.get(data.get("stopReason"), "stop"))]
        if event_type == "metadata":
            self._usage = data.get("usage") or self._usage
        return []

    @property
    def usage(self) -> dict | None:
        return usage(self._usage)

    def usage_chunk(self) -> dict:
        return {**self._chunk({}), "choices": [], "usage": self.usage}

    def _chunk(self, delta: dict, finish: str | None = None) -> dict:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


# -- embeddings (InvokeModel) ----------------------------------------------------------------

def embedding_requests(model_id: str, inputs: list[str], dimensions: int | None, input_type: str | None) -> list:
    """InvokeModel bodies for an embedding model: Titan takes one text a call, Cohere a batch of 96."""
    if ".titan-embed" in model_id:
        extra = {"dimensions": dimensions} if dimensions else {}
        return [{"inputText": text, **extra} for text in inputs]
    if ".embed-" in model_id:  # cohere.embed-english-v3, cohere.embed-multilingual-v3, cohere.embed-v4
        kind = input_type or "search_document"
        return [{"texts": inputs[i:i + 96], "input_type": kind} for i in range(0, len(inputs), 96)]
    raise TranslationError("model", f"'{model_id}' is not a Bedrock embedding model this gateway knows "
                                    "(amazon.titan-embed-*, cohere.embed-*)")


def embedding_answers_to_openai(model_id: str, answers: list[dict], inputs: list[str]) -> dict:
    """InvokeModel answers in OpenAI's embedding list shape; tokens as Bedrock counts them (Titan),
    else 0 (Cohere says none)."""
    vectors, tokens = [], 0
    for answer in answers:
        if "embedding" in answer:
            vectors.append(answer["embedding"])
            tokens += int(answer.get("inputTextTokenCount") or 0)
        else:
            found = answer.get("embeddings")
            vectors.extend(found.get("float", []) if isinstance(found, dict) else found or [])
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": model_id,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
