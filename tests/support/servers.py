"""Serving a test app over real HTTP, and finding free ports."""

from __future__ import annotations

import socket
import threading

from werkzeug.serving import make_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """The Flask app on a threaded werkzeug server, so real clients (openai, anthropic) can call it."""

    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def hang_up_mid_stream(url: str, key: str, body: dict, enough) -> bytes:
    """POST a streaming chat call over a raw socket, read until `enough(received)`, then hang up
    as a client that goes away would; returns what it read."""
    import json

    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as sock:
        data = json.dumps(body).encode()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + key.encode() + b"\r\n"
                     b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
        received = b""
        while not enough(received):
            received += sock.recv(4096)
    return received
