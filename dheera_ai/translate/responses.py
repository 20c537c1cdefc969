"""Translate between the OpenAI Chat Completions and Responses wire formats, both ways.

Chat -> Responses serves a chat-completions call routed to a Responses-only upstream
(`azure/responses/<deployment>`): `chat_request_to_responses`, then `responses_response_to_chat`
or `ResponsesStreamToChat` on the way back.

Responses -> Chat serves `/v1/responses` against a deployment that only speaks chat completions:
`responses_request_to_chat`, then `chat_response_to_responses` or `ChatStreamToResponses`.

Everything here is pure: dicts in, dicts out, no I/O and no clock or randomness (item ids are
derived from the response id the caller passes). Anything without a faithful equivalent on the
other side raises ValueError, so the caller can answer 400 instead of silently changing meaning.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from dheera_ai.translate import client_input

__all__ = [
    "ChatStreamToResponses", "ResponsesStreamError", "ResponsesStreamToChat",
    "chat_request_to_responses", "chat_response_to_responses", "format_sse",
    "responses_request_to_chat", "responses_response_to_chat",
]

# Request fields spelled and meant the same in both APIs.
_SHARED_PARAMS = ("temperature", "top_p", "stream", "user", "parallel_tool_calls",
                  "safety_identifier", "prompt_cache_key", "service_tier")


class ResponsesStreamError(Exception):
    """A Responses stream ended in `response.failed` or an `error` event."""

    def __init__(self, code: str | None, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


# --- small shared helpers -------------------------------------------------------------------

def _text_of(content: Any) -> str:
    """Plain text of a string or a list of text/refusal parts (chat or Responses)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    # "" join, like the SDKs' `output_text`, which concatenates every output_text part.
    return "".join(p.get("text") or p.get("refusal") or "" for p in content if isinstance(p, dict))


def _flatten(obj: dict) -> dict:
    """Chat nests an object's payload under a key named after its type; Responses inlines it."""
    kind = obj.get("type")
    return {"type": kind, **obj[kind]} if isinstance(obj.get(kind), dict) else dict(obj)


def _nest(obj: dict) -> dict:
    """The inverse of _flatten: {"type": t, ...} -> {"type": t, t: {...}} (None values dropped)."""
    payload = {k: v for k, v in obj.items() if k != "type" and v is not None}
    return {"type": obj["type"], obj["type"]: payload} if payload else {"type": obj["type"]}


def _map_tool_choice(choice: Any, convert) -> Any:
    """tool_choice in the other API's shape; `convert` is _flatten or _nest."""
    if isinstance(choice, str):
        return choice
    kind = choice.get("type")
    if kind not in ("function", "allowed_tools"):
        raise ValueError(f"tool_choice type {kind!r} is not supported")
    out = convert(choice)
    # allowed_tools lists tool references, which nest/flatten like the choice itself.
    holder = out.get("allowed_tools", out) if kind == "allowed_tools" else {}
    if holder.get("tools"):
        holder["tools"] = [convert(t) if t.get("type") == "function" else t
                           for t in holder["tools"]]
    return out


def _function_tools(tools: list, convert) -> list:
    """Function tool definitions in the other API's shape; hosted and custom tools have none."""
    for tool in tools:
        if tool.get("type") != "function":
            raise ValueError(f"tool type {tool.get('type')!r} is not supported")
    return [convert(tool) for tool in tools]


def _item_id(prefix: str, response_id: str, index: int) -> str:
    """A stable item id (msg_/fc_/call_) unique within one response."""
    return f"{prefix}_{response_id.removeprefix('resp_')}_{index}"


def _finish_reason(resp: dict, has_calls: bool) -> str:
    """Chat finish_reason for a Response; a cut-off outranks tool calls (args may be partial)."""
    if resp.get("status") == "incomplete":
        reason = (resp.get("incomplete_details") or {}).get("reason")
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if has_calls else "stop"


def _status_from_finish(finish_reason: str | None) -> tuple[str, dict | None]:
    """Response status and incomplete_details for a chat finish_reason."""
    if finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish_reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def _usage_to_chat(usage: dict | None) -> dict | None:
    """Responses usage -> chat usage, keeping cached and reasoning token counts."""
    if not usage:
        return None
    prompt, completion = usage.get("input_tokens") or 0, usage.get("output_tokens") or 0
    out = {"prompt_tokens": prompt, "completion_tokens": completion,
           "total_tokens": usage.get("total_tokens") or prompt + completion}
    cached = (usage.get("input_tokens_details") or {}).get("cached_tokens")
    reasoning = (usage.get("output_tokens_details") or {}).get("reasoning_tokens")
    if cached is not None:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    if reasoning is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return out


def _usage_to_responses(usage: dict | None) -> dict | None:
    """Chat usage -> Responses usage; the spec requires both detail objects, so zeros fill gaps."""
    if not usage:
        return None
    prompt, completion = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
    details = usage.get("prompt_tokens_details") or {}
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens")
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": details.get("cached_tokens") or 0,
                                 "cache_write_tokens": details.get("cache_write_tokens") or 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning or 0},
        "total_tokens": usage.get("total_tokens") or prompt + completion,
    }


# --- chat request -> Responses request -------------------------------------------------------

@client_input
def chat_request_to_responses(body: dict, model: str) -> dict:
    """Build a Responses create body from a chat-completions body, for upstream `model`.

    Leading system/developer messages become `instructions`; later ones stay in place as input
    messages. `store` defaults to false: Chat Completions defaults it to false and Responses to
    true, and a chat client never asked for upstream retention (nor can it use the stored id).
    `stop`, `seed`, `logit_bias`, penalties and `logprobs` have no Responses equivalent and are
    dropped; `n > 1` raises ValueError because Responses returns exactly one output.
    """
    if (body.get("n") or 1) > 1:
        raise ValueError("n > 1 is not supported by the Responses API")
    instructions, messages = _split_instructions(body.get("messages") or [])
    out: dict = {"model": model, "input": _chat_messages_to_items(messages),
                 "store": bool(body.get("store", False))}
    if instructions:
        out["instructions"] = instructions
    for key in (*_SHARED_PARAMS, "metadata"):
        if body.get(key) is not None:
            out[key] = body[key]
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens:
        out["max_output_tokens"] = max_tokens
    if body.get("tools"):
        # Responses treats an omitted `strict` as true and rewrites the schema into strict mode;
        # chat's default is non-strict, so keep that meaning explicitly. `parameters` is
        # required (nullable) there; chat's "omitted" means an empty parameter list.
        out["tools"] = [{"parameters": {"type": "object", "properties": {}}, **tool,
                         "strict": bool(tool.get("strict"))}
                        for tool in _function_tools(body["tools"], _flatten)]
    if body.get("tool_choice") is not None:
        out["tool_choice"] = _map_tool_choice(body["tool_choice"], _flatten)
    if body.get("reasoning_effort"):
        out["reasoning"] = {"effort": body["reasoning_effort"]}
    text = {}
    if body.get("response_format"):
        text["format"] = _flatten(body["response_format"])
    if body.get("verbosity"):
        text["verbosity"] = body["verbosity"]
    if text:
        out["text"] = text
    return out


def _split_instructions(messages: list) -> tuple[str, list]:
    """Leading system/developer messages joined into instructions, and the rest."""
    lead = 0
    while lead < len(messages) and messages[lead].get("role") in ("system", "developer"):
        lead += 1
    return "\n\n".join(_text_of(m.get("content")) for m in messages[:lead]), messages[lead:]


def _chat_messages_to_items(messages: list) -> list:
    """Chat messages -> Responses input items (messages, function calls, call outputs)."""
    items: list = []
    for msg in messages:
        role = msg.get("role")
        if role == "tool":
            items.append({"type": "function_call_output", "call_id": msg.get("tool_call_id"),
                          "output": _text_of(msg.get("content"))})
        elif role == "assistant":
            # String content: the spec's input message parts are input_* only, and an output
            # message item would need an id the upstream has never seen.
            text = _text_of(msg.get("content")) or msg.get("refusal")
            if text:
                items.append({"type": "message", "role": "assistant", "content": text})
            for call in msg.get("tool_calls") or []:
                fn = call.get("function") or {}
                items.append({"type": "function_call", "call_id": call.get("id"),
                              "name": fn.get("name"), "arguments": fn.get("arguments") or ""})
        elif role in ("user", "system", "developer"):
            content = msg.get("content") or ""
            if not isinstance(content, str):
                content = [_chat_part_to_responses(part) for part in content]
            items.append({"type": "message", "role": role, "content": content})
        else:
            raise ValueError(f"unsupported chat message role: {role!r}")
    return items


def _chat_part_to_responses(part: dict) -> dict:
    """One chat content part -> input_text / input_image / input_file."""
    kind = part.get("type")
    if kind == "text":
        return {"type": "input_text", "text": part.get("text", "")}
    if kind == "image_url":
        image = part.get("image_url") or {}
        image = {"url": image} if isinstance(image, str) else image  # a common non-spec shorthand
        # `detail` is required on input_image; "auto" is the chat default.
        return {"type": "input_image", "image_url": image.get("url"),
                "detail": image.get("detail") or "auto"}
    if kind == "file":
        file = part.get("file") or {}
        return {"type": "input_file",
                **{k: file[k] for k in ("file_id", "file_data", "filename") if file.get(k)}}
    raise ValueError(f"chat content part {kind!r} has no Responses equivalent")


# --- Responses response -> chat completion ---------------------------------------------------

def responses_response_to_chat(resp: dict, created: int | None = None) -> dict:
    """Build a chat.completion from a Response object.

    Text is every output_text part of every message item, in order; reasoning items have no
    chat equivalent and are skipped.
    """
    texts, refusals, calls = [], [], []
    for item in resp.get("output") or []:
        if item.get("type") == "message":
            for part in item.get("content") or []:
                if part.get("type") == "output_text":
                    texts.append(part.get("text") or "")
                elif part.get("type") == "refusal":
                    refusals.append(part.get("refusal") or "")
        elif item.get("type") == "function_call":
            calls.append({"id": item.get("call_id"), "type": "function",
                          "function": {"name": item.get("name"),
                                       "arguments": item.get("arguments") or ""}})
    message: dict = {"role": "assistant", "content": "".join(texts) if texts else None,
                     "refusal": "".join(refusals) if refusals else None}
    if calls:
        message["tool_calls"] = calls
    chat = {"id": resp.get("id"), "object": "chat.completion",
            "created": created if created is not None else int(resp.get("created_at") or 0),
            "model": resp.get("model"),
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": _finish_reason(resp, bool(calls))}]}
    usage = _usage_to_chat(resp.get("usage"))
    if usage:
        chat["usage"] = usage
    return chat


class ResponsesStreamToChat:
    """Turns one Responses event stream into chat.completion.chunk dicts (a single choice).

    Usage always arrives with the final Responses event; send `usage_chunk()` after the last
    chunk only if the chat client asked for it (`stream_options.include_usage`).
    """

    def __init__(self, model: str, created: int):
        self.model = model
        self.created = created
        self.id = "chatcmpl-responses"  # replaced by the response id on response.created
        self._role_sent = False
        # output_index -> [chat tool index, arguments streamed so far]; output_index because
        # every function-call event carries it, while item ids are optional on some upstreams.
        self._calls: dict[int, list] = {}
        self._usage: dict | None = None

    @property
    def usage(self) -> dict | None:
        """Chat-style usage from the final response event, once seen."""
        return self._usage

    def feed(self, event: str, data: dict) -> list[dict]:
        """Chunks for one event; raises ResponsesStreamError on failure events."""
        event = event or data.get("type", "")
        if event == "error":
            raise ResponsesStreamError(data.get("code"), data.get("message") or "stream error")
        if event == "response.failed":
            error = (data.get("response") or {}).get("error") or {}
            raise ResponsesStreamError(error.get("code"), error.get("message") or "response failed")
        if event == "response.created":
            self.id = (data.get("response") or {}).get("id") or self.id
            return self._role()
        if event == "response.output_text.delta":
            return self._role() + [self._chunk({"content": data.get("delta", "")})]
        if event == "response.refusal.delta":
            return self._role() + [self._chunk({"refusal": data.get("delta", "")})]
        item = data.get("item") or {}
        if event == "response.output_item.added" and item.get("type") == "function_call":
            return self._call_started(data["output_index"], item)
        if event == "response.function_call_arguments.delta":
            return self._arguments(data["output_index"], data.get("delta", ""))
        if event == "response.function_call_arguments.done":
            return self._arguments_done(data["output_index"], data.get("arguments"))
        if event == "response.output_item.done" and item.get("type") == "function_call":
            return self._arguments_done(data["output_index"], item.get("arguments"))
        if event in ("response.completed", "response.incomplete"):
            resp = data.get("response") or {}
            self._usage = _usage_to_chat(resp.get("usage"))
            return self._role() + [self._chunk({}, _finish_reason(resp, bool(self._calls)))]
        return []  # lifecycle, content-part and reasoning events carry nothing for chat

    def usage_chunk(self) -> dict | None:
        """The trailing `choices: []` chunk with usage (stream_options.include_usage style)."""
        if self._usage is None:
            return None
        return {**self._chunk({}), "choices": [], "usage": self._usage}

    def _chunk(self, delta: dict, finish_reason: str | None = None) -> dict:
        """One chunk around a delta."""
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                  "finish_reason": finish_reason}]}

    def _role(self) -> list[dict]:
        """The opening role chunk, once."""
        if self._role_sent:
            return []
        self._role_sent = True
        return [self._chunk({"role": "assistant", "content": ""})]

    def _call_started(self, output_index: int, item: dict) -> list[dict]:
        """First tool_call delta: index, id, name (and any arguments already present)."""
        index = len(self._calls)
        arguments = item.get("arguments") or ""
        self._calls[output_index] = [index, arguments]
        return self._role() + [self._chunk({"tool_calls": [{
            "index": index, "id": item.get("call_id"), "type": "function",
            "function": {"name": item.get("name"), "arguments": arguments}}]})]

    def _arguments(self, output_index: int, delta: str) -> list[dict]:
        """An arguments delta for a known call."""
        call = self._calls.get(output_index)
        if call is None or not delta:
            return []
        call[1] += delta
        return [self._chunk({"tool_calls": [{"index": call[0], "function": {"arguments": delta}}]})]

    def _arguments_done(self, output_index: int, arguments: str | None) -> list[dict]:
        """Send what the deltas missed: some upstreams put arguments only on .done events."""
        call = self._calls.get(output_index)
        if call is None or not arguments or not arguments.startswith(call[1]):
            return []
        return self._arguments(output_index, arguments[len(call[1]):])


# --- Responses request -> chat request -------------------------------------------------------

@client_input
def responses_request_to_chat(body: dict) -> dict:
    """Build a chat-completions body from a Responses create body.

    `previous_response_id` and `conversation` are not handled here: the caller must resolve
    the stored history and prepend it to `input` before calling this. `instructions` becomes
    a leading system message; developer-role messages also become system messages, the role
    every chat backend accepts (OpenAI treats it as developer for reasoning models). When
    streaming, usage is requested because every Response reports it.
    """
    messages = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        messages.append({"role": "system", "content": body["instructions"]})
    messages += _responses_input_to_messages(body.get("input"))
    chat: dict = {"model": body.get("model"), "messages": messages}
    for key in _SHARED_PARAMS:
        if body.get(key) is not None:
            chat[key] = body[key]
    if body.get("stream"):
        chat["stream_options"] = {"include_usage": True}
    if body.get("max_output_tokens") is not None:
        # max_tokens is deprecated in the chat spec and refused by reasoning models.
        chat["max_completion_tokens"] = body["max_output_tokens"]
    if body.get("tools"):
        chat["tools"] = _function_tools(body["tools"], _nest)
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _map_tool_choice(body["tool_choice"], _nest)
    effort = (body.get("reasoning") or {}).get("effort")
    if effort:
        chat["reasoning_effort"] = effort
    text = body.get("text") or {}
    if text.get("format"):
        chat["response_format"] = _nest(text["format"])
    if text.get("verbosity"):
        chat["verbosity"] = text["verbosity"]
    return chat


def _responses_input_to_messages(input_: Any) -> list:
    """Responses `input` (string or item list) -> chat messages."""
    if input_ is None:
        return []
    if isinstance(input_, str):
        return [{"role": "user", "content": input_}]
    messages: list = []
    for item in input_:
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_responses_message_to_chat(item))
        elif kind == "function_call":
            _append_tool_call(messages, item)
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"),
                             "content": _tool_output_text(item.get("output"))})
        elif kind != "reasoning":  # reasoning items have nowhere to go in a chat request
            raise ValueError(f"Responses input item {kind!r} is not supported for this model")
    return messages


def _responses_message_to_chat(item: dict) -> dict:
    """One message item -> one chat message."""
    role = "system" if item.get("role") == "developer" else item.get("role")
    content = item.get("content")
    if isinstance(content, str) or content is None:
        return {"role": role, "content": content or ""}
    if role == "assistant":
        message = {"role": role, "content": "".join(
            p.get("text") or "" for p in content if p.get("type") in ("output_text", "input_text"))}
        refusal = "".join(p.get("refusal") or "" for p in content if p.get("type") == "refusal")
        if refusal:
            message["refusal"] = refusal
        return message
    parts = [_responses_part_to_chat(part) for part in content]
    if all(part["type"] == "text" for part in parts):
        return {"role": role, "content": "".join(part["text"] for part in parts)}
    return {"role": role, "content": parts}


def _responses_part_to_chat(part: dict) -> dict:
    """One Responses input content part -> a chat content part."""
    kind = part.get("type")
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": part.get("text", "")}
    if kind == "input_image" and part.get("image_url"):
        image = {"url": part["image_url"]}
        if part.get("detail") in ("auto", "low", "high"):  # the chat enum lacks "original"
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file" and not part.get("file_url"):
        return {"type": "file",
                "file": {k: part[k] for k in ("file_id", "file_data", "filename") if part.get(k)}}
    # input_image by file_id and input_file by file_url have no chat form either.
    raise ValueError(f"Responses content part {kind!r} has no chat equivalent")


def _append_tool_call(messages: list, item: dict) -> None:
    """Attach a function_call item to the turn's assistant message, creating it if needed."""
    call = {"id": item.get("call_id"), "type": "function",
            "function": {"name": item.get("name"), "arguments": item.get("arguments") or ""}}
    # Responses lists a turn's text and each parallel call as separate items; chat wants them on
    # one assistant message, and the turn is still open while the last message is the assistant's.
    if messages and messages[-1].get("role") == "assistant":
        messages[-1].setdefault("tool_calls", []).append(call)
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _tool_output_text(output: Any) -> str:
    """function_call_output.output (string or parts) -> chat tool message text."""
    if isinstance(output, str) or output is None:
        return output or ""
    if any(part.get("type") != "input_text" for part in output):
        raise ValueError("only text function_call_output content can be sent to a chat model")
    return _text_of(output)


# --- chat completion -> Response object ------------------------------------------------------

def _response_object(request: dict, response_id: str, created_at: int, status: str,
                     output: list, usage: dict | None, incomplete: dict | None = None) -> dict:
    """A Response object echoing the request's settings the way the real API does."""
    reasoning = request.get("reasoning") or {}
    text = request.get("text") or {}
    resp = {
        "id": response_id, "object": "response", "created_at": created_at, "status": status,
        "error": None, "incomplete_details": incomplete,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": request.get("model"), "output": output,
        "parallel_tool_calls": request.get("parallel_tool_calls") is not False,
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": request.get("store") is not False,
        # The spec's defaults, which the real API echoes when the request left them out.
        "temperature": request.get("temperature", 1.0),
        "top_p": request.get("top_p", 1.0),
        "text": {**text, "format": text.get("format") or {"type": "text"}},
        "tool_choice": request.get("tool_choice") or "auto",
        "tools": request.get("tools") or [],
        "truncation": request.get("truncation") or "disabled",
        "metadata": request.get("metadata") or {},
    }
    # `usage` and `user` are non-nullable in the spec: leave them out rather than send null.
    if usage is not None:
        resp["usage"] = usage
    if request.get("user") is not None:
        resp["user"] = request["user"]
    return resp


def _empty_part(kind: str) -> dict:
    """An empty output_text or refusal content part."""
    if kind == "output_text":
        return {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    return {"type": "refusal", "refusal": ""}


def chat_response_to_responses(chat: dict, request: dict, response_id: str,
                               created_at: int) -> dict:
    """Build a complete Response object from a chat.completion answering `request`.

    finish_reason "length" / "content_filter" give status "incomplete" with that reason.
    The completion is replayed as one chunk through ChatStreamToResponses, so streamed and
    non-streamed Responses are built by the same code and cannot drift apart.
    """
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    calls = [{**call, "index": i} for i, call in enumerate(message.get("tool_calls") or [])]
    delta = {"content": _text_of(message.get("content")), "refusal": message.get("refusal"),
             "tool_calls": calls}
    stream = ChatStreamToResponses(request, response_id, created_at)
    stream.feed({"choices": [{"index": 0, "delta": delta,
                              "finish_reason": choice.get("finish_reason")}],
                 "usage": chat.get("usage")})
    return stream.finish()[-1][1]["response"]


class ChatStreamToResponses:
    """Turns chat.completion.chunk dicts into named Responses stream events.

    Items stay open until finish(): chat backends may interleave deltas of parallel tool
    calls, and an item cannot take deltas after its .done event.
    """

    def __init__(self, request: dict, response_id: str, created_at: int):
        self.request = request
        self.response_id = response_id
        self.created_at = created_at
        self._sequence = 0
        self._items: list[dict] = []  # output items in output_index order, grown by deltas
        self._message_index: int | None = None
        self._part_index: dict[str, int] = {}  # "output_text"/"refusal" -> content_index
        self._call_index: dict[int, int] = {}  # chat tool_call index -> output_index
        self._finish_reason: str | None = None
        self._usage: dict | None = None

    def start(self) -> list[tuple[str, dict]]:
        """response.created and response.in_progress."""
        return [self._event("response.created", response=self._snapshot("in_progress")),
                self._event("response.in_progress", response=self._snapshot("in_progress"))]

    def feed(self, chunk: dict) -> list[tuple[str, dict]]:
        """Events for one chat chunk (usage-only chunks are remembered for finish())."""
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        events: list = []
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue  # a Response has one output; other choices cannot be represented
            delta = choice.get("delta") or {}
            if delta.get("content"):
                events += self._text_delta("output_text", delta["content"])
            if delta.get("refusal"):
                events += self._text_delta("refusal", delta["refusal"])
            for call in delta.get("tool_calls") or []:
                events += self._tool_delta(call)
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
        return events

    def finish(self) -> list[tuple[str, dict]]:
        """The .done events for every item, then response.completed (or .incomplete)."""
        status, incomplete = _status_from_finish(self._finish_reason)
        events = []
        for output_index, item in enumerate(self._items):
            item["status"] = "completed" if status == "completed" else "incomplete"
            where = {"item_id": item["id"], "output_index": output_index}
            if item["type"] == "message":
                for content_index, part in enumerate(item["content"]):
                    kind = part["type"]
                    value = {"text": part["text"], "logprobs": []} if kind == "output_text" \
                        else {"refusal": part["refusal"]}
                    events.append(self._event(f"response.{kind}.done", **where,
                                              content_index=content_index, **value))
                    events.append(self._event("response.content_part.done", **where,
                                              content_index=content_index,
                                              part=copy.deepcopy(part)))
            else:
                events.append(self._event("response.function_call_arguments.done", **where,
                                          name=item["name"], arguments=item["arguments"]))
            events.append(self._event("response.output_item.done", output_index=output_index,
                                      item=copy.deepcopy(item)))
        # The spec has a distinct terminal event for a response that finished as incomplete.
        final = "response.completed" if status == "completed" else "response.incomplete"
        events.append(self._event(final, response=self._snapshot(status, incomplete)))
        return events

    def _event(self, kind: str, **fields: Any) -> tuple[str, dict]:
        """A named event with the next sequence_number."""
        data = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return kind, data

    def _snapshot(self, status: str, incomplete: dict | None = None) -> dict:
        """The Response object as of now (a copy: items keep growing after this)."""
        usage = _usage_to_responses(self._usage) if status != "in_progress" else None
        return _response_object(self.request, self.response_id, self.created_at, status,
                                 copy.deepcopy(self._items), usage, incomplete)

    def _text_delta(self, kind: str, text: str) -> list[tuple[str, dict]]:
        """Open the message item / content part as needed, then one delta event."""
        events = []
        if self._message_index is None:
            self._message_index = len(self._items)
            self._items.append({"id": _item_id("msg", self.response_id, self._message_index),
                                "type": "message", "status": "in_progress", "role": "assistant",
                                "content": []})
            events.append(self._event("response.output_item.added", output_index=self._message_index,
                                      item=copy.deepcopy(self._items[-1])))
        item = self._items[self._message_index]
        where = {"item_id": item["id"], "output_index": self._message_index}
        if kind not in self._part_index:
            self._part_index[kind] = len(item["content"])
            item["content"].append(_empty_part(kind))
            events.append(self._event("response.content_part.added", **where,
                                      content_index=self._part_index[kind], part=_empty_part(kind)))
        content_index = self._part_index[kind]
        item["content"][content_index]["text" if kind == "output_text" else "refusal"] += text
        extra = {"logprobs": []} if kind == "output_text" else {}
        events.append(self._event(f"response.{kind}.delta", **where, content_index=content_index,
                                  delta=text, **extra))
        return events

    def _tool_delta(self, call: dict) -> list[tuple[str, dict]]:
        """Open a function_call item on a new tool index, then an arguments delta if any."""
        events = []
        fn = call.get("function") or {}
        if call.get("index", 0) not in self._call_index:
            output_index = len(self._items)
            self._call_index[call.get("index", 0)] = output_index
            self._items.append({
                "id": _item_id("fc", self.response_id, output_index), "type": "function_call",
                "status": "in_progress",
                # Chat servers that omit the call id still need a call_id to pair outputs with.
                "call_id": call.get("id") or _item_id("call", self.response_id, output_index),
                "name": fn.get("name") or "", "arguments": ""})
            events.append(self._event("response.output_item.added", output_index=output_index,
                                      item=copy.deepcopy(self._items[-1])))
        output_index = self._call_index[call.get("index", 0)]
        item = self._items[output_index]
        if fn.get("name") and not item["name"]:
            item["name"] = fn["name"]  # some servers send the name after the id
        if fn.get("arguments"):
            item["arguments"] += fn["arguments"]
            events.append(self._event("response.function_call_arguments.delta", item_id=item["id"],
                                      output_index=output_index, delta=fn["arguments"]))
        return events


def format_sse(event: str, data: dict) -> bytes:
    """One named server-sent event: `event: X`, `data: {json}`, blank line."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}\ndata: {payload}\n\n".encode()
