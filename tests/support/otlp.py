"""An OTLP/HTTP trace receiver on 127.0.0.1: decodes each export's protobuf (opentelemetry-proto)
as a collector does, and keeps the spans and the headers they came with. It can also hang."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

KINDS = {ProtoSpan.SPAN_KIND_SERVER: "SERVER", ProtoSpan.SPAN_KIND_CLIENT: "CLIENT",
         ProtoSpan.SPAN_KIND_INTERNAL: "INTERNAL"}


def _value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


@dataclass
class Span:
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict
    status_code: int
    status_message: str
    start_ns: int
    end_ns: int
    service: str
    headers: dict

    @property
    def failed(self) -> bool:
        return self.status_code == 2  # STATUS_CODE_ERROR


class OtlpReceiver:
    def __init__(self, path="/v1/traces"):
        self.path = path
        self.spans: list[Span] = []
        self.requests: list[dict] = []  # headers of each export
        self.batch_sizes: list[int] = []  # spans in each export
        self._released = threading.Event()  # cleared while exports hang (`hold`)
        self._released.set()
        self.held = 0  # exports that arrived while held
        self.status = 200
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                if not receiver._released.is_set():
                    receiver.held += 1
                    receiver._released.wait(60)
                if self.path != receiver.path or headers.get("content-type") != "application/x-protobuf":
                    return self._answer(404 if self.path != receiver.path else 415, b"")
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)  # a malformed export fails here, as in a collector
                with receiver._lock:
                    receiver.requests.append(headers)
                    receiver.batch_sizes.append(sum(len(scope.spans) for resource in request.resource_spans
                                                    for scope in resource.scope_spans))
                    if receiver.status == 200:
                        receiver.spans += list(_spans(request, headers))
                self._answer(receiver.status, ExportTraceServiceResponse().SerializeToString())

            def _answer(self, status, payload):
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def hold(self):
        """From now on each export hangs, unanswered, until `release`."""
        self._released.clear()

    def release(self):
        self._released.set()

    def wait_for(self, count: int, timeout: float = 10.0, **match) -> list[Span]:
        """The spans matching `match` (name=, kind=, ...), once there are `count` of them."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = [s for s in self.spans if all(getattr(s, k) == v for k, v in match.items())]
            if len(found) >= count or time.monotonic() > deadline:
                assert len(found) >= count, f"{len(found)} of {count} spans {match} arrived: {self.spans}"
                return found
            time.sleep(0.02)

    def close(self):
        self.release()
        self.server.shutdown()
        self.server.server_close()


def _spans(request, headers):
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield Span(name=span.name, kind=KINDS.get(span.kind, str(span.kind)), trace_id=span.trace_id.hex(),
                           span_id=span.span_id.hex(), parent_id=span.parent_span_id.hex(),
                           attributes={a.key: _value(a.value) for a in span.attributes},
                           status_code=span.status.code, status_message=span.status.message,
                           start_ns=span.start_time_unix_nano, end_ns=span.end_time_unix_nano,
                           service=resource.get("service.name"), headers=headers)
