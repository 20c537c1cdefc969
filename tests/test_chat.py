"""Chat completions through the gateway, as the official OpenAI SDK sees them."""

import json
import socket
import time

import openai
import pytest

from tests.conftest import MASTER_KEY
from tests.support.fake_upstream import chat_chunks, chat_completion
from tests.support.servers import hang_up_mid_stream


def ask(client, model="gpt-4o-mini", **kwargs):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi there"}], **kwargs)


# -- answers ------------------------------------------------------------------------------------

def test_plain_chat_reaches_the_upstream_as_openai_would_send_it(openai_client, upstream):
    response = ask(openai_client, temperature=0.2, max_tokens=20)

    assert response.choices[0].message.content == "Hello from the fake upstream."
    assert response.usage.total_tokens == 16
    sent = upstream.last
    assert sent.method == "POST" and sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-upstream-secret"
    assert sent.json["model"] == "gpt-4o-mini"
    assert sent.json["temperature"] == 0.2 and sent.json["max_tokens"] == 20


def test_streamed_chat_arrives_chunk_by_chunk_and_ends(openai_client):
    stream = ask(openai_client, stream=True)
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the stream."
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_usage_is_given_when_the_client_asks_for_it(openai_client):
    chunks = list(ask(openai_client, stream=True, stream_options={"include_usage": True}))

    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == 9 and chunks[-1].usage.completion_tokens == 4


def test_stream_usage_is_asked_of_the_upstream_but_not_shown_unasked(openai_client, upstream, call_log):
    upstream.stream(chat_chunks(usage=(11, 4)))
    chunks = list(ask(openai_client, stream=True))

    assert upstream.last.json["stream_options"] == {"include_usage": True}
    assert all(c.choices for c in chunks), "the usage-only chunk was not asked for"
    # ... yet the gateway counted it.
    assert call_log()[-1]["prompt_tokens"] == 11


def test_tool_calls_round_trip(openai_client, upstream):
    tool_call = {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}
    upstream.respond(chat_completion(tool_calls=[tool_call]))
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                               "parameters": {"type": "object",
                                                              "properties": {"city": {"type": "string"}}}}}]
    response = ask(openai_client, tools=tools, tool_choice="auto")

    call = response.choices[0].message.tool_calls[0]
    assert response.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert upstream.last.json["tools"] == tools and upstream.last.json["tool_choice"] == "auto"

    upstream.respond(chat_completion("It is sunny in Paris."))
    follow_up = openai_client.chat.completions.create(model="gpt-4o-mini", tools=tools, messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [tool_call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ])
    assert follow_up.choices[0].message.content == "It is sunny in Paris."
    assert upstream.last.json["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}


def test_unknown_fields_pass_through_and_gateway_fields_do_not(openai_client, upstream, call_log):
    ask(openai_client, extra_body={"metadata": {"trace_id": "t-1"}, "tags": ["team:search"],
                                   "some_new_param": {"x": 1}},
        extra_headers={"x-dheera-ai-tags": "env:prod, team:search"})

    sent = upstream.last.json
    assert sent["some_new_param"] == {"x": 1}
    assert "metadata" not in sent and "tags" not in sent
    assert call_log()[-1]["tags"] == ["team:search", "env:prod"]


def test_the_mock_model_answers_without_any_provider(openai_client):
    response = ask(openai_client, model="demo")
    assert "mock model" in response.choices[0].message.content
    assert response.usage.completion_tokens > 0

    streamed = "".join(c.choices[0].delta.content or "" for c in ask(openai_client, model="demo", stream=True))
    assert streamed == response.choices[0].message.content


def test_mock_response_sets_the_answer(openai_client):
    response = ask(openai_client, model="demo", extra_body={"mock_response": "pong"})
    assert response.choices[0].message.content == "pong"


def test_response_headers_name_the_call_the_deployment_and_our_overhead(openai_client, app, upstream):
    upstream.respond(chat_completion(), delay=0.2)
    raw = openai_client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])

    deployment = app.extensions["dheera_ai"].router.groups["gpt-4o-mini"].deployments[0]
    assert raw.headers["x-dheera-ai-model-id"] == deployment.id
    assert len(raw.headers["x-dheera-ai-call-id"]) == 36
    overhead = float(raw.headers["x-dheera-ai-overhead-duration-ms"])
    # The upstream took 200 ms; that time is not ours.
    assert 0 < overhead < 200



def test_headers_set_in_one_go_replace_as_setting_each_would():
    """`calls.set_headers`: one header of each name, whatever the case, the last pair winning."""
    from werkzeug.datastructures import Headers

    from proxy_app.calls import set_headers

    fresh = Headers([("Content-Type", "application/json")])
    set_headers(fresh, [("x-a", "1"), ("x-b", "2")])
    assert list(fresh.items()) == [("Content-Type", "application/json"), ("x-a", "1"), ("x-b", "2")]
    there = Headers([("Content-Type", "application/json"), ("X-A", "old")])
    set_headers(there, [("x-a", "new"), ("content-type", "text/plain")])
    assert sorted(there.items()) == [("content-type", "text/plain"), ("x-a", "new")]
    twice = Headers()
    set_headers(twice, [("x-a", "1"), ("X-A", "2")])
    assert list(twice.items()) == [("X-A", "2")]


# -- errors -------------------------------------------------------------------------------------

def test_a_wrong_key_is_a_401_in_openai_format(live):
    client = openai.OpenAI(base_url=live.url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as exc:
        ask(client)
    assert exc.value.status_code == 401
    assert exc.value.body["type"] == "authentication_error"


@pytest.mark.parametrize("header", ["Authorization", "x-dheera-ai-api-key", "api-key"])
def test_the_master_key_is_accepted_in_each_header(client, header):
    value = f"Bearer {MASTER_KEY}" if header == "Authorization" else MASTER_KEY
    response = client.post("/chat/completions", headers={header: value},
                           json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200


def test_no_key_says_how_to_send_one(client):
    response = client.post("/v1/chat/completions", json={"model": "demo", "messages": []})
    assert response.status_code == 401
    assert "Authorization: Bearer" in response.json["error"]["message"]


def test_malformed_json_is_a_400(client, auth):
    response = client.post("/v1/chat/completions", headers=auth, data=b'{"model": ', content_type="application/json")
    assert response.status_code == 400
    error = response.json["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_json"
    assert set(error) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("body, field", [
    ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
    ({"model": "demo"}, "messages"),
    ({"model": "demo", "messages": []}, "messages"),
    ({"model": "demo", "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ({"model": "demo", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, "temperature"),
    ({"model": "demo", "messages": [{"role": "user", "content": "hi"}], "stop": 5}, "stop"),
    ({"model": "demo", "messages": [{"role": "user", "content": "hi"}], "metadata": "x"}, "metadata"),
])
def test_a_schema_violation_is_a_400_naming_the_field(client, auth, body, field):
    response = client.post("/v1/chat/completions", headers=auth, json=body)
    assert response.status_code == 400
    assert response.json["error"]["param"] == field
    assert field in response.json["error"]["message"]


def test_an_unknown_model_is_a_400_listing_the_valid_ones(openai_client):
    with pytest.raises(openai.BadRequestError) as exc:
        ask(openai_client, model="gpt-5-turbo-max")
    assert "demo" in exc.value.message and "gpt-4o-mini" in exc.value.message


def test_a_body_over_the_limit_is_a_413(make_app, base_config, auth):
    base_config["general_settings"]["max_request_size_mb"] = 0.01
    client = make_app(base_config).test_client()
    big = "x" * 20000
    response = client.post("/v1/chat/completions", headers=auth,
                           json={"model": "demo", "messages": [{"role": "user", "content": big}]})
    assert response.status_code == 413
    assert response.json["error"]["type"] == "invalid_request_error"
    assert "max_request_size_mb" in response.json["error"]["message"]


def test_an_upstream_429_stays_a_429_with_retry_after(openai_client, upstream):
    upstream.fail(429, "Rate limit reached for gpt-4o-mini", headers={"Retry-After": "7"},
                  code="rate_limit_exceeded", err_type="requests")
    with pytest.raises(openai.RateLimitError) as exc:
        ask(openai_client)
    assert exc.value.response.headers["retry-after"] == "7"
    assert "Rate limit reached" in exc.value.message


def test_an_upstream_that_is_too_slow_is_a_408(make_app, base_config, upstream, auth):
    base_config["model_list"][0]["dheera_ai_params"]["timeout"] = 0.3
    client = make_app(base_config).test_client()
    upstream.respond(chat_completion(), delay=1.0)
    response = client.post("/v1/chat/completions", headers=auth,
                           json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 408
    assert response.json["error"]["type"] == "timeout_error"


def test_an_unreachable_upstream_is_a_502(make_app, base_config, auth):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # bound, never listening: connections are refused
        base_config["model_list"][0]["dheera_ai_params"]["api_base"] = f"http://127.0.0.1:{dead}/v1"
        client = make_app(base_config).test_client()
        response = client.post("/v1/chat/completions", headers=auth,
                               json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 502
    assert response.json["error"]["type"] == "api_connection_error"


def test_an_upstream_error_never_shows_the_provider_key(openai_client, upstream):
    upstream.fail(401, "Incorrect API key provided: sk-upstream-secret. Find your key at ...", code="invalid_api_key")
    with pytest.raises(openai.AuthenticationError) as exc:
        ask(openai_client)
    assert "sk-upstream-secret" not in json.dumps(exc.value.body)
    assert "sk-upst****" in exc.value.message


def test_an_unexpected_failure_is_a_500_with_the_call_id_and_no_trace(make_app, base_config, auth):
    from dheera_ai import hookimpl

    class Broken:
        @hookimpl(tryfirst=True)
        def dheera_ai_dispatch(self, call):
            raise KeyError("internal detail")

    client = make_app(base_config, [Broken()]).test_client()
    response = client.post("/v1/chat/completions", headers=auth,
                           json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 500
    assert response.json["error"]["message"] == f"Internal error; call id {response.headers['x-dheera-ai-call-id']}."
    assert "KeyError" not in response.get_data(as_text=True)


def test_a_missing_provider_key_fails_at_call_time_naming_the_variable(make_app, base_config, auth, monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    base_config["model_list"][0]["dheera_ai_params"]["api_key"] = "os.environ/NO_SUCH_KEY_VAR"
    client = make_app(base_config).test_client()  # starts fine
    response = client.post("/v1/chat/completions", headers=auth,
                           json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 401
    assert "NO_SUCH_KEY_VAR" in response.json["error"]["message"]


def test_client_side_credentials_are_refused_unless_enabled(openai_client, upstream):
    with pytest.raises(openai.BadRequestError) as exc:
        ask(openai_client, extra_body={"api_base": "http://169.254.169.254/latest"})
    assert exc.value.code == "client_side_credentials_disabled"
    assert upstream.requests == []


def test_an_error_mid_stream_becomes_an_error_event(openai_client, upstream, call_log):
    events = chat_chunks()[:3]
    upstream.stream(events)  # the stream stops after two deltas without [DONE]: then the socket closes
    upstream.stream([])
    chunks = list(ask(openai_client, stream=True))
    # A close-delimited stream that ends without [DONE] is relayed as it was; no invented error.
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello from"


# -- hang-ups -----------------------------------------------------------------------------------

def test_a_client_hanging_up_closes_the_upstream_and_still_records_the_call(live, upstream, call_log):
    words = [f" w{i}" for i in range(200)]
    upstream.stream(chat_chunks(words=words), event_delay=0.02)
    hang_up_mid_stream(live.url, MASTER_KEY, {"model": "gpt-4o-mini", "stream": True,
                                              "messages": [{"role": "user", "content": "count"}]},
                       enough=lambda received: b"data:" in received)
    deadline = time.time() + 5
    while time.time() < deadline and not (upstream.closed_streams and call_log()):
        time.sleep(0.05)
    assert upstream.closed_streams == 1, "the upstream stream was not closed"
    line = call_log()[-1]
    assert line["stream_cut"] is True and line["status"] == 200



def test_a_streams_overhead_excludes_the_wait_for_its_first_chunk(openai_client, upstream):
    upstream.stream(chat_chunks(), lead=0.3)  # headers at once, the first token 300 ms later
    raw = openai_client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "hi"}])
    assert "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices) == "Hello from the stream."
    assert float(raw.headers["x-dheera-ai-overhead-duration-ms"]) < 200


def test_proxies_from_the_environment_are_still_honoured(monkeypatch, make_app, base_config, auth, upstream):
    """The session reads proxy settings once; an HTTP(S)_PROXY set at start-up is used."""
    from dheera_ai import http

    monkeypatch.setattr(http, "_session", None)
    monkeypatch.setenv("HTTP_PROXY", upstream.url)  # the fake upstream stands in for the proxy
    monkeypatch.setenv("NO_PROXY", "")
    base_config["model_list"][0]["dheera_ai_params"]["api_base"] = "http://api.example.invalid/v1"
    response = make_app(base_config).test_client().post(
        "/v1/chat/completions", headers=auth,
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    monkeypatch.setattr(http, "_session", None)
    assert response.status_code == 200
    # A forward proxy is sent the absolute URL.
    assert upstream.last.path == "http://api.example.invalid/v1/chat/completions"


def test_the_upstream_gets_a_well_formed_request_and_no_cookie_from_another_call(openai_client, upstream):
    """One outbound session serves every caller: a cookie the upstream sets on one call must not
    ride along on the next (someone else's) call."""
    upstream.respond(chat_completion(), headers={"Set-Cookie": "session=caller-one; Path=/"})
    ask(openai_client)
    ask(openai_client)

    first, second = upstream.requests[-2:]
    assert "cookie" not in second.headers
    for sent in (first, second):
        assert int(sent.headers["content-length"]) == len(sent.body)
        assert sent.headers["content-type"] == "application/json"
        assert sent.json["messages"] == [{"role": "user", "content": "Hi there"}]


def test_the_call_log_line_carries_the_calls_cost(openai_client, call_log):
    ask(openai_client)  # the fake upstream reports 9 prompt and 7 completion tokens of gpt-4o-mini
    assert call_log()[-1]["cost"] == pytest.approx(9 * 1.5e-7 + 7 * 6.0e-7)
