"""OTLP encoding of a batch of spans with the official opentelemetry-proto classes, built in bulk.

opentelemetry-exporter-otlp-proto-common's encoder makes a Python KeyValue and AnyValue object
per attribute after a chain of isinstance checks, then copies each span into its parent message.
Here each span's message is made in place in the request, and its attributes are merged into it
from bytes: a Span message holding one attribute, serialized by protobuf. Serialized messages
concatenated parse as the messages merged (repeated fields append), so a span's attributes are the
join of those pieces, parsed once, in C. Most of a gateway span's attributes repeat from call to
call (operation, provider, model, group, deployment, caller, server address), and their pieces are
made once and kept (`ATTRIBUTE_BYTES`). Same message, field for field
(tests/plugins/test_otlp_encoding.py compares it with the SDK's): 27 -> 14 us a span, serialized,
on the gateway's spans.
"""

from __future__ import annotations

import logging
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
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PBSpan
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

log = logging.getLogger("dheera_ai.callbacks")

ATTRIBUTE_BYTES: dict = {}  # (key, type, value) -> a one-attribute Span serialized, for scalar values
ATTRIBUTE_BYTES_MAX = 4096  # emptied when full: ids and costs that never repeat must not pile up


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


def attribute_bytes(key: str, value) -> bytes:
    """A Span message holding only this attribute, serialized; kept for a scalar value or a list
    of scalars."""
    kept = _kept_as(key, value)
    encoded = ATTRIBUTE_BYTES.get(kept) if kept is not None else None
    if encoded is None:
        encoded = PBSpan(attributes=[{"key": key, "value": any_value(value)}]).SerializePartialToString()
        if kept is not None:
            if len(ATTRIBUTE_BYTES) >= ATTRIBUTE_BYTES_MAX:
                ATTRIBUTE_BYTES.clear()
            ATTRIBUTE_BYTES[kept] = encoded
    return encoded


def _kept_as(key: str, value):
    # With the type: True == 1 == 1.0, and they hash alike.
    if isinstance(value, (str, bool, int, float)):
        return key, type(value), value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, bool, int, float)) for v in value):
        return key, list, tuple((type(v), v) for v in value)
    return None


def attributes_bytes(values) -> bytes:
    kept, parts = ATTRIBUTE_BYTES, []
    for key, value in values.items():
        try:
            parts.append(kept[key, type(value), value])  # a scalar seen before: most of them
        except (KeyError, TypeError):  # not kept yet, or a list (unhashable)
            parts.append(attribute_bytes(key, value))
    return b"".join(parts)


def span_fields(span: ReadableSpan) -> dict:
    """The fields of the SDK encoder's message for `span`, but its attributes (events and links,
    rare here, go through the SDK's own encoder)."""
    context = span.get_span_context()
    parent = span.parent
    fields = {"trace_id": context.trace_id.to_bytes(16, "big"), "span_id": context.span_id.to_bytes(8, "big"),
              "name": span.name, "kind": _SPAN_KIND_MAP[span.kind], "start_time_unix_nano": span.start_time,
              "end_time_unix_nano": span.end_time,
              "status": {"code": span.status.status_code.value, "message": span.status.description},
              "flags": _span_flags(parent)}
    if context.trace_state:
        fields["trace_state"] = ",".join(f"{k}={v}" for k, v in context.trace_state.items())
    if parent is not None:
        fields["parent_span_id"] = parent.span_id.to_bytes(8, "big")
    if span.events:
        fields["events"] = _encode_events(span.events)
    if span.links:
        fields["links"] = _encode_links(span.links)
    for name, count in (("dropped_attributes_count", span.dropped_attributes),
                        ("dropped_events_count", span.dropped_events), ("dropped_links_count", span.dropped_links)):
        if count:
            fields[name] = count
    return fields


def encode(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    by_resource: dict = {}  # id(resource) -> (its ResourceSpans, {scope: its ScopeSpans})
    for span in spans:
        # Keyed by the resource object: a Resource's hash is a JSON dump of it, and a process's
        # spans share one.
        resource = span.resource
        entry = by_resource.get(id(resource))
        if entry is None:
            entry = by_resource[id(resource)] = (request.resource_spans.add(
                resource=_encode_resource(resource), schema_url=resource.schema_url), {})
        scope = span.instrumentation_scope or None
        scoped = entry[1].get(scope)
        if scoped is None:
            scoped = entry[1][scope] = entry[0].scope_spans.add(
                scope=_encode_instrumentation_scope(scope), schema_url=scope.schema_url if scope else None)
        message = scoped.spans.add(**span_fields(span))
        values = span.attributes
        if values:
            message.MergeFromString(attributes_bytes(values))
    return request


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
