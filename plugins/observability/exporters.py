"""The OpenTelemetry side of the gateway's tracing: one TracerProvider per worker, one bounded
batch processor and OTLP/HTTP exporter per destination (an OTLP collector, Langfuse).

A call's spans all end together, when the call is recorded (`Tracing`), so each destination can
take only successful or only failed calls (`success_callback` / `failure_callback`). What differs
between destinations (message content, Langfuse's attribute names) is applied by the exporter, in
the batch thread, never on the call's path.
"""

from __future__ import annotations

import contextvars
import logging
import os

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SynchronousMultiSpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

from plugins.observability import content
from plugins.observability.fastencode import BulkOTLPSpanExporter

log = logging.getLogger("dheera_ai.callbacks")

DEFAULT_ENDPOINT = "http://localhost:4318"
DEFAULT_SERVICE_NAME = "dheera-ai"

# While a call's spans end: "success" or "failure", read by each destination's processor.
ending = contextvars.ContextVar("dheera_ai_ending", default="success")
# The trace id the next root span takes (a client's `metadata.trace_id`), else a random one.
forced_trace_id = contextvars.ContextVar("dheera_ai_trace_id", default=None)


class CallIdGenerator(RandomIdGenerator):
    def generate_trace_id(self) -> int:
        return forced_trace_id.get() or super().generate_trace_id()


# Spans per export unless OTEL_BSP_MAX_EXPORT_BATCH_SIZE says otherwise. Under gevent the calls
# wait while a batch is mapped and encoded: the SDK's 512 held them ~20 ms here (~70 ms with the
# SDK's own encoder), 128 hold them ~3 ms, and each export's POST lets the calls run. Fewer, larger
# exports cost less a span: a POST through requests is ~0.8 ms of CPU.
EXPORT_BATCH_SPANS = 128


class Destination(BatchSpanProcessor):
    """A batch span processor for one destination: takes the spans of the calls it is for (success,
    failure or both) that `takes(span)` wants, and counts the spans its full queue drops."""

    def __init__(self, name: str, exporter: SpanExporter, directions: dict, drops, takes=None):
        configured = os.environ.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
        super().__init__(exporter, max_export_batch_size=None if configured else EXPORT_BATCH_SPANS)
        self.name = name
        self.wanted = frozenset(d for d in ("success", "failure") if directions.get(d))
        self.drops = drops
        self.takes = takes
        queue = getattr(getattr(self, "_batch_processor", None), "_queue", None)
        self._queue = queue if queue is not None and queue.maxlen else None

    def on_end(self, span: ReadableSpan) -> None:
        if ending.get() not in self.wanted or (self.takes is not None and not self.takes(span)):
            return
        if self._queue is not None and len(self._queue) >= self._queue.maxlen:
            self.drops.dropped(self.name)  # the queue drops its oldest span to take this one
        super().on_end(span)


class ContentExporter(SpanExporter):
    """Passes spans on with their content in the convention's form, or without it (`capture`
    False: the OTLP collector's default)."""

    def __init__(self, inner: SpanExporter, capture: bool):
        self.inner = inner
        self.capture = capture

    def export(self, spans):
        return self.inner.export([with_content(span, self.capture) for span in spans])

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def with_content(span: ReadableSpan, capture: bool) -> ReadableSpan:
    attributes = span.attributes or {}
    finished = content.finished(attributes, capture)
    return span if finished is attributes else copy(span, attributes=finished)


def copy(span: ReadableSpan, *, attributes=None, name=None, context=None, parent=None) -> ReadableSpan:
    """`span` with some of its fields replaced (a ReadableSpan is immutable)."""
    return ReadableSpan(name=name or span.name, context=context or span.context,
                        parent=parent if parent is not None else span.parent, resource=span.resource,
                        attributes=span.attributes if attributes is None else attributes, events=span.events,
                        links=span.links, kind=span.kind, status=span.status, start_time=span.start_time,
                        end_time=span.end_time, instrumentation_scope=span.instrumentation_scope)


def env_flag(name: str) -> bool | None:
    value = os.environ.get(name)
    return None if value is None else value.strip().lower() in ("1", "true", "yes", "on")


def otel_capture_content(settings: dict) -> bool:
    for value in (settings.get("capture_content"), settings.get("message_logging"),
                  env_flag("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")):
        if value is not None:
            return bool(value)
    return False


def otlp_exporter(settings: dict) -> BulkOTLPSpanExporter:
    """The collector's exporter: `callback_settings.otel`, else the standard OTEL_* environment
    (which the SDK's exporter reads itself: endpoint, headers, timeout, compression, TLS)."""
    kwargs = {}
    endpoint = settings.get("endpoint")
    if endpoint:
        kwargs["endpoint"] = traces_url(endpoint)
    elif not (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")):
        kwargs["endpoint"] = traces_url(DEFAULT_ENDPOINT)
    headers = settings.get("headers")
    if headers:
        kwargs["headers"] = parse_headers(headers)
    if settings.get("timeout"):
        kwargs["timeout"] = settings["timeout"]
    return BulkOTLPSpanExporter(**kwargs)


def traces_url(endpoint: str) -> str:
    """OTLP's rule: a base endpoint gets `/v1/traces`; one that already names it stays."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def parse_headers(headers) -> dict:
    if isinstance(headers, dict):
        return {str(k): str(v) for k, v in headers.items()}
    out = {}
    for item in str(headers).split(","):
        name, sep, value = item.partition("=")
        if sep and name.strip():
            out[name.strip()] = value.strip()
    return out


def tracer_provider(callbacks: dict, drops) -> tuple[TracerProvider, SynchronousMultiSpanProcessor, bool]:
    """A provider whose spans go to each configured destination, its processors (each
    destination's), and whether content is recorded at all (some destination takes it)."""
    from plugins.observability import langfuse

    service = (callbacks.get("otel") or {}).get("service_name") or os.environ.get("OTEL_SERVICE_NAME") \
        or DEFAULT_SERVICE_NAME
    processors = SynchronousMultiSpanProcessor()
    provider = TracerProvider(resource=Resource.create({"service.name": service}), id_generator=CallIdGenerator(),
                              active_span_processor=processors, shutdown_on_exit=False)
    otel_content = langfuse_content = False
    if "otel" in callbacks:
        settings = callbacks["otel"]
        otel_content = otel_capture_content(settings)
        exporter = otlp_exporter(settings)
        provider.add_span_processor(Destination("otel", ContentExporter(exporter, otel_content), settings, drops))
    if "langfuse" in callbacks:
        settings = callbacks["langfuse"]
        langfuse_content = bool(settings.get("capture_content", True))
        provider.add_span_processor(Destination("langfuse", langfuse.exporter(settings), settings, drops,
                                                takes=langfuse.takes))
    # The SDK's own warnings are one line per dropped span and per failed batch: our `Drops` says it
    # once a minute, and a destination's failure is its exporter's one line per batch.
    logging.getLogger("opentelemetry.sdk._shared_internal").setLevel(logging.ERROR)
    return provider, processors, otel_content or langfuse_content
