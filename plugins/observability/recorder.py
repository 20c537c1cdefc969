"""The gateway's spans, recorded lean and ended into the SDK's own span processors.

The SDK's `Tracer` checks and copies every attribute as it is set (`BoundedAttributes`), takes a
lock per change and runs the processors' `on_start`: ~22 us for a span of 30 attributes, and a
call makes two. The gateway's attributes are already clean (`tracing` builds them from scalars
and lists of strings), so `Recorder` keeps them in a plain dict and, when the span ends, hands a
`ReadableSpan` to the same processors the provider has: its batch processors, exporters, sampler,
id generator, resource and span limits are the SDK's, unchanged. Only spans the gateway makes for
its own destinations go this way; an application's tracer provider (the SDK's path) gets its
spans through its own tracer.
"""

from __future__ import annotations

import time

from opentelemetry import trace
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, SynchronousMultiSpanProcessor, TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags


class Recorder(trace.Tracer):
    """A tracer for `provider`'s spans whose processors are `processors` (the provider's own)."""

    def __init__(self, provider: TracerProvider, processors: SynchronousMultiSpanProcessor, scope: str):
        self.provider = provider
        self.processors = processors
        self.scope = InstrumentationScope(scope)
        self.limits = SpanLimits()  # OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT and the others, as the SDK reads them

    def start_span(self, name, context=None, kind=SpanKind.INTERNAL, attributes=None, links=None, start_time=None,
                   record_exception=True, set_status_on_exception=True) -> trace.Span:
        parent = trace.get_current_span(context).get_span_context()
        if not parent.is_valid:
            parent = None
        ids = self.provider.id_generator
        trace_id = parent.trace_id if parent is not None else ids.generate_trace_id()
        sampled = self.provider.sampler.should_sample(context, trace_id, name, kind, attributes, links)
        flags = TraceFlags.SAMPLED if sampled.decision.is_sampled() else TraceFlags.DEFAULT
        if (parent.trace_flags.random_trace_id if parent is not None else ids.is_trace_id_random()):
            flags |= TraceFlags.RANDOM_TRACE_ID  # W3C level 2's "random" flag, as the SDK's tracer sets it
        span_context = SpanContext(trace_id, ids.generate_span_id(), is_remote=False, trace_flags=TraceFlags(flags),
                                   trace_state=sampled.trace_state)
        if not sampled.decision.is_recording():
            return trace.NonRecordingSpan(span_context)
        span = RecordedSpan(self, name, span_context, parent, kind, start_time or time.time_ns())
        span.set_attributes(sampled.attributes)
        span.set_attributes(attributes)
        return span

    def start_as_current_span(self, name, context=None, kind=SpanKind.INTERNAL, attributes=None, links=None,
                              start_time=None, record_exception=True, set_status_on_exception=True,
                              end_on_exit=True):
        span = self.start_span(name, context, kind, attributes, links, start_time)
        return trace.use_span(span, end_on_exit=end_on_exit, record_exception=record_exception,
                              set_status_on_exception=set_status_on_exception)


class RecordedSpan(trace.Span):
    """A span's fields until it ends; then one `ReadableSpan` for the processors."""

    def __init__(self, recorder: Recorder, name: str, context: SpanContext, parent, kind, start_time: int):
        self.recorder = recorder
        self.name = name
        self.context = context
        self.parent = parent
        self.kind = kind
        self.start_time = start_time
        self.attributes: dict = {}
        self.events: list = []
        self.status = Status(StatusCode.UNSET)
        self.ended = False

    def get_span_context(self) -> SpanContext:
        return self.context

    def set_attributes(self, attributes) -> None:
        if not attributes or self.ended:
            return
        limit, length = self.recorder.limits.max_span_attributes, self.recorder.limits.max_span_attribute_length
        kept = self.attributes
        if length is None and (limit is None or len(kept) + len(attributes) <= limit):  # the usual case
            kept.update({key: value for key, value in attributes.items() if value is not None})
            return
        for key, value in attributes.items():
            if value is None:
                continue  # as the SDK does: an attribute without a value is not recorded
            if length is not None and isinstance(value, str):
                value = value[:length]
            if key in kept or limit is None or len(kept) < limit:
                kept[key] = value

    def set_attribute(self, key: str, value) -> None:
        self.set_attributes({key: value})

    def add_event(self, name: str, attributes=None, timestamp=None) -> None:
        if not self.ended:
            self.events.append(Event(name, attributes, timestamp))

    def add_link(self, context, attributes=None) -> None:
        pass  # the gateway's spans have no links

    def update_name(self, name: str) -> None:
        self.name = name

    def is_recording(self) -> bool:
        return not self.ended

    def set_status(self, status, description=None) -> None:
        if isinstance(status, Status):
            self.status = status
        else:
            self.status = Status(status, description)

    def record_exception(self, exception, attributes=None, timestamp=None, escaped=False) -> None:
        self.add_event("exception", {"exception.type": type(exception).__name__, "exception.message": str(exception),
                                     **(attributes or {})}, timestamp)

    def end(self, end_time=None) -> None:
        if self.ended:
            return
        self.ended = True
        recorder = self.recorder
        recorder.processors.on_end(ReadableSpan(
            name=self.name, context=self.context, parent=self.parent, resource=recorder.provider.resource,
            attributes=self.attributes, events=tuple(self.events), kind=self.kind, status=self.status,
            start_time=self.start_time, end_time=end_time or time.time_ns(), instrumentation_scope=recorder.scope))
