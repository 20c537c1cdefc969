"""Where the text is: the strings of a request or an answer a guardrail reads (and may change),
and a streamed answer's text, held back by a sliding window.
"""

from __future__ import annotations

import orjson

# Request fields that carry what the model reads, in every family the gateway serves
# (chat `messages`, completions `prompt`, embeddings / moderations / Responses `input`,
# Anthropic `system`, Responses `instructions`).
REQUEST_FIELDS = ("messages", "prompt", "input", "system", "instructions")
# Answer fields that carry what the model wrote (chat, completions, Responses, Anthropic).
ANSWER_FIELDS = frozenset({"content", "text", "arguments", "refusal"})
# Keys whose strings are structure, not text.
NOT_TEXT = frozenset({"role", "type", "name", "id", "tool_call_id", "call_id", "image_url", "url", "detail",
                      "format", "cache_control", "model", "status", "media_type", "data", "file_id", "signature",
                      "object", "finish_reason", "stop_reason", "logprobs", "annotations"})


class Slot:
    """One string inside a JSON document, readable and replaceable in place."""

    __slots__ = ("container", "key")

    def __init__(self, container, key):
        self.container, self.key = container, key

    def get(self) -> str:
        return self.container[self.key]

    def set(self, value: str) -> None:
        self.container[self.key] = value


def request_slots(body: dict) -> list[Slot]:
    slots: list[Slot] = []
    for name in REQUEST_FIELDS:
        if name in body:
            _collect(body, name, slots, answer=False)
    return slots


def answer_slots(document) -> list[Slot]:
    slots: list[Slot] = []
    if isinstance(document, dict):
        for key in list(document):
            _collect(document, key, slots, answer=True)
    return slots


def _collect(container, key, slots, answer: bool, depth: int = 0) -> None:
    value = container[key]
    if depth > 64:  # a document nested deeper holds no text a model reads
        return
    if isinstance(value, str):
        if not answer or key in ANSWER_FIELDS:
            slots.append(Slot(container, key))
    elif isinstance(value, dict):
        for child in list(value):
            if child not in NOT_TEXT:
                _collect(value, child, slots, answer, depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if not isinstance(item, str):
                _collect(value, index, slots, answer, depth + 1)
            elif not answer or key in ANSWER_FIELDS:  # a prompt list, embeddings input
                slots.append(Slot(value, index))


def replaced(text: str, findings, placeholder) -> str:
    """`text` with each finding's span replaced (findings of this one text, not overlapping)."""
    out, last = [], 0
    for finding in sorted(findings, key=lambda f: f.start):
        out.append(text[last:finding.start])
        out.append(finding.replacement if finding.replacement is not None else placeholder(finding))
        last = finding.end
    out.append(text[last:])
    return "".join(out)


class StreamText:
    """A streamed answer's text, per choice, held back by a window.

    `feed(index, piece)` adds text and returns what may be sent now: everything but the last
    `window` characters, and never part of something a check found (a finding that reaches into
    the held part waits until it is whole). `check(text)` returns the findings in `text` (not
    overlapping), each with its replacement, or raises to stop the stream; `on_sent(findings)`
    hears of those that went out. `flush(index)` returns the rest of a choice, checked.
    """

    def __init__(self, window: int, check, on_sent=None, window_words: int | None = None):
        self.window = window
        self.window_words = window_words
        self.check = check
        self.on_sent = on_sent or (lambda findings: None)
        self.pending: dict = {}

    def feed(self, index, piece: str) -> str:
        text = self.pending.get(index, "") + piece
        if not text:
            return ""
        findings = self.check(text)
        boundary = max(0, len(text) - self.window)
        if self.window_words is not None:
            boundary = max(boundary, _start_of_last_words(text, self.window_words))
        for finding in findings:
            if finding.start < boundary < finding.end:
                boundary = finding.start
        sent = [f for f in findings if f.end <= boundary]
        self.pending[index] = text[boundary:]
        self.on_sent(sent)
        return replaced(text[:boundary], sent, None)

    def has(self, index) -> bool:
        return bool(self.pending.get(index))

    def flush(self, index) -> str:
        text = self.pending.pop(index, "")
        if not text:
            return ""
        findings = self.check(text)
        self.on_sent(findings)
        return replaced(text, findings, None)

    def drain(self) -> list:
        """(index, text) for every choice with text still held, checked; nothing is held after."""
        return [(index, self.flush(index)) for index in list(self.pending) if self.pending.get(index)]


def _start_of_last_words(text: str, count: int) -> int:
    """Where the last `count` words of `text` begin."""
    position = len(text)
    for _ in range(count):
        position = len(text[:position].rstrip())
        while position and not text[position - 1].isspace():
            position -= 1
        if position == 0:
            return 0
    return position


def sse_events(stream):
    """Whole SSE events (bytes, without the blank line) from a stream of byte chunks."""
    buffer = b""
    for chunk in stream:
        buffer += chunk
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            yield event
    if buffer.strip():
        yield buffer


def event_json(event: bytes):
    """The JSON payload of an SSE `data:` event, or None (a comment, `[DONE]`, another field)."""
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            payload = line[5:].strip()
            if payload and payload != b"[DONE]":
                try:
                    return orjson.loads(payload)
                except orjson.JSONDecodeError:
                    return None
    return None


def choice_pieces(chunk: dict):
    """(choice, field) for each choice of a chat or completions chunk that carries text."""
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict) and isinstance(delta.get("content"), str):
            yield choice, delta, "content"
        elif isinstance(choice.get("text"), str):
            yield choice, choice, "text"
