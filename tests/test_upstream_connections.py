"""Connections to upstreams are kept and reused, however many upstream hosts the config names."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dheera_ai import http
from tests.support.engine import answer, make_engine, run
from tests.support.fake_upstream import chat_completion

HOSTS = http.SPARE_POOLS + 8  # more upstreams than the pools a session keeps by default


class _Counting(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real upstreams do

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.connections.add(self.client_address)  # one address per TCP connection
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
