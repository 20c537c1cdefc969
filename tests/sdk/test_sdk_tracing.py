"""`dheera_ai.callbacks = ["otel"]`: each SDK call is a CLIENT span in the application's own trace."""

import pytest
from opentelemetry.sdk.trace import TracerProvider

import dheera_ai
from dheera_ai.sdk import client
from tests.support.otlp import OtlpReceiver

HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def collector(monkeypatch):
    receiver = OtlpReceiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.setattr(client, "_tracing", None)  # built afresh, for this receiver
    monkeypatch.setattr(dheera_ai, "callbacks", ["otel"])
    yield receiver
    dheera_ai.callbacks = []
    client._follow_callbacks(client.engine())  # unregistered again
    receiver.close()


def test_an_sdk_call_is_a_client_span_under_the_applications_span(collector, upstream):
    application = TracerProvider().get_tracer("my-app")
    with application.start_as_current_span("handle request") as parent:
        response = dheera_ai.completion(model="openai/gpt-4o-mini", messages=HI, api_base=upstream.url + "/v1",
                                        api_key="sk-upstream-secret", max_tokens=5, metadata={"ticket": "T-3"})
    assert response.choices[0].message.content == "Hello from the fake upstream."

    [span] = collector.wait_for(1)
    context = parent.get_span_context()
    assert (span.kind, span.name) == ("CLIENT", "chat gpt-4o-mini")
    assert (span.trace_id, span.parent_id) == (f"{context.trace_id:032x}", f"{context.span_id:016x}")
    a = span.attributes
    assert (a["gen_ai.provider.name"], a["gen_ai.request.model"], a["gen_ai.request.max_tokens"]) == (
        "openai", "gpt-4o-mini", 5)
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (9, 7)
    assert a["gen_ai.response.id"] == "chatcmpl-fake123"
    assert a["dheera_ai.metadata.ticket"] == "T-3"
    assert "sk-upstream-secret" not in str(a)
    assert upstream.last.headers["traceparent"] == f"00-{span.trace_id}-{span.span_id}-03"


def test_a_failed_sdk_call_is_a_failed_span(collector, upstream):
    upstream.fail(401, "bad key")
    with pytest.raises(dheera_ai.AuthenticationError):
        dheera_ai.completion(model="openai/gpt-4o-mini", messages=HI, api_base=upstream.url + "/v1", api_key="sk-x")

    [span] = collector.wait_for(1)
    assert span.failed and span.attributes["error.type"] == "AuthenticationError"
    assert span.parent_id == ""  # no application span: the call is its own trace


def test_without_the_callback_no_span_and_no_header(collector, upstream):
    dheera_ai.callbacks = []
    dheera_ai.completion(model="openai/gpt-4o-mini", messages=HI, api_base=upstream.url + "/v1", api_key="sk-x")
    assert "traceparent" not in upstream.last.headers
