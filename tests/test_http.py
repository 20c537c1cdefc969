"""Outbound HTTP (`dheera_ai.http`): connections to upstreams are kept and reused, however many
upstream hosts the config names, and a pooled connection an upstream has closed is not reused."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dheera_ai import http
from tests.support.engine import answer, make_engine, run
from tests.support.fake_upstream import chat_completion

ANSWER = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}'


class KeepAliveThenClose:
    """An HTTP/1.1 server that answers one request per connection, keeps it open as if for the
    next one, then closes it while idle (as upstreams and load balancers do after their timeout)."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = 0
        self.closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                conn.recv(65536)
                conn.sendall(ANSWER)
                time.sleep(0.1)
            self.closed.set()

    def close(self):
        self.sock.close()


def test_a_connection_the_upstream_closed_while_idle_is_replaced_not_reused():
    server = KeepAliveThenClose()
    try:
        assert http.post(server.url + "/v1/embeddings", json_body={}).content == b"{}"
        assert server.closed.wait(5)
        # The pooled connection is dead; reusing it would fail the call (requests never retries).
        assert http.post(server.url + "/v1/embeddings", json_body={}).content == b"{}"
        assert server.accepted == 2
    finally:
        server.close()


def test_a_pooled_connection_counts_as_open_until_the_peer_hangs_up():
    connection = http._pool_classes()["http"].ConnectionCls("127.0.0.1", 1)
    a, b = socket.socketpair()
    try:
        connection.sock = a
        assert connection.is_connected
        b.close()  # the peer hangs up: the socket turns readable (EOF)
        assert not connection.is_connected
    finally:
        a.close()


# -- a pool per upstream host -----------------------------------------------------------------

HOSTS = http.SPARE_POOLS + 8  # more upstreams than the pools a session keeps by default


class _Counting(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real upstreams do

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.connections.add(self.client_address)  # one address per TCP connection
        self.server.calls += 1
        body = json.dumps(chat_completion()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def upstreams(monkeypatch):
    monkeypatch.setattr(http, "_pools", http.SPARE_POOLS)
    monkeypatch.setattr(http, "_session", None)
    servers = []
    for _ in range(HOSTS):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
        server.daemon_threads = True
        server.connections = set()
        server.calls = 0
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()
    http.session().close()
    monkeypatch.setattr(http, "_session", None)


def test_each_upstream_host_of_the_config_keeps_its_connection(upstreams):
    engine = make_engine([
        {"model_name": f"m{i}", "dheera_ai_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-up",
                                                     "api_base": f"http://127.0.0.1:{s.server_port}/v1"}}
        for i, s in enumerate(upstreams)])
    messages = [{"role": "user", "content": "hi"}]
    for _ in range(3):  # round-robin over every host: the worst order for a pool cache too small
        for i in range(HOSTS):
            assert answer(run(engine, "chat_completions", f"m{i}", {"messages": messages}))["choices"]
    assert [len(s.connections) for s in upstreams] == [1] * HOSTS


def test_with_more_upstream_hosts_than_pools_each_call_reaches_its_own_host(upstreams, monkeypatch):
    """The adapter remembers each URL's pool key; the pool manager still closes the least recently
    used pool beyond its room, and a call to that host again gets a new pool, on the right host."""
    monkeypatch.setattr(http, "_pools", 2)
    monkeypatch.setattr(http, "_session", None)
    for _ in range(3):
        for server in upstreams:
            answered = http.post(f"http://127.0.0.1:{server.server_port}/v1/chat/completions",
                                 json_body={"model": "m"}, timeout=10, provider="openai")
            assert answered.json()["object"] == "chat.completion"
    assert [s.calls for s in upstreams] == [3] * HOSTS
    assert all(len(s.connections) == 3 for s in upstreams)  # two pools for HOSTS hosts: each call reconnected
