"""A threaded fake upstream on 127.0.0.1 that records what it was sent and answers as scripted.

Each test scripts answers with `upstream.respond(...)`/`upstream.stream(...)`/`upstream.fail(...)`;
with nothing scripted, a handler added with `upstream.route(path, handler)` answers, else
`/chat/completions` answers like OpenAI (plain or streamed).
`upstream.always(prefix, ...)` answers every request under a path prefix the same way (a
deployment that is down, or slow) until `upstream.clear()`; scripted answers still come first.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)

    @property
    def form(self) -> tuple[dict, list]:
        """A multipart body as (text fields, [(field, filename, content type, bytes)])."""
        from email.parser import BytesParser
        from email.policy import HTTP

        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + self.headers["content-type"].encode() + b"\r\n\r\n" + self.body)
        fields, files = {}, []
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            filename = part.get_filename()
            payload = part.get_payload(decode=True)
            if filename is None:
                fields.setdefault(name, []).append(payload.decode())
            else:
                files.append((name, filename, part.get_content_type(), payload))
        return {k: v[0] if len(v) == 1 else v for k, v in fields.items()}, files


@dataclass
class Script:
    status: int = 200
    body: bytes | None = None
    headers: dict = field(default_factory=dict)
    # SSE payloads (dicts or raw strings, or (event name, payload) pairs), sent one by one
    events: list | None = None
    delay: float = 0.0  # before the answer
    event_delay: float = 0.0  # between events
    drop: bool = False  # close the connection without answering
    hold: float = 0.0  # after the events, keep the stream open this long before ending it
    lead: float = 0.0  # after the headers, wait this long before the first event
    chunks: list | None = None  # raw byte pieces of a close-delimited body (e.g. audio), sent one by one
    trickle: float = 0.0  # send the body in ten pieces, this many seconds apart
    truncate: bool = False  # a stream that promises more bytes than it sends, then closes


def chat_completion(content="Hello from the fake upstream.", model="gpt-4o-mini-2024-07-18", tool_calls=None,
                    usage=(9, 7)):
    message = {"role": "assistant", "content": content, "refusal": None}
    finish = "stop"
    if tool_calls:
        message = {"role": "assistant", "content": None, "tool_calls": tool_calls, "refusal": None}
        finish = "tool_calls"
    return {"id": "chatcmpl-fake123", "object": "chat.completion", "created": 1700000000, "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}}


def chat_chunks(words=("Hello", " from", " the", " stream."), model="gpt-4o-mini", usage=(9, 4)):
    base = {"id": "chatcmpl-fakestream", "object": "chat.completion.chunk", "created": 1700000000,
            "model": model, "system_fingerprint": "fp_fake"}
    chunks = [dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
    chunks += [dict(base, choices=[{"index": 0, "delta": {"content": w}, "finish_reason": None}]) for w in words]
    chunks.append(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    if usage:
        chunks.append(dict(base, choices=[], usage={"prompt_tokens": usage[0], "completion_tokens": usage[1],
                                                     "total_tokens": sum(usage)}))
    return chunks + ["[DONE]"]


class FakeUpstream:
    def __init__(self):
        self.requests: list[Recorded] = []
        self._scripts: list[Script] = []
        self._routes: dict = {}  # path (without query) -> handler(Recorded) -> Script
        self._lock = threading.Lock()
        self.closed_streams = 0  # streams whose client (the gateway) went away early
        self.chunked_uploads = 0
        self._rules: dict[str, Script] = {}
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as separate writes; with Nagle on, each answer waits ~40 ms.
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def _handle(self):
                body = self._body()
                recorded = Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with upstream._lock:
                    upstream.requests.append(recorded)
                    script = upstream._scripts.pop(0) if upstream._scripts else upstream._rule(self.path)
                upstream._answer(self, recorded, script)

            def _body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    upstream.chunked_uploads += 1
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(parts)
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            do_POST = do_GET = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    # -- scripting -------------------------------------------------------------------------
    def respond(self, body, status=200, headers=None, delay=0.0):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self._scripts.append(Script(status=status, body=data, headers=headers or {}, delay=delay))

    def binary(self, pieces, content_type="audio/mpeg", event_delay=0.0):
        """A close-delimited binary answer sent in `pieces`."""
        self._scripts.append(Script(chunks=list(pieces), headers={"Content-Type": content_type},
                                    event_delay=event_delay))

    def stream(self, events, event_delay=0.0, hold=0.0, delay=0.0, truncate=False, lead=0.0):
        self._scripts.append(Script(events=list(events), event_delay=event_delay, hold=hold, delay=delay,
                                    truncate=truncate, lead=lead))

    def respond_slowly(self, body, trickle):
        """A 200 whose body arrives in ten pieces `trickle` seconds apart."""
        self._scripts.append(Script(body=json.dumps(body).encode(), trickle=trickle))

    def fail(self, status, message="upstream failure", headers=None, code=None, err_type="invalid_request_error"):
        body = {"error": {"message": message, "type": err_type, "param": None, "code": code}}
        self.respond(body, status=status, headers=headers)

    def route(self, path, handler):
        """Answer requests to `path` (query ignored) with `handler(recorded)`, a `Script`, when
        nothing is scripted: a provider's documented default behaviour for a whole test."""
        self._routes[path] = handler

    def drop(self):
        self._scripts.append(Script(drop=True))

    def always(self, path_prefix, status=200, body=None, headers=None, delay=0.0, drop=False, message=None,
               code=None):
        """Answer every request whose path starts with `path_prefix` like this (an error body when
        `status` >= 400), until `clear()`; a non-200 without a body is an OpenAI-style error."""
        if body is None and status >= 400:
            body = {"error": {"message": message or f"upstream failure {status}", "type": "api_error",
                              "param": None, "code": code}}
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        self._rules[path_prefix] = Script(status=status, body=data, headers=headers or {}, delay=delay, drop=drop)

    def clear(self):
        self._rules.clear()

    def count(self, path_prefix) -> int:
        """Requests received under `path_prefix`."""
        return sum(1 for r in self.requests if r.path.startswith(path_prefix))

    def _rule(self, path):
        for prefix, script in self._rules.items():
            if path.startswith(prefix):
                # A copy: answering consumes the headers dict.
                return Script(**{**script.__dict__, "headers": dict(script.headers)})
        return None

    @property
    def last(self) -> Recorded:
        return self.requests[-1]

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    # -- answering -------------------------------------------------------------------------
    def _answer(self, handler, recorded, script):
        if script is None:
            script = self._default(recorded)
        if script.delay:
            time.sleep(script.delay)
        if script.drop:
            handler.connection.shutdown(socket.SHUT_RDWR)
            handler.close_connection = True
            return
        if script.chunks is not None:
            handler.send_response(script.status)
            for k, v in script.headers.items():
                handler.send_header(k, v)
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.close_connection = True
            for piece in script.chunks:
                handler.wfile.write(piece)
                handler.wfile.flush()
                if script.event_delay:
                    time.sleep(script.event_delay)
            return
        if script.body is None and script.events is None:
            script = Script(**{**self._default(recorded).__dict__, "delay": 0.0})
        if script.events is None:
            handler.send_response(script.status)
            handler.send_header("Content-Type", script.headers.pop("Content-Type", "application/json"))
            for k, v in script.headers.items():
                handler.send_header(k, v)
            handler.send_header("Content-Length", str(len(script.body)))
            handler.end_headers()
            if not script.trickle:
                try:
                    handler.wfile.write(script.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the gateway gave up waiting (a timeout test)
                return
            piece = max(1, len(script.body) // 10)
            try:
                for start in range(0, len(script.body), piece):
                    handler.wfile.write(script.body[start:start + piece])
                    handler.wfile.flush()
                    time.sleep(script.trickle)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        # Streams are close-delimited, as many real servers send them: no length, no chunking.
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Connection", "close")
        if script.truncate:
            handler.send_header("Content-Length", "1000000")
        handler.end_headers()
        handler.close_connection = True
        try:
            if script.lead:
                handler.wfile.flush()
                time.sleep(script.lead)
            for item in script.events:
                name, item = item if isinstance(item, tuple) else (None, item)
                payload = item if isinstance(item, str) else json.dumps(item)
                prefix = f"event: {name}\n" if name else ""
                handler.wfile.write(f"{prefix}data: {payload}\n\n".encode())
                handler.wfile.flush()
                if script.event_delay:
                    time.sleep(script.event_delay)
            if script.hold:
                time.sleep(script.hold)
                handler.wfile.write(b": keep-alive\n\n")
                handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            with self._lock:
                self.closed_streams += 1

    def _default(self, recorded) -> Script:
        path = recorded.path.split("?", 1)[0]
        if path in self._routes:
            return self._routes[path](recorded)
        if path.endswith("/chat/completions"):
            body = recorded.json
            if body.get("stream"):
                include = (body.get("stream_options") or {}).get("include_usage")
                return Script(events=chat_chunks(usage=(9, 4) if include else None))
            return Script(body=json.dumps(chat_completion()).encode())
        for suffix, answer in DEFAULT_ROUTES.items():
            if path.endswith(suffix):
                return answer(recorded)
        if "/responses/" in path:
            return _stored_response(recorded, path)
        return Script(status=404, body=json.dumps({"error": {"message": f"no route {recorded.path}",
                                                             "type": "invalid_request_error"}}).encode())


def _json(body, status=200) -> Script:
    return Script(status=status, body=json.dumps(body).encode())


def text_completion(text="Hello from the fake upstream.", usage=(5, 6)):
    return {"id": "cmpl-fake123", "object": "text_completion", "created": 1700000000, "model": "gpt-3.5-turbo-instruct",
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}}


def completion_chunks(words=("Hello", " there", "."), usage=(5, 3)):
    base = {"id": "cmpl-fakestream", "object": "text_completion", "created": 1700000000,
            "model": "gpt-3.5-turbo-instruct"}
    chunks = [dict(base, choices=[{"text": w, "index": 0, "logprobs": None, "finish_reason": None}]) for w in words]
    chunks.append(dict(base, choices=[{"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}]))
    if usage:
        chunks.append(dict(base, choices=[], usage={"prompt_tokens": usage[0], "completion_tokens": usage[1],
                                                    "total_tokens": sum(usage)}))
    return chunks + ["[DONE]"]


def _completions(recorded) -> Script:
    body = recorded.json
    if body.get("stream"):
        include = (body.get("stream_options") or {}).get("include_usage")
        return Script(events=completion_chunks(usage=(5, 3) if include else None))
    return _json(text_completion())


FAKE_VECTOR = [0.25, -0.5, 0.75]


def _embeddings(recorded) -> Script:
    body = recorded.json
    inputs = body["input"] if isinstance(body["input"], list) and not isinstance(body["input"][0], int) \
        else [body["input"]]
    if body.get("encoding_format") == "base64":
        import struct
        vector = base64.b64encode(struct.pack("<3f", *FAKE_VECTOR)).decode()
    else:
        vector = FAKE_VECTOR
    return _json({"object": "list", "model": "text-embedding-3-small",
                  "data": [{"object": "embedding", "index": i, "embedding": vector} for i in range(len(inputs))],
                  "usage": {"prompt_tokens": 4 * len(inputs), "total_tokens": 4 * len(inputs)}})


FAKE_PNG_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


def _images(recorded) -> Script:
    if recorded.headers.get("content-type", "").startswith("multipart/"):
        fields, _ = recorded.form
    else:
        fields = recorded.json
    count = int(fields.get("n") or 1)
    return _json({"created": 1700000000, "data": [{"b64_json": FAKE_PNG_B64} for _ in range(count)],
                  "usage": {"input_tokens": 50, "output_tokens": 100, "total_tokens": 150,
                            "input_tokens_details": {"text_tokens": 10, "image_tokens": 40}}})


FAKE_AUDIO = [b"ID3fake-audio-part-one|", b"part-two|", b"part-three"]


def _speech(recorded) -> Script:
    return Script(chunks=list(FAKE_AUDIO), headers={"Content-Type": "audio/mpeg"})


def _transcription(recorded) -> Script:
    fields, files = recorded.form
    text = f"Transcribed {files[0][1]}"
    fmt = fields.get("response_format", "json")
    if fmt in ("text", "srt", "vtt"):
        return Script(body=(text + "\n").encode(), headers={"Content-Type": "text/plain; charset=utf-8"})
    if fmt == "verbose_json":
        return _json({"task": "transcribe", "language": "english", "duration": 2.5, "text": text, "segments": []})
    return _json({"text": text, "usage": {"type": "duration", "seconds": 3}})


def _moderations(recorded) -> Script:
    categories = ("hate", "hate/threatening", "harassment", "harassment/threatening", "illicit", "illicit/violent",
                  "self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors", "violence",
                  "violence/graphic")
    result = {"flagged": True, "categories": {c: c == "violence" for c in categories},
              "category_scores": {c: 0.9 if c == "violence" else 0.01 for c in categories},
              "category_applied_input_types": {c: ["text"] for c in categories}}
    return _json({"id": "modr-fake", "model": "omni-moderation-latest", "results": [result]})


def _rerank(recorded) -> Script:
    """vLLM/Jina-style: results with relevance scores (and documents), usage in tokens."""
    body = recorded.json
    docs = body["documents"]
    results = [{"index": i, "relevance_score": round(1.0 / (i + 2), 4),
                "document": {"text": d if isinstance(d, str) else json.dumps(d)}} for i, d in enumerate(docs)]
    return _json({"id": "rerank-fake", "model": body["model"], "usage": {"total_tokens": 30},
                  "results": list(reversed(results))})


def response_object(response_id="resp_fake123", text="Hello from the fake Responses API.", status="completed",
                    previous_response_id=None):
    return {"id": response_id, "object": "response", "created_at": 1700000000, "status": status, "error": None,
            "incomplete_details": None, "instructions": None, "max_output_tokens": None, "model": "gpt-4o-mini",
            "output": [{"id": "msg_fake1", "type": "message", "status": "completed", "role": "assistant",
                        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}],
            "parallel_tool_calls": True, "previous_response_id": previous_response_id,
            "reasoning": {"effort": None, "summary": None}, "store": True, "temperature": 1.0,
            "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0,
            "truncation": "disabled", "metadata": {},
            "usage": {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                      "output_tokens": 8,
                      "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 20}}


def response_events(response_id="resp_fake123", words=("Hello", " stream")):
    final = response_object(response_id, "".join(words))
    started = dict(final, status="in_progress", output=[], usage=None)
    item = {"id": "msg_fake1", "type": "message", "status": "in_progress", "role": "assistant", "content": []}
    events = [("response.created", {"type": "response.created", "sequence_number": 0, "response": started}),
              ("response.output_item.added", {"type": "response.output_item.added", "sequence_number": 1,
                                              "output_index": 0, "item": item})]
    for i, word in enumerate(words):
        events.append(("response.output_text.delta", {
            "type": "response.output_text.delta", "sequence_number": 2 + i, "item_id": "msg_fake1",
            "output_index": 0, "content_index": 0, "delta": word, "logprobs": []}))
    events.append(("response.completed", {"type": "response.completed", "sequence_number": 2 + len(words),
                                          "response": final}))
    return events


def _responses(recorded) -> Script:
    body = recorded.json
    if body.get("stream"):
        return Script(events=response_events())
    return _json(response_object(previous_response_id=body.get("previous_response_id")))


def _stored_response(recorded, path) -> Script:
    response_id = path.split("/responses/", 1)[1].split("/", 1)[0]
    if path.endswith("/input_items"):
        return _json({"object": "list", "has_more": False, "first_id": "msg_in1", "last_id": "msg_in1",
                      "data": [{"id": "msg_in1", "type": "message", "role": "user", "status": "completed",
                                "content": [{"type": "input_text", "text": "Hi"}]}]})
    if recorded.method == "DELETE":
        return _json({"id": response_id, "object": "response", "deleted": True})
    return _json(response_object(response_id))


DEFAULT_ROUTES = {
    "/completions": _completions,
    "/embeddings": _embeddings,
    "/images/generations": _images,
    "/images/edits": _images,
    "/audio/speech": _speech,
    "/audio/transcriptions": _transcription,
    "/audio/translations": _transcription,
    "/moderations": _moderations,
    "/rerank": _rerank,
    "/responses": _responses,
}
