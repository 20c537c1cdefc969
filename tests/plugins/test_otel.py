"""OpenTelemetry traces: `callbacks: ["otel"]` sends GenAI-convention spans to an OTLP/HTTP collector
(a local receiver decoding the protobuf): one SERVER span per call, one CLIENT span per upstream
attempt, W3C trace context in and out, chained gateways in one trace, the collector never in a call's way."""

import json
import os
import time

import pytest
import requests

from tests.conftest import MASTER_KEY
from tests.support.fake_upstream import chat_chunks
from tests.support.otlp import OtlpReceiver
from tests.support.servers import LiveServer, hang_up_mid_stream

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hi"}]}


@pytest.fixture(autouse=True)
def quick_batches(monkeypatch):
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # ms between exports (5 s by default)


@pytest.fixture
def collector():
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


def traced(config, collector, **otel):
    return {**config, "dheera_ai_settings": {"callbacks": ["otel"]},
            "callback_settings": {"otel": {"endpoint": collector.url, **otel}}}


@pytest.fixture
def gateway(make_app, base_config, collector):
    return make_app(traced(base_config, collector)).test_client()


def call(gateway, body=CHAT, headers=None):
    response = gateway.post("/v1/chat/completions", json=body, headers={**AUTH, **(headers or {})})
    response.get_data()  # a stream is read to its end
    return response


def test_a_call_is_a_server_span_with_one_client_span_per_attempt(gateway, collector, upstream):
    response = call(gateway, {**CHAT, "max_tokens": 20, "temperature": 0.2, "top_p": 0.9})
    assert response.status_code == 200

    [server] = collector.wait_for(1, kind="SERVER")
    [client] = collector.wait_for(1, kind="CLIENT")
    assert server.name == client.name == "chat gpt-4o-mini"
    assert server.service == "dheera-ai"
    assert (client.trace_id, client.parent_id) == (server.trace_id, server.span_id)
    assert server.parent_id == ""
    assert server.start_ns <= client.start_ns <= client.end_ns <= server.end_ns
    call_id = response.headers["x-dheera-ai-call-id"]
    for span in (server, client):
        a = span.attributes
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.provider.name"] == "openai"
        assert a["gen_ai.request.max_tokens"] == 20
        assert a["gen_ai.request.temperature"] == 0.2 and a["gen_ai.request.top_p"] == 0.9
        assert a["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
        assert a["gen_ai.response.id"] == "chatcmpl-fake123"
        assert a["gen_ai.response.finish_reasons"] == ["stop"]
        assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (9, 7)
        assert a["dheera_ai.call_id"] == call_id
        assert a["dheera_ai.deployment_id"] == response.headers["x-dheera-ai-model-id"]
        assert a["dheera_ai.model_group"] == "gpt-4o-mini"
        assert not span.failed
    assert client.attributes["server.address"] == "127.0.0.1"
    assert client.attributes["server.port"] == upstream.port
    assert server.attributes["dheera_ai.cost_usd"] == float(response.headers["x-dheera-ai-response-cost"])
    assert server.attributes["dheera_ai.retries"] == 0
    assert server.attributes["http.response.status_code"] == 200
    # The upstream request carried the CLIENT span's context.
    assert upstream.last.headers["traceparent"] == f"00-{client.trace_id}-{client.span_id}-03"


def test_the_caller_is_named_by_alias_never_by_key_and_metadata_is_redacted(gateway, collector):
    gateway.post("/user/new", headers=AUTH, json={"user_id": "ann", "auto_create_key": False})
    made = gateway.post("/key/generate", headers=AUTH, json={"key_alias": "ann-laptop", "user_id": "ann",
                                                               "tags": ["team:search"]}).get_json()
    response = call(gateway, {**CHAT, "metadata": {"api_key": "sk-leaked-1234567890", "ticket": "T-9",
                                                     "nested": {"password": "hunter2"}}},
                    headers={"Authorization": f"Bearer {made['key']}"})
    assert response.status_code == 200

    spans = collector.wait_for(2)
    [server] = [s for s in spans if s.kind == "SERVER"]
    a = server.attributes
    assert (a["dheera_ai.key_alias"], a["dheera_ai.user_id"]) == ("ann-laptop", "ann")
    assert a["dheera_ai.tags"] == ["team:search"]
    assert a["dheera_ai.metadata.ticket"] == "T-9"
    everything = json.dumps([s.attributes for s in spans])
    for secret in (made["key"], made["token"], "sk-leaked-1234567890", "hunter2", MASTER_KEY):
        assert secret not in everything
    # Message content is off by default.
    assert "Say hi" not in everything and "Hello from the fake upstream" not in everything


def test_message_content_is_recorded_when_asked(make_app, base_config, collector, monkeypatch):
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    gateway = make_app(traced(base_config, collector)).test_client()
    call(gateway)

    [server] = collector.wait_for(1, kind="SERVER")
    assert json.loads(server.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Say hi"}]}]
    assert json.loads(server.attributes["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Hello from the fake upstream."}],
         "finish_reason": "stop"}]


def test_retries_and_fallbacks_are_sibling_client_spans_with_their_errors(make_app, upstream, collector, tmp_path):
    config = {"model_list": [
        {"model_name": "primary", "dheera_ai_params": {"model": "openai/gpt-4o", "api_base": upstream.url + "/p/v1",
                                                        "api_key": "sk-a"}, "model_info": {"id": "dep-primary"}},
        {"model_name": "backup", "dheera_ai_params": {"model": "openai/gpt-4o-mini", "api_base": upstream.url + "/b/v1",
                                                       "api_key": "sk-b"}, "model_info": {"id": "dep-backup"}}],
        "router_settings": {"num_retries": 1, "retry_after": 0, "fallbacks": [{"primary": ["backup"]}]},
        "general_settings": {"master_key": MASTER_KEY, "database_url": f"sqlite:///{tmp_path}/s.sqlite3"}}
    upstream.always("/p/", status=503)
    gateway = make_app(traced(config, collector)).test_client()
    response = call(gateway, {**CHAT, "model": "primary"})
    assert response.status_code == 200

    [server] = collector.wait_for(1, kind="SERVER")
    attempts = sorted(collector.wait_for(3, kind="CLIENT"), key=lambda s: s.start_ns)
    assert [s.parent_id for s in attempts] == [server.span_id] * 3
    assert [s.attributes["dheera_ai.deployment_id"] for s in attempts] == ["dep-primary", "dep-primary", "dep-backup"]
    assert [s.name for s in attempts] == ["chat gpt-4o", "chat gpt-4o", "chat gpt-4o-mini"]
    assert [s.failed for s in attempts] == [True, True, False]
    assert [s.attributes.get("error.type") for s in attempts] == ["ServiceUnavailableError"] * 2 + [None]
    assert "upstream failure 503" in attempts[0].status_message
    assert (server.attributes["dheera_ai.retries"], server.attributes["dheera_ai.fallbacks"]) == (1, 1)
    # Each attempt told its upstream which span it was.
    sent = [r.headers["traceparent"].split("-")[2] for r in upstream.requests]
    assert sent == [s.span_id for s in attempts]


def test_a_failed_call_marks_its_spans(make_app, base_config, upstream, collector):
    upstream.always("/v1/", status=400, message="bad things")
    gateway = make_app(traced(base_config, collector)).test_client()
    assert call(gateway).status_code == 400

    [server] = collector.wait_for(1, kind="SERVER")
    [client] = collector.wait_for(1, kind="CLIENT")
    assert server.failed and client.failed
    assert server.attributes["error.type"] == client.attributes["error.type"] == "BadRequestError"
    assert server.attributes["http.response.status_code"] == 400


def test_a_cache_hit_says_so_on_its_span_and_shows_no_upstream_request(make_app, base_config, collector, upstream):
    config = traced(base_config, collector)
    config["dheera_ai_settings"].update({"cache": True, "cache_params": {"type": "local"}})
    gateway = make_app(config).test_client()
    for _ in range(2):
        assert call(gateway).status_code == 200
    assert call(gateway, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a miss"}]}
                ).status_code == 200
    first, second, third = sorted(collector.wait_for(3, kind="SERVER"), key=lambda span: span.start_ns)
    assert [span.attributes["dheera_ai.cache_hit"] for span in (first, second, third)] == [False, True, False]
    assert upstream.count("/v1/chat/completions") == 2
    # Spans are exported in the order they end: the third call's attempt comes after any of the hit's.
    attempts = collector.wait_for(2, kind="CLIENT")
    assert sorted(span.trace_id for span in attempts) == sorted([first.trace_id, third.trace_id])


def test_an_incoming_traceparent_makes_the_call_its_child(gateway, collector, upstream):
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    call(gateway, headers={"traceparent": parent, "tracestate": "vendor=1"})

    [server] = collector.wait_for(1, kind="SERVER")
    assert (server.trace_id, server.parent_id) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    sent = upstream.last.headers
    assert sent["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    assert sent["tracestate"] == "vendor=1"


def test_a_client_trace_id_groups_calls_into_one_trace(gateway, collector):
    for _ in range(2):
        call(gateway, {**CHAT, "metadata": {"trace_id": "conversation-7"}})
    call(gateway, {**CHAT, "metadata": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}})
    call(gateway)

    servers = collector.wait_for(4, kind="SERVER")
    ids = [s.trace_id for s in sorted(servers, key=lambda s: s.start_ns)]
    assert ids[0] == ids[1] and len(ids[0]) == 32
    assert ids[2] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert len(set(ids)) == 3


def test_two_chained_gateways_make_one_trace(make_app, base_config, collector):
    inner = LiveServer(make_app(traced(base_config, collector)))
    try:
        outer = make_app(traced({**base_config, "model_list": [{"model_name": "gpt-4o-mini", "dheera_ai_params": {
            "model": "dheera_ai_proxy/gpt-4o-mini", "api_base": inner.url, "api_key": MASTER_KEY}}]}, collector))
        # The outer gateway is called through its test client; the hop between the two is real HTTP.
        assert call(outer.test_client()).status_code == 200
    finally:
        inner.close()

    spans = collector.wait_for(4)
    assert len({s.trace_id for s in spans}) == 1
    servers = {s.attributes["gen_ai.provider.name"]: s for s in spans if s.kind == "SERVER"}
    clients = {s.attributes["gen_ai.provider.name"]: s for s in spans if s.kind == "CLIENT"}
    outer_server, inner_server = servers["dheera_ai"], servers["openai"]
    assert outer_server.parent_id == ""
    assert clients["dheera_ai"].parent_id == outer_server.span_id
    assert inner_server.parent_id == clients["dheera_ai"].span_id
    assert clients["openai"].parent_id == inner_server.span_id


def test_a_stream_ends_its_span_when_it_ends(gateway, collector, upstream):
    upstream.stream(chat_chunks())
    response = call(gateway, {**CHAT, "stream": True})
    assert b"[DONE]" in response.data

    [server] = collector.wait_for(1, kind="SERVER")
    [client] = collector.wait_for(1, kind="CLIENT")
    assert server.attributes["dheera_ai.stream"] is True
    assert (server.attributes["gen_ai.usage.input_tokens"], server.attributes["gen_ai.usage.output_tokens"]) == (9, 4)
    assert "dheera_ai.stream_cut" not in server.attributes
    assert client.end_ns <= server.end_ns


def test_a_client_hanging_up_mid_stream_is_marked(make_app, base_config, collector, upstream):
    server = LiveServer(make_app(traced(base_config, collector)))
    try:
        upstream.stream(chat_chunks(words=["w"] * 50), event_delay=0.05)
        hang_up_mid_stream(server.url, MASTER_KEY, {**CHAT, "stream": True}, lambda got: got.count(b"data:") >= 2)
        [span] = collector.wait_for(1, kind="SERVER")
    finally:
        server.close()
    assert span.attributes["dheera_ai.stream_cut"] is True
    assert span.attributes["dheera_ai.stream"] is True


def test_the_sampler_the_environment_names_decides(make_app, base_config, collector, upstream, monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    gateway = make_app(traced(base_config, collector)).test_client()
    assert call(gateway).status_code == 200
    time.sleep(0.5)  # ten export intervals
    assert collector.spans == []  # nothing recorded, nothing sent
    # The context still travels upstream, marked not sampled, so the next hop drops it too.
    assert upstream.last.headers["traceparent"].endswith("-02")


def test_a_span_keeps_at_most_the_attribute_count_limit(make_app, base_config, collector, monkeypatch):
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "12")
    gateway = make_app(traced(base_config, collector)).test_client()
    metadata = {f"note_{i}": "x" for i in range(50)}  # a client's metadata cannot grow a span without bound
    assert call(gateway, {**CHAT, "metadata": metadata}).status_code == 200
    [server] = collector.wait_for(1, kind="SERVER")
    assert len(server.attributes) == 12
    assert server.attributes["gen_ai.operation.name"] == "chat"  # the first ones set are the ones kept


def test_a_collector_that_refuses_changes_nothing_for_callers(make_app, base_config, tmp_path):
    dead = OtlpReceiver()
    dead.close()  # nothing listens there any more
    gateway = make_app(traced(base_config, dead, timeout=1)).test_client()
    assert [call(gateway).status_code for _ in range(5)] == [200] * 5


def test_a_hanging_collector_holds_no_call_and_drops_are_counted(make_app, base_config, collector, monkeypatch):
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
    collector.hold()
    gateway = make_app(traced(base_config, collector, timeout=2)).test_client()
    try:
        # Every call is answered while the collector sits on its first export, unanswered.
        assert [call(gateway).status_code for _ in range(20)] == [200] * 20
        assert collector.held >= 1 and collector.spans == []
        metrics = gateway.get("/metrics", headers=AUTH).get_data(as_text=True)
    finally:
        collector.release()
    dropped = [line for line in metrics.splitlines() if line.startswith("dheera_ai_callback_dropped_total")]
    assert dropped and dropped[0].startswith('dheera_ai_callback_dropped_total{callback="otel"}')
    assert float(dropped[0].split()[-1]) >= 30  # 40 spans, 4 fit in the queue, 2 in the hanging export


def test_spans_leave_in_exports_of_at_most_128_so_no_encoding_holds_the_calls_long(make_app, base_config, collector,
                                                                                   monkeypatch):
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "3000")  # spans pile up: only a full batch leaves early
    gateway = make_app(traced(base_config, collector)).test_client()
    for _ in range(100):
        assert call(gateway).status_code == 200
    assert len(collector.wait_for(200)) == 200  # 100 SERVER + 100 CLIENT spans
    assert max(collector.batch_sizes) <= 128 and sum(collector.batch_sizes) == 200, collector.batch_sizes


def test_no_callback_no_tracing(app, collector):
    engine = app.extensions["dheera_ai"]
    names = [name for name, _ in engine.plugin_manager.list_name_plugin()]
    assert not [n for n in names if n.startswith("callback-")]


def test_the_real_gateway_exports_from_its_workers_and_flushes_on_sigterm(tmp_path, collector):
    """gunicorn with two workers: each builds its exporter after fork (the master starts no
    thread), and a SIGTERM sends what the batch processors still hold."""
    import yaml

    from tests.support.process import GatewayProcess

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "model_list": [{"model_name": "demo", "dheera_ai_params": {"model": "mock/demo"}}],
        "dheera_ai_settings": {"callbacks": ["otel"]}}))
    # Batches wait ten minutes: whatever arrives before that was sent by the shutdown.
    gateway = GatewayProcess("--config", str(config), "--workers", "2",
                             env={"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "600000"})
    try:
        gateway.wait_ready()
        for _ in range(6):
            answer = requests.post(gateway.url + "/v1/chat/completions", timeout=10,
                                   json={"model": "demo", "messages": [{"role": "user", "content": "Hi"}]})
            assert answer.status_code == 200
        master = gateway.process.pid
        assert len(gateway.workers()) == 2
        assert os.listdir(f"/proc/{master}/task") == [str(master)]  # one thread: no exporter in the master
        assert collector.spans == []
        assert gateway.stop() == 0
    finally:
        gateway.close()
    servers = collector.wait_for(6, kind="SERVER", timeout=1)
    assert len(collector.wait_for(6, kind="CLIENT", timeout=1)) == 6
    assert {s.name for s in servers} == {"chat demo"}
