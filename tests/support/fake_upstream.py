"""A threaded fake upstream on 127.0.0.1 that records what it was sent and answers as scripted.

Each test scripts answers with `upstream.respond(...)`/`upstream.stream(...)`/`upstream.fail(...)`;
with nothing scripted, `/chat/completions` answers like OpenAI (plain or streamed).
`upstream.always(prefix, ...)` answers every request under a path prefix the same way (a
deployment that is down, or slow) until `upstream.clear()`; scripted answers still come first.
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
    events: list | None = None  # SSE payloads (dicts or raw strings), sent one by one
    delay: float = 0.0  # before the answer
    event_delay: float = 0.0  # between events
    drop: bool = False  # close the connection without answering
    hold: float = 0.0  # after the events, keep the stream open this long before ending it
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
        self._lock = threading.Lock()
        self.closed_streams = 0  # streams whose client (the gateway) went away early
        self._rules: dict[str, Script] = {}
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as separate writes; with Nagle on, each answer waits ~40 ms.
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorded = Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with upstream._lock:
                    upstream.requests.append(recorded)
                    script = upstream._scripts.pop(0) if upstream._scripts else upstream._rule(self.path)
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

    def stream(self, events, event_delay=0.0, hold=0.0, delay=0.0, truncate=False):
        self._scripts.append(Script(events=list(events), event_delay=event_delay, hold=hold, delay=delay,
                                    truncate=truncate))

    def respond_slowly(self, body, trickle):
        """A 200 whose body arrives in ten pieces `trickle` seconds apart."""
        self._scripts.append(Script(body=json.dumps(body).encode(), trickle=trickle))

    def fail(self, status, message="upstream failure", headers=None, code=None, err_type="invalid_request_error"):
        body = {"error": {"message": message, "type": err_type, "param": None, "code": code}}
        self.respond(body, status=status, headers=headers)

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
            for item in script.events:
                payload = item if isinstance(item, str) else json.dumps(item)
                handler.wfile.write(f"data: {payload}\n\n".encode())
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
        if recorded.path.endswith("/chat/completions"):
            body = recorded.json
            if body.get("stream"):
                include = (body.get("stream_options") or {}).get("include_usage")
                return Script(events=chat_chunks(usage=(9, 4) if include else None))
            return Script(body=json.dumps(chat_completion()).encode())
        return Script(status=404, body=json.dumps({"error": {"message": f"no route {recorded.path}",
                                                             "type": "invalid_request_error"}}).encode())
