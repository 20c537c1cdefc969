"""OTLP encoding of a batch of spans with the official opentelemetry-proto classes, built in bulk.

opentelemetry-exporter-otlp-proto-common's encoder makes a Python KeyValue and AnyValue object
per attribute after a chain of isinstance checks; here each span's attributes are handed to the
upb runtime as plain dicts in one constructor call, which it converts in C. Same message, field
for field (tests/plugins/test_otlp_encoding.py compares the two).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.common._internal import _encode_instrumentation_scope, _encode_resource
from opentelemetry.exporter.otlp.proto.common._internal.trace_encoder import (
    _SPAN_KIND_MAP,
    _encode_events,
    _encode_links,
    _span_flags,
)
from opentelemetry.exporter.otlp.proto.http._common import _is_request_too_large
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PBSpan
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

log = logging.getLogger("dheera_ai.callbacks")


def any_value(value) -> dict:
    # bool before int: True is an int in Python.
    if isinstance(value, str):
        return {"string_value": value}
    if isinstance(value, bool):
        return {"bool_value": value}
    if isinstance(value, int):
        return {"int_value": value}
    if isinstance(value, float):
        return {"double_value": value}
    if isinstance(value, bytes):
        return {"bytes_value": value}
    if isinstance(value, Sequence):
        return {"array_value": {"values": [any_value(v) for v in value]}}
    if isinstance(value, dict):
        return {"kvlist_value": {"values": [{"key": str(k), "value": any_value(v)} for k, v in value.items()]}}
    raise TypeError(f"unsupported attribute type {type(value).__name__}")


def attributes(values) -> list[dict] | None:
    if not values:
        return None
    return [{"key": key, "value": any_value(value)} for key, value in values.items()]


def span_message(span: ReadableSpan) -> PBSpan:
    """The SDK encoder's span with its attributes converted in bulk (events and links, rare here,
    go through the SDK's own encoder)."""
    context = span.get_span_context()
    return PBSpan(
        trace_id=context.trace_id.to_bytes(16, "big"), span_id=context.span_id.to_bytes(8, "big"),
        trace_state=",".join(f"{k}={v}" for k, v in context.trace_state.items()) if context.trace_state else None,
        parent_span_id=span.parent.span_id.to_bytes(8, "big") if span.parent else None,
        name=span.name, kind=_SPAN_KIND_MAP[span.kind], start_time_unix_nano=span.start_time,
        end_time_unix_nano=span.end_time, attributes=attributes(span.attributes),
        events=_encode_events(span.events), links=_encode_links(span.links),
        status={"code": span.status.status_code.value, "message": span.status.description},
        dropped_attributes_count=span.dropped_attributes, dropped_events_count=span.dropped_events,
        dropped_links_count=span.dropped_links, flags=_span_flags(span.parent))


def encode(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    grouped = defaultdict(lambda: defaultdict(list))
    for span in spans:
        grouped[span.resource][span.instrumentation_scope or None].append(span_message(span))
    return ExportTraceServiceRequest(resource_spans=[
        ResourceSpans(resource=_encode_resource(resource), schema_url=resource.schema_url, scope_spans=[
            ScopeSpans(scope=_encode_instrumentation_scope(scope), spans=messages,
                       schema_url=scope.schema_url if scope else None)
            for scope, messages in scopes.items()])
        for resource, scopes in grouped.items()])


class BulkOTLPSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP exporter (its session, retries, headers, compression, size limit) sending
    the body `encode` builds. The SDK's own export metrics (off unless
    OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED) are not recorded."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        try:
            body = encode(spans).SerializePartialToString()
        except (TypeError, ValueError) as error:  # a value the protobuf cannot take: the batch fails, logged
            log.error("Failed to encode span batch: %s", error)
            return SpanExportResult.FAILURE
        if _is_request_too_large(body, self._max_request_size):  # as the SDK's export: dropped, logged
            log.warning("Dropping span batch: %d bytes exceeds max_request_size %d", len(body), self._max_request_size)
            return SpanExportResult.FAILURE
        sent = self._client.export(body)
        return SpanExportResult.SUCCESS if sent.success else SpanExportResult.FAILURE
