"""Langfuse, through its OpenTelemetry endpoint: the gateway's spans with Langfuse's attributes.

`{LANGFUSE_HOST}/api/public/otel/v1/traces`, OTLP/HTTP protobuf, Basic auth (public key : secret
key) and `x-langfuse-ingestion-version: 4`, which Langfuse's API reference asks direct OTLP
exporters to send. Each call is one trace whose generation is the call's SERVER span (the SDK's
CLIENT span when no gateway is in between); upstream attempts are plain spans under it, so usage
and cost count once. The seed page's metadata maps as LiteLLM's Langfuse logger maps it:
`generation_name` names the generation, `generation_id` is kept on it, `trace_user_id` is
`user.id`, `session_id` is `session.id`, `trace_name` names the trace, `tags` (with the call's
other tags) are the trace's tags, and calls sending one `trace_id` share one trace
(`tracing.trace_id_for`). Other metadata goes into the generation's metadata.
"""

from __future__ import annotations

import base64
import os

import orjson
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from plugins.observability import content
from plugins.observability.exporters import copy
from plugins.observability.fastencode import BulkOTLPSpanExporter

DEFAULT_HOST = "https://cloud.langfuse.com"
INGESTION_VERSION = "4"
METADATA = "dheera_ai.metadata."
# Metadata keys that become Langfuse fields rather than generation metadata.
MAPPED_METADATA = frozenset({"generation_name", "trace_user_id", "session_id", "trace_name", "tags"})
# Our attributes that describe the caller and the call, kept in the generation's metadata.
CALL_FIELDS = {"dheera_ai.call_id": "call_id", "dheera_ai.key_alias": "key_alias", "dheera_ai.team_id": "team_id",
               "dheera_ai.user_id": "user_api_key_user_id", "dheera_ai.model_group": "model_group",
               "dheera_ai.deployment_id": "model_id", "dheera_ai.retries": "retries",
               "dheera_ai.fallbacks": "fallbacks", "dheera_ai.stream_cut": "stream_cut",
               "dheera_ai.cache_hit": "cache_hit", "dheera_ai.cache_similarity": "cache_similarity"}


def takes(span: ReadableSpan) -> bool:
    """Whether Langfuse gets this span (see above): a generation, or an attempt worth showing."""
    if span.kind != SpanKind.CLIENT or span.attributes.get("dheera_ai.sdk") is True:
        return True
    return span.status.status_code == StatusCode.ERROR or (span.attributes.get("dheera_ai.attempt") or 1) > 1


def exporter(settings: dict) -> "LangfuseExporter":
    public = settings.get("public_key") or os.environ.get("LANGFUSE_PUBLIC_KEY", "")
    secret = settings.get("secret_key") or os.environ.get("LANGFUSE_SECRET_KEY", "")
    host = (settings.get("host") or os.environ.get("LANGFUSE_HOST") or DEFAULT_HOST).rstrip("/")
    auth = base64.b64encode(f"{public}:{secret}".encode()).decode()
    headers = {"Authorization": f"Basic {auth}", "x-langfuse-ingestion-version": INGESTION_VERSION}
    inner = BulkOTLPSpanExporter(endpoint=f"{host}/api/public/otel/v1/traces", headers=headers,
                             timeout=settings.get("timeout") or 10)
    return LangfuseExporter(inner, bool(settings.get("capture_content", True)))


class LangfuseExporter(SpanExporter):
    def __init__(self, inner: SpanExporter, capture_content: bool):
        self.inner = inner
        self.capture_content = capture_content

    def export(self, spans):
        return self.inner.export([self.mapped(span) for span in spans])

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def mapped(self, span: ReadableSpan) -> ReadableSpan:
        attributes = content.finished(span.attributes or {}, self.capture_content)  # read only: `out` is the copy
        generation = span.kind == SpanKind.SERVER or attributes.get("dheera_ai.sdk") is True
        out = {k: v for k, v in attributes.items() if k not in (content.INPUT, content.OUTPUT)}
        if not generation:
            out["langfuse.observation.type"] = "span"
            return copy(span, attributes=out)
        metadata = {k[len(METADATA):]: v for k, v in attributes.items() if k.startswith(METADATA)}
        out["langfuse.observation.type"] = "generation"
        model = attributes.get("gen_ai.response.model") or attributes.get("gen_ai.request.model")
        if model:
            out["langfuse.observation.model.name"] = model
        usage = {name: attributes[key] for name, key in (("input", "gen_ai.usage.input_tokens"),
                                                         ("output", "gen_ai.usage.output_tokens"))
                 if key in attributes}
        if usage:
            usage["total"] = sum(usage.values())
            out["langfuse.observation.usage_details"] = orjson.dumps(usage).decode()
        if "dheera_ai.cost_usd" in attributes:
            cost = {"total": attributes["dheera_ai.cost_usd"]}
            out["langfuse.observation.cost_details"] = orjson.dumps(cost).decode()
        parameters = {k[len("gen_ai.request."):]: v for k, v in attributes.items()
                      if k.startswith("gen_ai.request.") and k != "gen_ai.request.model"}
        if parameters:
            out["langfuse.observation.model.parameters"] = orjson.dumps(parameters, default=list).decode()
        for key, field in ((content.INPUT, "input"), (content.OUTPUT, "output")):
            if key in attributes:
                out[f"langfuse.observation.{field}"] = attributes[key]
        if span.status.status_code == StatusCode.ERROR:
            out["langfuse.observation.level"] = "ERROR"
            out["langfuse.observation.status_message"] = span.status.description or attributes.get("error.type", "")
        tags = list(attributes.get("dheera_ai.tags") or ())
        if tags:
            out["langfuse.trace.tags"] = tags
        for key, target in (("trace_user_id", "user.id"), ("session_id", "session.id"),
                            ("trace_name", "langfuse.trace.name")):
            if metadata.get(key) is not None:
                out[target] = str(metadata[key])
        for key, name in CALL_FIELDS.items():
            if key in attributes:
                out[f"langfuse.observation.metadata.{name}"] = attributes[key]
        for key, value in metadata.items():
            if key not in MAPPED_METADATA:
                out[f"langfuse.observation.metadata.{key}"] = value
        return copy(span, attributes=out, name=str(metadata.get("generation_name") or span.name))
