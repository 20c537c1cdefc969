"""The bulk OTLP encoder builds the same ExportTraceServiceRequest as the SDK's encoder, so a
collector decodes exactly what it decoded before (every attribute type the gateway sets)."""

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from plugins.observability.fastencode import encode


class Collect(SpanExporter):
    def __init__(self):
        self.spans = []

    def export(self, spans):
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def test_bulk_encoding_equals_the_sdk_encoding():
    collected = Collect()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(collected))
    tracer = provider.get_tracer("dheera_ai")
    values = {"gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 12, "dheera_ai.cost_usd": 0.25,
              "dheera_ai.cache_hit": False, "gen_ai.response.finish_reasons": ["stop"], "dheera_ai.tags": ("a", "b")}
    with tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.SERVER, attributes=values) as server:
        with tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT) as client:
            client.add_event("gen_ai.choice", {"index": 0})
            client.set_status(Status(StatusCode.ERROR, "upstream 500"))
        server.set_attribute("error.type", "500")
    ours = ExportTraceServiceRequest.FromString(encode(collected.spans).SerializePartialToString())
    sdk = ExportTraceServiceRequest.FromString(encode_spans(collected.spans).SerializePartialToString())
    assert ours == sdk
    spans = ours.resource_spans[0].scope_spans[0].spans
    assert {kv.key for kv in spans[1].attributes} == set(values) | {"error.type"}
    assert spans[0].parent_span_id == spans[1].span_id


def test_kept_attribute_pieces_never_answer_for_another_value_or_type():
    collected = Collect()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(collected))
    tracer = provider.get_tracer("dheera_ai")
    for value in (True, 1, 1.0, "1", True):  # equal or alike in Python, each its own type on the wire
        tracer.start_span("s", attributes={"dheera_ai.value": value}).end()
    for _ in range(2):  # a second time from the kept pieces
        ours = ExportTraceServiceRequest.FromString(encode(collected.spans).SerializePartialToString())
        sdk = ExportTraceServiceRequest.FromString(encode_spans(collected.spans).SerializePartialToString())
        assert ours == sdk
    values = [span.attributes[0].value for span in ours.resource_spans[0].scope_spans[0].spans]
    assert [v.WhichOneof("value") for v in values] == ["bool_value", "int_value", "double_value", "string_value",
                                                        "bool_value"]


def test_kept_list_pieces_tell_their_elements_types_apart():
    collected = Collect()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(collected))
    tracer = provider.get_tracer("dheera_ai")
    for value in ([True], [1], ["stop"], ["stop", "length"], ["stop"]):
        tracer.start_span("s", attributes={"gen_ai.response.finish_reasons": value}).end()
    for _ in range(2):
        ours = ExportTraceServiceRequest.FromString(encode(collected.spans).SerializePartialToString())
        assert ours == ExportTraceServiceRequest.FromString(encode_spans(collected.spans).SerializePartialToString())
