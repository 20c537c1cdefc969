"""Traces of calls, after OpenTelemetry's GenAI semantic conventions.

In the gateway each model call is one SERVER span (`{gen_ai.operation.name} {gen_ai.request.model}`,
from the request's arrival to the end of its answer or stream) with one CLIENT span per upstream
attempt under it: retries and fallbacks are siblings, each naming its deployment and its error.
An incoming W3C `traceparent`/`tracestate` makes the SERVER span its child, and every upstream
request of an attempt carries the CLIENT span's `traceparent`, so chained gateways make one trace.
Without one, a client's `metadata.trace_id` fixes the trace id (`trace_id_for`), so calls that send
the same one are one trace. In the SDK (`dheera_ai.callbacks = ["otel"]`) there is no SERVER span:
the CLIENT spans are children of the application's current span.

A call's spans end together when it is recorded (each with its own end time), so a destination
can take only successful or only failed calls. Keys never reach a span: the caller is its key
alias, user and team; metadata is redacted as the logs redact it; message content is recorded
only for a destination that captures it.
"""

from __future__ import annotations

import functools
import hashlib
import re
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import orjson
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from dheera_ai import hookimpl
from dheera_ai.redact import redact, redact_data
from plugins.observability import content, exporters
from plugins.observability.content import sse_documents

SCOPE = "dheera_ai"
PROPAGATOR = TraceContextTextMapPropagator()
HEX_TRACE_ID = re.compile(r"^[0-9a-fA-F]{32}$")
# gen_ai.operation.name by call type; the others keep their own name (no convention covers them).
OPERATIONS = {"chat_completions": "chat", "anthropic_messages": "chat", "responses": "chat",
              "completions": "text_completion", "embeddings": "embeddings"}
# gen_ai.provider.name: the convention's well-known values, by our provider prefix.
PROVIDERS = {"azure": "azure.ai.openai", "gemini": "gcp.gemini", "mistral": "mistral_ai", "xai": "x_ai",
             "dheera_ai_proxy": "dheera_ai"}
REQUEST_PARAMETERS = (("max_tokens", "gen_ai.request.max_tokens"),
                      ("max_completion_tokens", "gen_ai.request.max_tokens"),
                      ("max_output_tokens", "gen_ai.request.max_tokens"), ("temperature", "gen_ai.request.temperature"),
                      ("top_p", "gen_ai.request.top_p"), ("top_k", "gen_ai.request.top_k"),
                      ("frequency_penalty", "gen_ai.request.frequency_penalty"),
                      ("presence_penalty", "gen_ai.request.presence_penalty"), ("seed", "gen_ai.request.seed"))


def trace_id_for(value: str) -> int:
    """A client's `trace_id` as a W3C trace id: 32 hex digits as they are; anything else mapped
    deterministically (SHA-256), so every call sending it lands in the same trace."""
    if HEX_TRACE_ID.match(value) and int(value, 16):
        return int(value, 16)
    return int.from_bytes(hashlib.sha256(value.encode()).digest()[:16], "big") or 1


@dataclass
class CallSpans:
    server: object = None  # the SERVER span (gateway), else None
    parent: object = None  # the context the CLIENT spans are children of
    attempts: list = field(default_factory=list)  # [span, end time ns, error]
    open: object = None  # the attempt under way
    requested: dict | None = None  # request_attributes of the call's body, for each of its spans

    def requested_of(self, call) -> dict:
        if self.requested is None:
            self.requested = request_attributes(call.body)
        return self.requested


class Tracing:
    """The tracing plugin; one per process (gateway worker or SDK)."""

    def __init__(self, tracer, capture_content: bool, provider=None, server_spans: bool = True):
        self.tracer = tracer
        self.capture_content = capture_content
        self.provider = provider  # ours to shut down; None when it is the application's
        self.server_spans = server_spans

    @classmethod
    def for_gateway(cls, callbacks: dict, drops) -> "Tracing":
        from plugins.observability.recorder import Recorder

        provider, processors, captured = exporters.tracer_provider(callbacks, drops)
        return cls(Recorder(provider, processors, SCOPE), captured, provider=provider)

    @classmethod
    def for_sdk(cls) -> "Tracing":
        """The application's tracer provider when it set one up; else ours, from OTEL_* alone."""
        from opentelemetry.sdk.trace import TracerProvider

        from plugins.observability import Drops

        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            return cls(current.get_tracer(SCOPE), exporters.otel_capture_content({}), server_spans=False)
        import atexit

        provider, _, captured = exporters.tracer_provider({"otel": {"success": True, "failure": True}}, Drops())
        atexit.register(provider.shutdown)  # what is queued is sent when the application exits
        return cls(provider.get_tracer(SCOPE), captured, provider=provider, server_spans=False)

    def shutdown(self, timeout: float = 10.0) -> None:
        if self.provider is not None:
            self.provider.shutdown()

    # --- hooks ---------------------------------------------------------------------------------

    @hookimpl
    def dheera_ai_pre_call(self, call):
        self._spans(call)

    @hookimpl
    def dheera_ai_attempt_started(self, call, deployment):
        spans = self._spans(call)
        model = deployment.model
        attributes = {"gen_ai.operation.name": operation(call), "gen_ai.provider.name": provider_name(deployment),
                      "gen_ai.request.model": model, "dheera_ai.call_id": call.call_id,
                      "dheera_ai.model_group": deployment.model_name, "dheera_ai.deployment_id": deployment.id,
                      "dheera_ai.attempt": len(spans.attempts) + 1}
        address, port = server_address(deployment)
        if address:
            attributes["server.address"] = address
            if port:
                attributes["server.port"] = port
        attributes.update(spans.requested_of(call))
        if not self.server_spans:
            attributes["dheera_ai.sdk"] = True
        span = self.tracer.start_span(f"{attributes['gen_ai.operation.name']} {model}", context=spans.parent,
                                      kind=SpanKind.CLIENT, attributes=attributes)
        spans.open = [span, None, None]
        spans.attempts.append(spans.open)
        carrier: dict = {}
        PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        call.upstream_headers = carrier

    @hookimpl
    def dheera_ai_attempt_ended(self, call, deployment, error):
        spans = call.telemetry
        if spans is not None and spans.open is not None:
            spans.open[1], spans.open[2] = time.time_ns(), error
            spans.open = None

    @hookimpl(trylast=True)  # after spend logging: the call's cost is known
    def dheera_ai_post_call_success(self, call, outcome):
        self._end(call, outcome)

    @hookimpl(trylast=True)
    def dheera_ai_post_call_failure(self, call, outcome):
        self._end(call, outcome)

    # --- spans ---------------------------------------------------------------------------------

    def _spans(self, call) -> CallSpans:
        spans = call.telemetry
        if isinstance(spans, CallSpans):
            return spans
        spans = call.telemetry = CallSpans()
        if not self.server_spans:
            spans.parent = otel_context.get_current()
            return spans
        headers = call.headers  # lower-cased names
        incoming = PROPAGATOR.extract({k: headers[k] for k in ("traceparent", "tracestate") if k in headers}) \
            if "traceparent" in headers else otel_context.Context()  # a root, whatever is current
        start = time.time_ns() - int((time.perf_counter() - call.started) * 1e9)
        token = None
        if not trace.get_current_span(incoming).get_span_context().is_valid:
            client_trace = call.metadata.get("trace_id") if isinstance(call.metadata, dict) else None
            if client_trace is not None:
                token = exporters.forced_trace_id.set(trace_id_for(str(client_trace)))
        try:
            spans.server = self.tracer.start_span(f"{operation(call)} {call.model}", context=incoming,
                                                  kind=SpanKind.SERVER, start_time=start)
        finally:
            if token is not None:
                exporters.forced_trace_id.reset(token)
        spans.parent = trace.set_span_in_context(spans.server)
        return spans

    def _end(self, call, outcome) -> None:
        spans = self._spans(call)
        now = time.time_ns()
        error = outcome.error
        answered = response_attributes(call, outcome)
        described = {**call_attributes(call, outcome, spans.requested_of(call)), **answered}
        if self.capture_content:
            said = content.raw(call, outcome)
            # Ours: raw here, and the exporters' thread writes the convention's form. The
            # application's exporters know nothing of that: finished now (the SDK's path).
            described.update(said if self.provider is not None else content.finished(said, True))
        token = exporters.ending.set("failure" if error is not None else "success")
        # A cache hit never reached the upstream: the gateway's trace shows no request to it (the
        # attempt's span is left unended, so it is never exported); the SERVER span says hit.
        hit = call.cache is not None and call.cache.result == "hit"
        try:
            last = len(spans.attempts) - 1
            for index, (span, ended, failure) in enumerate(spans.attempts):
                if index == last and failure is None:
                    if self.server_spans and hit:
                        continue
                    if self.server_spans:
                        span.set_attributes(answered)
                    else:  # the SDK's span is the call's only one; its model is the upstream's
                        described.pop("gen_ai.request.model")
                        span.set_attributes(described)
                    failure = error
                _finish(span, failure, ended or now)
            if spans.server is not None:
                described["http.response.status_code"] = outcome.status
                spans.server.set_attributes(described)
                _finish(spans.server, error, now)
        finally:
            exporters.ending.reset(token)
        call.telemetry = None


def _finish(span, error, end_time: int) -> None:
    if error is not None:
        span.set_attribute("error.type", type(error).__name__)
        span.set_status(Status(StatusCode.ERROR, redact(str(getattr(error, "message", error)))[:500]))
    span.end(end_time=end_time)


def operation(call) -> str:
    return OPERATIONS.get(call.call_type, call.call_type)


def provider_name(deployment) -> str:
    return PROVIDERS.get(deployment.provider, deployment.provider)


def server_address(deployment) -> tuple[str | None, int | None]:
    base = deployment.params.get("api_base")
    return _host_and_port(str(base)) if base else (None, None)


@functools.lru_cache(maxsize=1024)  # a config's few api_base values, parsed on every attempt
def _host_and_port(base: str) -> tuple[str | None, int | None]:
    try:
        parts = urlsplit(base)
        return parts.hostname, parts.port
    except ValueError:
        return None, None


def request_attributes(body: dict) -> dict:
    out = {}
    for name, attribute in REQUEST_PARAMETERS:
        value = body.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and attribute not in out:
            out[attribute] = value
    stop = body.get("stop")
    if isinstance(stop, str):
        out["gen_ai.request.stop_sequences"] = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        out["gen_ai.request.stop_sequences"] = stop
    return out


def call_attributes(call, outcome, requested: dict) -> dict:
    """What the SERVER span says about the call: the convention's names and ours (`dheera_ai.*`),
    with `requested` (`request_attributes` of its body)."""
    deployment, principal = call.deployment, call.principal
    out = {"gen_ai.operation.name": operation(call), "gen_ai.request.model": call.model,
           "dheera_ai.call_id": call.call_id, "dheera_ai.stream": call.stream,
           "dheera_ai.retries": call.attempted_retries, "dheera_ai.fallbacks": call.attempted_fallbacks}
    out.update(requested)
    if deployment is not None:
        out["gen_ai.provider.name"] = provider_name(deployment)
        out["dheera_ai.model_group"] = deployment.model_name
        out["dheera_ai.deployment_id"] = deployment.id
    if principal is not None:
        for name in ("key_alias", "user_id", "team_id"):
            value = getattr(principal, name, None)
            if value:
                out[f"dheera_ai.{name}"] = str(value)
    if call.tags:
        out["dheera_ai.tags"] = [str(t) for t in call.tags]
    if call.cost is not None:
        out["dheera_ai.cost_usd"] = float(call.cost)
    cache = call.cache  # None when no response cache looked the call up
    if cache is not None:
        out["dheera_ai.cache_hit"] = cache.result == "hit"
        if cache.similarity is not None:
            out["dheera_ai.cache_similarity"] = float(cache.similarity)
    if outcome.stream_cut:
        out["dheera_ai.stream_cut"] = True  # the client hung up before the stream's end
    if isinstance(call.metadata, dict):
        for key, value in redact_data(call.metadata).items():
            out[f"dheera_ai.metadata.{key}"] = attribute_value(value)
    return out


def response_attributes(call, outcome) -> dict:
    """Usage, and the answer's id, model and finish reasons (from a plain body, or a stream's chunks)."""
    out = {}
    usage = outcome.usage
    if usage is not None:
        out["gen_ai.usage.input_tokens"] = usage.prompt_tokens
        out["gen_ai.usage.output_tokens"] = usage.completion_tokens
    for document in answer_documents(call, outcome):
        if document.get("id") and "gen_ai.response.id" not in out:
            out["gen_ai.response.id"] = str(document["id"])
        if document.get("model") and "gen_ai.response.model" not in out:
            out["gen_ai.response.model"] = str(document["model"])
        reasons = [c.get("finish_reason") for c in document.get("choices") or () if isinstance(c, dict)]
        reasons += [document["stop_reason"]] if document.get("stop_reason") else []
        reasons = [str(r) for r in reasons if r]
        if reasons:
            out["gen_ai.response.finish_reasons"] = reasons
    return out


def answer_documents(call, outcome) -> list[dict]:
    """The answer as JSON documents: the plain body, or a stream's first and last few events."""
    reply = outcome.reply
    if reply is None:
        return []
    if reply.stream is None:
        if reply.data is not None:
            return [reply.data] if isinstance(reply.data, dict) else []
        if reply.body and reply.content_type.startswith("application/json"):
            try:
                parsed = orjson.loads(reply.body)
            except orjson.JSONDecodeError:
                return []
            return [parsed] if isinstance(parsed, dict) else []
        return []
    chunks = call.delivered
    return [d for d in sse_documents(chunks[:1] + chunks[-3:] if len(chunks) > 4 else chunks)]


def attribute_value(value):
    """An OTel attribute value: a scalar or a list of one scalar type; anything else as JSON text."""
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    return orjson.dumps(value, default=str).decode()
