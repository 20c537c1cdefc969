"""The async functions run on the caller's event loop: the same pipeline and providers, their HTTP
sent with httpx, no thread per call; streams as `async for`; cancellation closes the upstream."""

import asyncio
import socketserver
import threading
import time

import pytest

import dheera_ai
from dheera_ai import http
from tests.support.fake_upstream import FakeUpstream, Script, chat_chunks, chat_completion

HI = [{"role": "user", "content": "Hi"}]
CHAT = "/v1/chat/completions"


def options(upstream, **kwargs):
    return {"model": "openai/gpt-4o-mini", "messages": HI, "api_base": upstream.url + "/v1",
            "api_key": "sk-upstream-secret", **kwargs}


@pytest.fixture
def no_threads_no_requests(monkeypatch):
    """Any worker thread or `requests` send during the test fails it."""
    def refused(*args, **kwargs):
        raise AssertionError("an async SDK call used a thread or requests")

    monkeypatch.setattr(asyncio, "to_thread", refused)
    monkeypatch.setattr(asyncio.BaseEventLoop, "run_in_executor", refused)
    monkeypatch.setattr(http, "_send", refused)


def test_acompletion_runs_on_the_loop_with_the_async_client(upstream, no_threads_no_requests):
    async def main():
        response = await dheera_ai.acompletion(**options(upstream))
        stream = await dheera_ai.acompletion(**options(upstream), stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        return response, stream, text

    response, stream, text = asyncio.run(main())

    assert response == chat_completion()
    assert response.response_cost > 0 and response._hidden_params["api_base"] == upstream.url + "/v1"
    assert text == "Hello from the stream."
    assert stream.usage.total_tokens == 13 and stream.response_cost > 0
    assert upstream.last.headers["authorization"] == "Bearer sk-upstream-secret"


def test_the_sync_functions_still_use_requests(upstream, monkeypatch):
    sent = []
    original = http._send
    monkeypatch.setattr(http, "_send", lambda *a, **k: sent.append(a[2]) or original(*a, **k))

    dheera_ai.completion(**options(upstream))

    assert sent == [upstream.url + "/v1/chat/completions"]


@pytest.fixture
def wide_upstream(monkeypatch):
    """A fake upstream whose listening socket queues more than socketserver's 5 connections."""
    monkeypatch.setattr(socketserver.TCPServer, "request_queue_size", 256)
    server = FakeUpstream()
    yield server
    server.close()


def test_many_streams_are_open_at_once_on_one_loop(wide_upstream, no_threads_no_requests):
    # The upstream answers only once 24 requests are waiting at the same time: more than a
    # default thread pool (min(32, cores + 4)) on a small machine would ever hold.
    upstream = wide_upstream
    together = threading.Barrier(24, timeout=20)

    def answer(_recorded):
        together.wait()
        return Script(events=[*chat_chunks(), "[DONE]"])

    upstream.route("/v1/chat/completions", answer)

    async def one():
        stream = await dheera_ai.acompletion(**options(upstream), stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    async def main():
        return await asyncio.gather(*(one() for _ in range(24)))

    assert asyncio.run(main()) == ["Hello from the stream."] * 24


def test_every_async_function_answers_without_a_thread(upstream, no_threads_no_requests):
    async def main():
        base = {"api_base": upstream.url + "/v1", "api_key": "sk-upstream-secret"}
        embedded = await dheera_ai.aembedding(model="openai/text-embedding-3-small", input="hi", **base)
        spoken = await dheera_ai.aspeech(model="openai/tts-1", input="Hi", **base)
        heard = await dheera_ai.atranscription(model="openai/whisper-1", file=("a.wav", b"RIFF...."), **base)
        answered = await dheera_ai.aresponses(model="openai/gpt-4o", input="Hi", **base)
        events = [e.type async for e in await dheera_ai.aresponses(model="openai/gpt-4o", input="Hi", stream=True,
                                                                 **base)]
        fetched = await dheera_ai.aget_responses(answered.id)
        return embedded, spoken, heard, answered, events, fetched

    embedded, spoken, heard, answered, events, fetched = asyncio.run(main())

    assert embedded.data[0].embedding
    assert spoken.content and heard.text
    assert answered.output and fetched.id == answered.id
    assert events[-1] == "response.completed"


def test_cancelling_a_stream_closes_the_upstream_connection(upstream):
    events = [*chat_chunks(words=tuple(f"w{i} " for i in range(200))), "[DONE]"]
    upstream.stream(events, event_delay=0.05)

    async def main():
        first = asyncio.Event()

        async def read():
            stream = await dheera_ai.acompletion(**options(upstream), stream=True)
            async for _chunk in stream:
                first.set()

        task = asyncio.create_task(read())
        await first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())

    deadline = time.monotonic() + 10
    while upstream.closed_streams < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream.closed_streams == 1


def test_aclose_stops_a_stream_and_closes_the_connection(upstream):
    upstream.stream([*chat_chunks(words=tuple(f"w{i} " for i in range(200))), "[DONE]"], event_delay=0.05)

    async def main():
        async with await dheera_ai.acompletion(**options(upstream), stream=True) as stream:
            async for _chunk in stream:
                break

    asyncio.run(main())

    deadline = time.monotonic() + 10
    while upstream.closed_streams < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream.closed_streams == 1


def test_async_errors_are_the_error_tree(upstream):
    upstream.fail(429, headers={"Retry-After": "3"})
    upstream.respond(chat_completion(), delay=3)

    async def main():
        with pytest.raises(dheera_ai.RateLimitError) as limited:
            await dheera_ai.acompletion(**options(upstream))
        with pytest.raises(dheera_ai.Timeout):
            await dheera_ai.acompletion(**options(upstream, timeout=0.3))
        with pytest.raises(dheera_ai.APIConnectionError, match="connection refused"):
            await dheera_ai.acompletion(**{**options(upstream), "api_base": "http://127.0.0.1:9/v1"})
        return limited.value

    limited = asyncio.run(main())
    assert limited.headers["Retry-After"] == "3" and limited.status_code == 429


def test_an_error_inside_an_async_stream_is_raised_while_iterating(upstream):
    upstream.stream([chat_chunks()[0], {"error": {"message": "overloaded", "type": "server_error", "code": None}}])

    async def main():
        stream = await dheera_ai.acompletion(**options(upstream), stream=True)
        return [chunk async for chunk in stream]

    with pytest.raises(dheera_ai.DheeraAIError, match="overloaded"):
        asyncio.run(main())


def test_router_retries_and_fallbacks_wait_on_the_loop(upstream, no_threads_no_requests, monkeypatch):
    monkeypatch.setattr(time, "sleep", lambda s: (_ for _ in ()).throw(AssertionError("time.sleep on the loop")))
    backup = dict(options(upstream))
    router = dheera_ai.Router(model_list=[
        {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": upstream.url + "/v1",
                                                 "api_key": "sk-upstream-secret"}},
        {"model_name": "backup", "litellm_params": {"model": "openai/gpt-4o", "api_base": backup["api_base"],
                                                    "api_key": "sk-upstream-secret"}}],
        num_retries=1, retry_after=0.01, fallbacks=[{"gpt": ["backup"]}])
    upstream.fail(500)
    upstream.fail(500)

    async def main():
        return await router.acompletion(model="gpt", messages=HI)

    response = asyncio.run(main())

    assert [r.json["model"] for r in upstream.requests] == ["gpt-4o-mini", "gpt-4o-mini", "gpt-4o"]
    assert response.choices


def test_concurrent_calls_on_two_loops_use_their_own_connections(upstream):
    results = []

    def on_its_own_loop():
        async def main():
            return await asyncio.gather(*(dheera_ai.acompletion(**options(upstream)) for _ in range(5)))
        results.append(asyncio.run(main()))

    threads = [threading.Thread(target=on_its_own_loop) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert [len(r) for r in results] == [5, 5]
