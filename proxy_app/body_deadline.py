"""Slow request bodies: a deadline for reading each body, and a cap on the connections a worker
lets take their time.

A gevent worker holds `worker_connections` connections; a client that sends headers, then its
body a byte at a time, holds one for as long as it likes, and a couple of thousand such
clients leave no room for anyone else. So, in gevent workers (gunicorn; the master installs
nothing), every read of a request body runs under a clock:

- a body that arrives within `BODY_GRACE_SECONDS` (nearly every real one: it follows its
  headers in the same packets) costs nothing more;
- a body still arriving after that needs one of `general_settings.max_slow_body_connections`
  places of its worker (default 100 of the 1,000 connections); without one it is refused with a
  408 at once;
- no body may take longer than `general_settings.request_body_timeout` seconds in all
  (default 60), or for a large one (a file upload) the time its declared length takes at
  `MIN_BODY_RATE` (200 MB: 200 s): a 408, and the connection is closed.

nginx in front (conf/nginx.conf) covers the same ground before a connection reaches the
gateway: `client_body_timeout`, `client_header_timeout`, `limit_conn`.
"""

from __future__ import annotations

import socket
import sys
import time

from dheera_ai.errors import DheeraAIError

BODY_GRACE_SECONDS = 1.0
MIN_BODY_RATE = 1024 * 1024  # bytes a second a large body must arrive at, at least
_PENDING = object()


class RequestBodyTimeoutError(DheeraAIError):
    status = 408
    error_type = "invalid_request_error"
    default_code = "request_body_timeout"


def gevent_running() -> bool:
    """True in a gevent worker (the standard library patched), where this guard applies."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("socket")


class BodyDeadline:
    """WSGI middleware: the request body's stream, read under the rules above."""

    def __init__(self, app, timeout: float, slow_connections: int):
        from gevent.lock import BoundedSemaphore

        self.app = app
        self.timeout = timeout
        self.slow = BoundedSemaphore(slow_connections)
        self.slow_connections = slow_connections

    def __call__(self, environ, start_response):
        if environ.get("CONTENT_LENGTH") in (None, "", "0") and "HTTP_TRANSFER_ENCODING" not in environ:
            return self.app(environ, start_response)
        try:
            declared = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        body = GuardedBody(environ["wsgi.input"], self, environ.get("gunicorn.socket"), declared)
        environ["wsgi.input"] = body
        try:
            return self.app(environ, start_response)
        finally:
            body.release()


class GuardedBody:
    """A request body stream whose reads end by a deadline (see the module's docstring)."""

    def __init__(self, stream, guard: BodyDeadline, sock, declared: int = 0):
        now = time.monotonic()
        self._stream, self._guard, self._sock = stream, guard, sock
        self._grace_end = now + BODY_GRACE_SECONDS
        self.seconds = max(guard.timeout, declared / MIN_BODY_RATE)
        self._deadline = now + self.seconds
        self._slot = False

    def read(self, *args):
        return self._guarded(self._stream.read, *args)

    def readline(self, *args):
        return self._guarded(self._stream.readline, *args)

    def readinto(self, buffer):
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def _guarded(self, read, *args):
        import gevent

        now = time.monotonic()
        if not self._slot and now < self._grace_end:
            result = _PENDING
            with gevent.Timeout(self._grace_end - now, False):  # a wait interrupted loses no bytes
                result = read(*args)
            if result is not _PENDING:
                return result
        if not self._slot:
            if not self._guard.slow.acquire(blocking=False):
                self._refuse(f"The request body is arriving too slowly while this server already waits on "
                             f"{self._guard.slow_connections} slow bodies; send it at once.")
            self._slot = True
        remaining = self._deadline - time.monotonic()
        if remaining > 0:
            result = _PENDING
            with gevent.Timeout(remaining, False):
                result = read(*args)
            if result is not _PENDING:
                return result
        self._refuse(f"The request body did not arrive within {self.seconds:g} s "
                     "(general_settings.request_body_timeout).")

    def _refuse(self, message: str):
        # The rest of the body is never read: stop reading the connection, so gunicorn closes it
        # after the answer instead of draining what a slow client is still sending.
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        raise RequestBodyTimeoutError(message)

    def release(self) -> None:
        if self._slot:
            self._slot = False
            self._guard.slow.release()
