"""Outbound HTTP (`dheera_ai.http`): pooled connections an upstream has closed are not reused."""

import socket
import threading
import time

from dheera_ai import http

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
