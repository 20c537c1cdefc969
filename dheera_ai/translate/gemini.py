"""Translate between OpenAI chat/embeddings and Google AI Studio's Generative Language API
(v1beta); pure functions over JSON dicts, no I/O. Shapes follow ai.google.dev/api.

Upstream, base ``https://generativelanguage.googleapis.com``, key in the ``x-goog-api-key``
header (not ``?key=``, which leaks into URL logs): ``POST {base}/v1beta/models/{model}:``
``generateContent``, ``streamGenerateContent?alt=sse`` (each SSE ``data:`` is a whole
GenerateContentResponse) and ``batchEmbedContents``.
"""

from __future__ import annotations

import json
import re
import uuid

from dheera_ai.translate import UnsupportedParamError, client_input


class GeminiContentBlockedError(Exception):
    """Gemini refused the prompt itself (``promptFeedback.blockReason``): no candidates."""

    def __init__(self, reason: str):
        super().__init__(f"prompt blocked by Gemini: {reason}")
        self.reason = reason


_GENERATION = {"temperature": "temperature", "top_p": "topP", "top_k": "topK", "seed": "seed",
               "n": "candidateCount", "presence_penalty": "presencePenalty",
               "frequency_penalty": "frequencyPenalty"}
_KNOWN = {"model", "messages", "tools", "tool_choice", "response_format", "stop", "max_tokens",
          "max_completion_tokens", *_GENERATION,  # then what the gateway itself takes care of:
          "stream", "stream_options", "user", "metadata", "store"}
_NEUTRAL = {"logprobs": False, "parallel_tool_calls": True}  # explicit defaults change nothing
_TOOL_CHOICE = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
_MIME_BY_EXT = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif",
                "webp": "image/webp", "heic": "image/heic", "heif": "image/heif"}
# MALFORMED_FUNCTION_CALL, LANGUAGE, OTHER, ... have no OpenAI counterpart and read as "stop".
_FILTERED = ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY")
_FINISH = {"STOP": "stop", "MAX_TOKENS": "length", **dict.fromkeys(_FILTERED, "content_filter")}


@client_input
def chat_request_to_gemini(body: dict, *, drop_unsupported: bool = False) -> dict:
    """Build a ``generateContent`` body from an OpenAI chat request.

    Parameters Gemini cannot honour raise ``UnsupportedParamError`` unless ``drop_unsupported``.
    Tool schemas and ``json_schema`` formats go in ``parametersJsonSchema`` and
    ``responseJsonSchema``, which take real JSON Schema: ``parameters``/``responseSchema`` take
    an OpenAPI subset that rejects keywords OpenAI clients send (``additionalProperties``).
    """
    for key, value in body.items():
        if key in _KNOWN or value is None or _NEUTRAL.get(key, object()) == value:
            continue
        if not drop_unsupported:
            raise UnsupportedParamError(key)
    system, contents = _contents(body.get("messages") or [])
    out: dict = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    if body.get("tools"):
        out["tools"] = [{"functionDeclarations": [_declaration(t) for t in body["tools"]]}]
    choice = body.get("tool_choice")
    if isinstance(choice, str) and choice in _TOOL_CHOICE:
        out["toolConfig"] = {"functionCallingConfig": {"mode": _TOOL_CHOICE[choice]}}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        out["toolConfig"] = {"functionCallingConfig": {
            "mode": "ANY", "allowedFunctionNames": [choice["function"]["name"]]}}
    elif choice is not None:
        raise UnsupportedParamError("tool_choice", f"tool_choice {choice!r} is not supported")
    config = {g: body[k] for k, g in _GENERATION.items() if body.get(k) is not None}
    if body.get("max_completion_tokens") or body.get("max_tokens"):
        config["maxOutputTokens"] = body.get("max_completion_tokens") or body["max_tokens"]
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    fmt = body.get("response_format") or {"type": "text"}
    if fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise UnsupportedParamError("response_format", f"response_format {fmt!r} is not supported")
    if fmt["type"] != "text":
        config["responseMimeType"] = "application/json"
    if (fmt.get("json_schema") or {}).get("schema"):
        config["responseJsonSchema"] = fmt["json_schema"]["schema"]
    if config:
        out["generationConfig"] = config
    return out


def _contents(messages: list) -> tuple[list, list]:
    """Split OpenAI messages into (systemInstruction parts, contents), merging same-role turns."""
    system, contents, call_names = [], [], {}
    for i, msg in enumerate(messages):
        role, where = msg.get("role"), f"messages[{i}]"
        if role in ("system", "developer"):  # hoisted from anywhere: Gemini has one instruction
            system.extend(_parts(msg.get("content"), where, text_only=True))
            continue
        if role == "user":
            turn, parts = "user", _parts(msg.get("content"), where)
        elif role == "assistant":
            turn, parts = "model", _assistant_parts(msg, call_names, where)
        elif role == "tool":  # results travel in a user turn; parallel ones merge into one
            turn, parts = "user", [_function_response(msg, call_names, where)]
        else:
            raise UnsupportedParamError("messages", f"{where}: role {role!r} is not supported")
        if contents and parts and contents[-1]["role"] == turn:
            contents[-1]["parts"].extend(parts)
        elif parts:
            contents.append({"role": turn, "parts": parts})
    return system, contents


def _parts(content, where: str, text_only: bool = False) -> list[dict]:
    """Gemini parts for message content: text, plus images and audio unless ``text_only``."""
    if content is None or isinstance(content, str):
        return [{"text": content}] if content else []
    parts = []
    for p in content:
        kind = p.get("type")
        if kind == "text":
            parts.append({"text": p["text"]})
        elif text_only:
            raise UnsupportedParamError("messages", f"{where}: only text is allowed here")
        elif kind == "image_url":
            parts.append(_media(p["image_url"]["url"], where))
        elif kind == "input_audio":  # OpenAI's wav/mp3 are both Gemini audio MIME types
            audio = p["input_audio"]
            mime = f"audio/{audio['format']}"
            parts.append({"inlineData": {"mimeType": mime, "data": audio["data"]}})
        else:
            raise UnsupportedParamError("messages", f"{where}: content part {kind!r} unsupported")
    return parts


def _media(url: str, where: str) -> dict:
    """A base64 data: URL becomes inlineData; any other URL is referenced as fileData."""
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        if not header.endswith(";base64"):
            raise UnsupportedParamError("messages", f"{where}: data URLs must be base64")
        return {"inlineData": {"mimeType": header[5:].split(";")[0], "data": data}}
    # A fixed table, not the mimetypes module, which reads system files on first use.
    ext = url.split("?")[0].split("#")[0].rsplit(".", 1)[-1].lower()
    return {"fileData": {"mimeType": _MIME_BY_EXT[ext], "fileUri": url}
            if ext in _MIME_BY_EXT else {"fileUri": url}}


def _assistant_parts(msg: dict, call_names: dict, where: str) -> list[dict]:
    """Model-turn parts: text, then one functionCall part per tool call."""
    parts = [p for p in _parts(msg.get("content"), where, text_only=True) if p["text"]]
    for j, call in enumerate(msg.get("tool_calls") or []):
        fn = call.get("function") or {}
        call_names[call.get("id")] = fn.get("name")
        try:
            args = json.loads(fn.get("arguments") or "{}")
        except json.JSONDecodeError:
            args = None
        if not isinstance(args, dict):
            raise UnsupportedParamError("messages", f"{where}: tool arguments must be an object")
        part: dict = {"functionCall": {"name": fn.get("name"), "args": args}}
        # Gemini signs the first call of a parallel set and Gemini 3 rejects unsigned calls;
        # clients keep it in extra_content.google.thought_signature (Google's OpenAI-compat
        # convention), and history without one gets the bypass value Google documents.
        signature = ((call.get("extra_content") or {}).get("google") or {}).get("thought_signature")
        if signature or j == 0:
            part["thoughtSignature"] = signature or "skip_thought_signature_validator"
        parts.append(part)
    return parts


def _function_response(msg: dict, call_names: dict, where: str) -> dict:
    """A tool message as a functionResponse part, named after its assistant tool call."""
    name = call_names.get(msg.get("tool_call_id"))
    if name is None:
        raise UnsupportedParamError("messages", f"{where}: tool_call_id matches no tool call")
    text = "".join(p["text"] for p in _parts(msg.get("content"), where, text_only=True))
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    # response must be a JSON object; Google documents "output" as the key for a plain result.
    response = value if isinstance(value, dict) else {"output": value}
    return {"functionResponse": {"name": name, "response": response}}


def _declaration(tool: dict) -> dict:
    """One OpenAI function tool as a Gemini FunctionDeclaration."""
    if tool.get("type") != "function":
        raise UnsupportedParamError("tools", f"tool type {tool.get('type')!r} is not supported")
    fn = tool["function"]
    out = {"name": fn["name"], "description": fn.get("description"),
           "parametersJsonSchema": fn.get("parameters")}
    return {k: v for k, v in out.items() if v}


def _candidates(resp: dict):
    """Yield (choice index, candidate, text, tool_calls); raise if the prompt was blocked."""
    reason = (resp.get("promptFeedback") or {}).get("blockReason")
    if reason and not resp.get("candidates"):
        raise GeminiContentBlockedError(reason)
    for pos, cand in enumerate(resp.get("candidates") or []):
        parts = (cand.get("content") or {}).get("parts") or []  # thought summaries aren't answers
        text = "".join(p["text"] for p in parts if "text" in p and not p.get("thought"))
        calls = [_tool_call(p) for p in parts if "functionCall" in p]
        yield cand.get("index", pos), cand, text, calls


def _tool_call(part: dict) -> dict:
    """A functionCall part as an OpenAI tool call; its thought signature rides in extra_content."""
    fc = part["functionCall"]
    call = {"id": fc.get("id") or f"call_{uuid.uuid4().hex[:24]}", "type": "function",
            "function": {"name": fc.get("name", ""),
                         "arguments": json.dumps(fc.get("args") or {}, ensure_ascii=False)}}
    if part.get("thoughtSignature"):
        call["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
    return call


def _usage(meta: dict) -> dict:
    """usageMetadata -> OpenAI usage; thinking tokens are completion tokens, as in OpenAI."""
    prompt = meta.get("promptTokenCount", 0) + meta.get("toolUsePromptTokenCount", 0)
    thoughts = meta.get("thoughtsTokenCount", 0)
    completion = meta.get("candidatesTokenCount", 0) + thoughts
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": meta.get("totalTokenCount", prompt + completion),
            # promptTokenCount already includes the cached tokens
            "prompt_tokens_details": {"cached_tokens": meta.get("cachedContentTokenCount", 0)},
            "completion_tokens_details": {"reasoning_tokens": thoughts}}


def gemini_response_to_chat(resp: dict, model: str, created: int, response_id: str) -> dict:
    """Turn a GenerateContentResponse into an OpenAI ``chat.completion``.

    Raises ``GeminiContentBlockedError`` when the prompt itself was blocked; a filtered
    candidate ends with ``finish_reason: "content_filter"``.
    """
    choices = []
    for idx, cand, text, calls in _candidates(resp):
        message: dict = {"role": "assistant", "content": text or (None if calls else "")}
        if calls:
            message["tool_calls"] = calls
        # Gemini reports STOP after a function call too.
        finish = "tool_calls" if calls else _FINISH.get(cand.get("finishReason"), "stop")
        choices.append({"index": idx, "message": message, "logprobs": None,
                        "finish_reason": finish})
    out = {"id": response_id, "object": "chat.completion", "created": created, "model": model,
           "choices": choices}
    if resp.get("usageMetadata"):
        out["usage"] = _usage(resp["usageMetadata"])
    return out


class GeminiStreamToChat:
    """Turns ``streamGenerateContent?alt=sse`` events into ``chat.completion.chunk`` dicts.

    Text arrives as deltas but each functionCall whole, so every tool call is one complete delta.
    usageMetadata is cumulative: the last one seen is the total.
    """

    def __init__(self, model: str, created: int, response_id: str):
        self.model, self.created, self.response_id = model, created, response_id
        self._usage_meta: dict | None = None
        self._tool_count: dict = {}  # choice index -> tool calls emitted; absent until started

    def _chunk(self, choices: list) -> dict:
        """A chat.completion.chunk envelope around ``choices``."""
        return {"id": self.response_id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": choices}

    def feed(self, data: dict) -> list[dict]:
        """Chunks for one SSE event: role first, then content and tool calls, then the finish."""
        out = []
        for idx, cand, text, calls in _candidates(data):
            delta: dict = {} if idx in self._tool_count else {"role": "assistant"}
            done = self._tool_count.setdefault(idx, 0)
            if text:
                delta["content"] = text
            if calls:
                delta["tool_calls"] = [{"index": done + k, **c} for k, c in enumerate(calls)]
                self._tool_count[idx] = done + len(calls)
            reason, called = cand.get("finishReason"), self._tool_count[idx] > 0
            finish = reason and ("tool_calls" if called else _FINISH.get(reason, "stop"))
            for d, f in ((delta, None), ({}, finish)):
                if d or f:
                    out.append(self._chunk([{"index": idx, "delta": d, "logprobs": None,
                                             "finish_reason": f}]))
        self._usage_meta = data.get("usageMetadata") or self._usage_meta
        return out

    @property
    def usage(self) -> dict | None:
        """OpenAI usage from the last usageMetadata seen, or None."""
        return _usage(self._usage_meta) if self._usage_meta else None

    def usage_chunk(self) -> dict:
        """The trailing ``choices: []`` chunk OpenAI sends for ``stream_options.include_usage``."""
        return {**self._chunk([]), "usage": self.usage}


def embedding_request_to_gemini(inputs: list[str], model: str, dimensions: int | None = None,
                                task_type: str | None = None) -> dict:
    """A ``batchEmbedContents`` body: one EmbedContentRequest per input string."""
    name = model if model.startswith("models/") else f"models/{model}"
    extra: dict = {} if dimensions is None else {"outputDimensionality": dimensions}
    if task_type:  # RETRIEVAL_QUERY, RETRIEVAL_DOCUMENT, SEMANTIC_SIMILARITY, CLUSTERING, ...
        extra["taskType"] = task_type.upper()
    return {"requests": [{"model": name, "content": {"parts": [{"text": t}]}, **extra}
                         for t in inputs]}


def gemini_embeddings_to_openai(resp: dict, model: str) -> dict:
    """A BatchEmbedContentsResponse in the OpenAI embedding list shape."""
    data = [{"object": "embedding", "index": i, "embedding": e.get("values", [])}
            for i, e in enumerate(resp.get("embeddings") or [])]
    # batchEmbedContents reports no token counts, so usage is 0 rather than an invented
    # number; the gateway may substitute its own estimate from the inputs.
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": 0, "total_tokens": 0}}


# Google's canonical status names first; the HTTP status when the body has none (a proxy page).
_KINDS = {"INVALID_ARGUMENT": "bad_request", "FAILED_PRECONDITION": "bad_request",
          "OUT_OF_RANGE": "bad_request", "UNAUTHENTICATED": "authentication",
          "PERMISSION_DENIED": "permission", "NOT_FOUND": "not_found", "INTERNAL": "server",
          "RESOURCE_EXHAUSTED": "rate_limit", "DEADLINE_EXCEEDED": "timeout",
          "CANCELLED": "timeout", "UNAVAILABLE": "unavailable", 401: "authentication",
          403: "permission", 404: "not_found", 408: "timeout", 429: "rate_limit",
          503: "unavailable", 504: "timeout"}
_TOKEN_LIMIT = re.compile(r"token count.*exceeds|exceeds the maximum number of tokens"
                          r"|too many tokens|context (length|window)", re.I | re.S)


def gemini_error_to_status(body: dict, http_status: int) -> tuple[str, str]:
    """(error class, message) from Google's ``{error: {code, message, status}}`` body."""
    error = (body or {}).get("error") or {}
    error = error if isinstance(error, dict) else {"message": str(error)}
    message = error.get("message") or f"Gemini API error (HTTP {http_status})"
    reasons = {d.get("reason") for d in error.get("details") or [] if isinstance(d, dict)}
    # A bad key comes back as 400 INVALID_ARGUMENT, so the reason/message decide.
    if "API_KEY_INVALID" in reasons or re.search(r"API key (not valid|expired)", message, re.I):
        return "authentication", message
    if http_status in (400, 413) and _TOKEN_LIMIT.search(message):
        return "context_window", message
    if "location is not supported" in message:  # FAILED_PRECONDITION for a blocked region
        return "permission", message
    kind = _KINDS.get(error.get("status")) or _KINDS.get(http_status)
    return kind or ("server" if http_status >= 500 else "bad_request"), message
