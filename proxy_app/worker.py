"""gunicorn's gevent worker, with gevent imported in the worker process only, and gunicorn's own
error pages in the OpenAI error shape.

gunicorn's master loads the worker class to build each worker object before forking it, and
`gunicorn.workers.ggevent` imports gevent at its top: ~4.5 MB in a master that never runs a
greenlet, counted again in every worker's memory. The master sees this class instead; in the
forked process, before anything runs, the object becomes gunicorn's own `GeventWorker` (same
base class, so the same state), and gevent is imported and patches the standard library there.

Each request starts with a turn for the other greenlets (`handle_request`). A connection's
greenlet only yields to the hub where its socket would block, and on a busy keep-alive
connection it never does: the next request is already in the buffer when the last answer has
gone, and an upstream that answers within microseconds (or a cache hit, which has no upstream)
never makes it wait either. Without the turn, one connection was served again and again while
the others waited, unaccepted or unread, for over a second (chat c=64: p50 0.7 ms, p99 1.4 s).
The turn is `gevent.idle()`, which resumes once the loop has handled the sockets that are ready;
`gevent.sleep(0)` is not enough: the loop runs queued callbacks for a whole switch interval
(5 ms, checked every 50 callbacks) before it looks at sockets again, so a greenlet could still
take ~50 turns in a row (chat c=8, p99 62 ms with it, 18 ms with `idle`; the relay's 22 ms).

gunicorn sends an answer's head and its first body bytes in two `sendall`s: two sends, two TCP
segments for the client to take in, and two `getsockopt`s (gevent's `sendall` asks the socket's
buffer size each time). The worker's responses hold the head until the first body bytes and send
both at once (`HeadWithBody`); the bytes on the wire are gunicorn's own.

A request gunicorn refuses before the app sees it (a request line over 8 KB, a header over 8 KB,
more than 100 headers, both Content-Length and Transfer-Encoding) is answered by
`gunicorn.util.write_error`, an HTML page: the worker replaces it with `write_json_error`, the
same status and reason with `{"error": {...}}` as every other answer, so a client's SDK can read it.
"""

import json

from gunicorn.workers.base_async import AsyncWorker


class GeventWorker(AsyncWorker):
    def init_process(self):
        from gunicorn import util
        from gunicorn.http import wsgi
        from gunicorn.workers.ggevent import GeventWorker as Worker

        util.write_error = write_json_error
        wsgi.Response = _head_with_body(wsgi.Response)  # what `wsgi.create` builds each request's from
        self.__class__ = _fair(Worker)
        Worker.init_process(self)


def _fair(worker_class):
    """gunicorn's gevent worker, giving the other connections a turn before each request (and
    between the background writer's batches: `proxy_app.turns`)."""
    import gevent

    from proxy_app import turns

    turns.install(gevent.idle)

    class FairGeventWorker(worker_class):
        def handle_request(self, listener_name, req, sock, addr):
            gevent.idle()  # the hub serves the sockets that are ready (accepts, reads, answers) first
            return super().handle_request(listener_name, req, sock, addr)

    return FairGeventWorker


JOIN_LIMIT = 64 * 1024  # body bytes copied to go out with the head: a send costs more than this copy


def _head_with_body(response_class):
    """gunicorn's response, sending its head with the first body bytes (or at the end, when there
    are none): one send instead of two for an answer with a Content-Length. Only a file sent with
    sendfile(2), which writes straight to the socket, needs its head sent first."""

    class HeadWithBody(response_class):
        _head = None
        _head_first = False

        def send_headers(self):
            if self.headers_sent or self._head_first:
                return super().send_headers()
            lines = self.default_headers()
            lines.extend(f"{name}: {value}\r\n" for name, value in self.headers)
            self._head = ("".join(lines) + "\r\n").encode("latin-1")
            self.headers_sent = True  # as far as gunicorn is concerned: it may not write another head

        def _emit_body(self, data):
            head, self._head = self._head, None
            if head is not None and not self.chunked and len(data) <= JOIN_LIMIT:
                return self.sock.sendall(head + data)
            if head is not None:  # a stream's chunks, or a body too big to copy for a send's sake
                self.sock.sendall(head)
            super()._emit_body(data)

        def sendfile(self, respiter):
            self._head_first = True
            return super().sendfile(respiter)

        def close(self):
            if not self.headers_sent:
                self.send_headers()
            head, self._head = self._head, None
            if head is not None:  # no body bytes were written: HEAD, 204, 304, or an empty body
                self.sock.sendall(head)
            super().close()

    return HeadWithBody


def write_json_error(sock, status_int, reason, mesg):
    """gunicorn's `util.write_error`, answering JSON in the OpenAI error shape."""
    from gunicorn import util

    message = f"{reason}: {mesg}" if mesg else reason
    body = json.dumps({"error": {
        "message": message, "type": "invalid_request_error" if status_int < 500 else "api_error",
        "param": None, "code": reason.lower().replace(" ", "_")}}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)
