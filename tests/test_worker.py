"""The gateway's gunicorn responses (`proxy_app.worker`): the same bytes as gunicorn's own, in fewer
sends. Each case parses a real request with gunicorn's parser, answers it through gunicorn's
`wsgi.create` with the stock response class and with ours, and compares what reached the socket."""

import io

import pytest
from gunicorn import util
from gunicorn.config import Config
from gunicorn.http import wsgi
from gunicorn.http.parser import RequestParser

from proxy_app.worker import JOIN_LIMIT, _head_with_body


class RecordingSocket:
    """The client's end of the answer: each send as it was made (a sendfile is one send)."""

    def __init__(self, request: bytes):
        self.incoming = io.BytesIO(request)
        self.sends: list[bytes] = []

    def recv(self, size):
        return self.incoming.read(size)

    def sendall(self, data):
        self.sends.append(bytes(data))

    def sendfile(self, file, offset=0, count=None):
        file.seek(offset)
        self.sends.append(file.read(count))


def answer(response_class, app, request=b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"):
    """What `app` sends through `response_class`, send by send (the way gunicorn's async worker
    drives a response: write each item, or the file wrapper's file, then close)."""
    cfg = Config()
    sock = RecordingSocket(request)
    req = next(iter(RequestParser(cfg, sock, ("127.0.0.1", 1))))
    resp, environ = wsgi.create(req, sock, ("127.0.0.1", 1), "127.0.0.1:4000", cfg, response_class=response_class)
    body = app(environ, resp.start_response)
    if isinstance(body, environ["wsgi.file_wrapper"]):
        resp.write_file(body)
    else:
        for item in body:
            resp.write(item)
    resp.close()
    return sock.sends


@pytest.fixture(autouse=True)
def fixed_date(monkeypatch):
    monkeypatch.setattr(util, "http_date", lambda *args: "Mon, 07 Dec 2026 23:00:00 GMT")


def app_of(status, headers, items):
    def app(environ, start_response):
        start_response(status, headers)
        return items
    return app


OURS = _head_with_body(wsgi.Response)
JSON = [("Content-Type", "application/json")]


def test_an_answer_with_a_length_goes_out_in_one_send_with_gunicorns_bytes():
    app = app_of("200 OK", JSON + [("Content-Length", "13")], [b'{"ok": true}\n'])
    stock, ours = answer(wsgi.Response, app), answer(OURS, app)
    assert len(stock) == 2  # what gunicorn does alone: the head, then the body
    assert ours == [b"".join(stock)]
    assert ours[0].startswith(b"HTTP/1.1 200 OK\r\n") and ours[0].endswith(b'\r\n\r\n{"ok": true}\n')


def test_a_stream_sends_the_same_chunks():
    app = app_of("200 OK", [("Content-Type", "text/event-stream")], [b"data: 1\n\n", b"data: 2\n\n"])
    stock, ours = answer(wsgi.Response, app), answer(OURS, app)
    assert b"".join(ours) == b"".join(stock)
    assert b"Transfer-Encoding: chunked" in ours[0] and ours[-1] == b"0\r\n\r\n"


@pytest.mark.parametrize("request_line, status, items", [
    (b"HEAD /x HTTP/1.1", "200 OK", [b""]),
    (b"GET /x HTTP/1.1", "204 No Content", []),
    (b"GET /x HTTP/1.1", "200 OK", []),
])
def test_an_answer_without_body_bytes_still_sends_its_head(request_line, status, items):
    app = app_of(status, JSON + [("Content-Length", "0")] if status != "204 No Content" else JSON, items)
    request = request_line + b"\r\nHost: h\r\n\r\n"
    stock, ours = answer(wsgi.Response, app, request), answer(OURS, app, request)
    assert ours == [b"".join(stock)]
    assert ours[0].startswith(f"HTTP/1.1 {status}\r\n".encode()) and ours[0].endswith(b"\r\n\r\n")


def test_a_big_body_is_not_copied_to_join_its_head():
    body = b"x" * (JOIN_LIMIT + 1)
    app = app_of("200 OK", JSON + [("Content-Length", str(len(body)))], [body])
    stock, ours = answer(wsgi.Response, app), answer(OURS, app)
    assert ours == stock and ours[1] == body


def test_a_file_sent_with_sendfile_follows_its_head(tmp_path):
    path = tmp_path / "page.css"
    path.write_bytes(b"body { margin: 0 }\n")

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/css"), ("Content-Length", "19")])
        return environ["wsgi.file_wrapper"](open(path, "rb"))

    stock, ours = answer(wsgi.Response, app), answer(OURS, app)
    assert ours == stock and ours[-1] == b"body { margin: 0 }\n"
    assert ours[0].endswith(b"Content-Length: 19\r\n\r\n")
