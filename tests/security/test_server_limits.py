"""What a client can do to the server itself, before or while a request reaches the app (issue #25,
items 7 and 14): the real `dheera_ai` command under gunicorn, and conf/nginx.conf in front of it.

Slow bodies (7): connections that send headers and then a body a byte at a time must not starve
the worker; each body has a deadline. Refusals gunicorn makes itself (14) are OpenAI-shape JSON,
never its HTML page, directly and through nginx.
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import time

import pytest
import requests
import yaml

from tests.support.nginx import NGINX, Nginx
from tests.support.process import GatewayProcess

MASTER = "sk-limits-master-key"
AUTH = {"Authorization": f"Bearer {MASTER}"}
HI = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}


def gateway(tmp_path, **general) -> GatewayProcess:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "model_list": [{"model_name": "demo", "dheera_ai_params": {"model": "mock/demo"}}],
        "general_settings": {"master_key": MASTER, "max_request_size_mb": 1, **general}}))
    process = GatewayProcess("--config", str(config), "--workers", "1", "--host", "127.0.0.1")
    process.wait_ready()
    return process


@pytest.fixture
def instance(tmp_path):
    process = gateway(tmp_path)
    yield process
    process.close()


def exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes, read the whole answer (until the server closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with contextlib.suppress(OSError):
            s.sendall(data)
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := s.recv(65536):
                answer += chunk
    return answer


def status_and_error(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), answer[:300]
    return int(head.split(b" ", 2)[1]), json.loads(body)["error"]


def chat_request(body: bytes, extra: bytes = b"") -> bytes:
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + MASTER.encode() +
            b"\r\nContent-Type: application/json\r\nConnection: close\r\n" + extra + b"\r\n" + body)


# What gunicorn refuses before the app sees a request; the status it gives each.
MALFORMED = {
    "content-length and transfer-encoding": (chat_request(b"0\r\n\r\n", b"Content-Length: 5\r\n"
                                                          b"Transfer-Encoding: chunked\r\n"), 400),
    "10 KB URL": (b"GET /v1/models?q=" + b"a" * 10240 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    "9 KB header": (b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9216 + b"\r\n\r\n", 431),
    "150 headers": (b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(150))
                    + b"\r\n", 431),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_requests_gunicorn_refuses_get_openai_json(instance, case):
    data, status = MALFORMED[case]
    got, error = status_and_error(exchange(instance.port, data))
    assert got == status
    assert error["type"] == "invalid_request_error" and error["message"] and "<html" not in error["message"]


def test_an_over_limit_chunked_body_is_a_413(instance):
    body = json.dumps({**HI, "messages": [{"role": "user", "content": "a" * (2 * 1024 * 1024)}]}).encode()
    chunked = b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    status, error = status_and_error(exchange(instance.port, chat_request(chunked, b"Transfer-Encoding: chunked\r\n")))
    assert status == 413 and "max_request_size_mb" in error["message"]
    small = json.dumps(HI).encode()
    answer = exchange(instance.port, chat_request(b"%x\r\n" % len(small) + small + b"\r\n0\r\n\r\n",
                                                  b"Transfer-Encoding: chunked\r\n"))
    assert answer.startswith(b"HTTP/1.1 200")  # a chunked body under the limit is read whole


def test_too_many_form_parts_says_so_not_that_the_body_is_too_large(instance):
    parts = b"".join(b'--B\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nx\r\n' % i for i in range(1100))
    parts += b"--B--\r\n"
    answer = exchange(instance.port, b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                      MASTER.encode() + b"\r\nContent-Type: multipart/form-data; boundary=B\r\nConnection: close\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(parts) + parts)
    status, error = status_and_error(answer)
    assert status == 413 and error["code"] == "form_too_large"
    assert "1000 parts" in error["message"] and "MB" not in error["message"]


# -- slow bodies (7) ------------------------------------------------------------------------------

def slow_connections(port: int, count: int) -> list[socket.socket]:
    """`count` connections that announce a 100 KB body and send one byte of it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * count)), hard))
    held = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + MASTER.encode() +
                  b"\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
        held.append(s)
    return held


def test_slow_bodies_do_not_starve_the_worker_and_each_has_a_deadline(tmp_path):
    process = gateway(tmp_path, request_body_timeout=4, max_slow_body_connections=20)
    held = []
    try:
        # More than the worker's 1,000 connections, each holding its body back.
        held = slow_connections(process.port, 1100)
        time.sleep(1.5)  # past the grace: the slow ones are refused or hold one of the 20 places
        answered = [requests.post(process.url + "/v1/chat/completions", headers=AUTH, json=HI, timeout=10).status_code
                    for _ in range(10)]
        assert answered == [200] * 10
        statuses = []
        for s in held:
            s.settimeout(15)
            answer = b""
            with contextlib.suppress(OSError):
                while chunk := s.recv(65536):
                    answer += chunk
            statuses.append(status_and_error(answer)[0] if answer else None)
        assert statuses.count(408) == len(held)  # every slow body ended, none left open
    finally:
        for s in held:
            s.close()
        process.close()


def test_a_body_sent_in_pieces_within_the_deadline_is_read_whole(tmp_path):
    process = gateway(tmp_path, request_body_timeout=5)
    try:
        body = json.dumps(HI).encode()
        with socket.create_connection(("127.0.0.1", process.port), timeout=10) as s:
            s.sendall(chat_request(body[:10], b"Content-Length: %d\r\n" % len(body)))
            time.sleep(1.5)  # past the grace: it takes one of the places for slow bodies
            s.sendall(body[10:])
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
        with socket.create_connection(("127.0.0.1", process.port), timeout=10) as s:
            s.sendall(chat_request(body[:10], b"Content-Length: %d\r\n" % len(body)))
            answer = b""  # never finished: answered by the deadline (Connection: close ends it)
            while chunk := s.recv(65536):
                answer += chunk
        status, error = status_and_error(answer)
        assert status == 408 and error["code"] == "request_body_timeout"
    finally:
        process.close()


def test_a_large_upload_gets_the_time_its_size_takes_at_a_megabyte_a_second(tmp_path):
    """A 4 MB file sent over ~3 s passes a 2 s request_body_timeout (4 MB at 1 MB/s: 4 s)."""
    process = gateway(tmp_path, request_body_timeout=2)
    try:
        boundary = b"dheera-test-boundary"
        head = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n--' + boundary
                + b'\r\nContent-Disposition: form-data; name="file"; filename="in.jsonl"\r\n'
                  b"Content-Type: application/jsonl\r\n\r\n")
        line = json.dumps({"custom_id": "x", "method": "POST", "url": "/v1/chat/completions", "body": HI}).encode()
        content = (line + b"\n") * (4 * 1024 * 1024 // (len(line) + 1))
        body = head + content + b"\r\n--" + boundary + b"--\r\n"
        request = (b"POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + MASTER.encode()
                   + b"\r\nContent-Type: multipart/form-data; boundary=" + boundary
                   + b"\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
        with socket.create_connection(("127.0.0.1", process.port), timeout=15) as s:
            s.sendall(request)
            piece = len(body) // 6
            for start in range(0, len(body), piece):
                s.sendall(body[start:start + piece])
                time.sleep(0.5)
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        head, _, uploaded = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), answer[:500]
        assert json.loads(uploaded)["bytes"] == len(content)
    finally:
        process.close()


# -- behind nginx (conf/nginx.conf as shipped) ----------------------------------------------------

@pytest.mark.skipif(NGINX is None and __import__("os").environ.get("CI") != "true",
                    reason="nginx is not installed (apt-get install nginx-light); CI installs it")
def test_behind_nginx_every_refusal_is_openai_json(tmp_path, instance):
    proxy = Nginx(tmp_path, [instance.port, instance.port])
    try:
        port = int(proxy.url.rsplit(":", 1)[1])
        for case, (data, _status) in MALFORMED.items():
            status, error = status_and_error(exchange(port, data))
            assert 400 <= status < 500 and error["message"], case
        slow = slow_connections(port, 50)  # nginx holds them; the gateway never sees a byte
        try:
            assert requests.post(proxy.url + "/v1/chat/completions", headers=AUTH, json=HI, timeout=10).ok
        finally:
            for s in slow:
                s.close()
    finally:
        proxy.close()
