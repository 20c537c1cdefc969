"""A threaded fake upstream on 127.0.0.1 that records what it was sent and answers as scripted.

Each test scripts answers with `upstream.respond(...)`/`upstream.stream(...)`/`upstream.fail(...)`;
with nothing scripted, a handler added with `upstream.route(path, handler)` answers, else
`/chat/completions` answers like OpenAI (plain or streamed).
"""

from __future__ import annotations

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
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorded = Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with upstream._lock:
                    upstream.requests.append(recorded)
                    script = upstream._scripts.pop(0) if upstream._scripts else None
                upstream._answer(self, recorded, script)

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

    def stream(self, events, event_delay=0.0, hold=0.0, delay=0.0):
        self._scripts.append(Script(events=list(events), event_delay=event_delay, hold=hold, delay=delay))

    def fail(self, status, message="upstream failure", headers=None, code=None, err_type="invalid_request_error"):
        body = {"error": {"message": message, "type": err_type, "param": None, "code": code}}
        self.respond(body, status=status, headers=headers)

    def route(self, path, handler):
        """Answer requests to `path` (query ignored) with `handler(recorded)`, a `Script`, when
        nothing is scripted: a provider's documented default behaviour for a whole test."""
        self._routes[path] = handler

    def drop(self):
        self._scripts.append(Script(drop=True))

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
        if script.events is None:
            handler.send_response(script.status)
            handler.send_header("Content-Type", script.headers.pop("Content-Type", "application/json"))
            for k, v in script.headers.items():
                handler.send_header(k, v)
            handler.send_header("Content-Length", str(len(script.body)))
            handler.end_headers()
            handler.wfile.write(script.body)
            return
        # Streams are close-delimited, as many real servers send them: no length, no chunking.
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True
        try:
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
        return Script(status=404, body=json.dumps({"error": {"message": f"no route {recorded.path}",
                                                             "type": "invalid_request_error"}}).encode())
