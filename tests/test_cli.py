"""The `dheera_ai` command, run for real: gunicorn, gevent workers, a real socket."""

import json
import re
import socket
import subprocess
import time

import openai
import pytest
import requests
import yaml

from tests.support.fake_upstream import chat_chunks
from tests.support.process import COMMAND, GatewayProcess

MASTER = "sk-cli-master-key"


@pytest.fixture
def config_file(tmp_path, upstream):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "model_list": [
            {"model_name": "gpt-4o-mini", "litellm_params": {"model": "openai/gpt-4o-mini",
                                                            "api_base": upstream.url + "/v1", "api_key": "sk-up"}},
            {"model_name": "demo", "dheera_ai_params": {"model": "mock/demo"}},
        ],
        "general_settings": {"master_key": MASTER},
    }))
    return path


@pytest.fixture
def gateway(config_file):
    process = GatewayProcess("--config", str(config_file), "--workers", "1", "--host", "127.0.0.1")
    process.wait_ready()
    yield process
    process.close()


def test_the_command_serves_chat_plain_and_streamed_to_the_openai_sdk(gateway, upstream):
    client = openai.OpenAI(base_url=gateway.url, api_key=MASTER, max_retries=0, timeout=10)
    plain = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert plain.choices[0].message.content == "Hello from the fake upstream."

    upstream.stream(chat_chunks(words=["one", " two", " three"]), event_delay=0.05)
    received = []
    for chunk in client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                messages=[{"role": "user", "content": "count"}]):
        if chunk.choices and chunk.choices[0].delta.content:
            received.append((chunk.choices[0].delta.content, time.perf_counter()))
    assert "".join(text for text, _ in received) == "one two three"
    # Chunks arrive as the upstream sends them, not all at once at the end.
    assert received[-1][1] - received[0][1] > 0.08


def test_the_call_log_has_one_structured_line_per_call(gateway):
    client = openai.OpenAI(base_url=gateway.url, api_key=MASTER, max_retries=0)
    response = client.chat.completions.with_raw_response.create(
        model="demo", messages=[{"role": "user", "content": "x"}])
    call_id = response.headers["x-dheera-ai-call-id"]
    deadline = time.time() + 5
    while call_id not in gateway.output() and time.time() < deadline:
        time.sleep(0.05)
    [line] = [json.loads(row) for row in gateway.output().splitlines()
              if call_id in row and row.startswith("{")]
    assert line["model"] == "demo" and line["status"] == 200 and line["completion_tokens"] > 0


def test_a_client_hanging_up_under_gunicorn_closes_the_upstream(gateway, upstream):
    upstream.stream(chat_chunks(words=[f" w{i}" for i in range(300)]), event_delay=0.02)
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        body = json.dumps({"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "x"}]})
        sock.sendall(f"POST /chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode())
        received = b""
        while received.count(b"data:") < 3:
            received += sock.recv(4096)
    deadline = time.time() + 10
    while time.time() < deadline and not upstream.closed_streams:
        time.sleep(0.05)
    assert upstream.closed_streams == 1
    deadline = time.time() + 5
    while time.time() < deadline and '"stream_cut":true' not in gateway.output():
        time.sleep(0.05)
    assert '"stream_cut":true' in gateway.output()


def test_gevent_lives_in_the_workers_not_the_master(gateway):
    """The master only forks and watches: gevent (imported by gunicorn's own gevent worker class)
    would be memory it carries for nothing, and counted again in each worker."""
    def mapped(pid):
        with open(f"/proc/{pid}/maps") as f:
            return f.read()

    [worker] = gateway.workers()
    assert "gevent" not in mapped(gateway.process.pid)
    assert "gevent" in mapped(worker)  # and it serves (the tests above), patched by gevent


def test_a_worker_freezes_what_it_built_so_collections_skip_it():
    """gunicorn calls `post_worker_init` in each worker once its app is built: from then on a full
    garbage collection scans only what calls made, not the ~57,000 objects of a started gateway."""
    import gc

    from gunicorn.config import Config

    from proxy_app import gunicorn_settings

    assert "post_worker_init" in Config().settings, "a gunicorn server hook of that name"
    gc.unfreeze()
    try:
        gunicorn_settings.post_worker_init(None)
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()


def test_a_busy_keep_alive_connection_does_not_starve_the_others(gateway):
    """Connection A sends 1,000 requests at once (pipelined); once A's first answer is back,
    connection B sends one. A fair worker serves B next, after the one or two of A's under way.
    (Unfair, A's greenlet never had to wait on its socket, so it kept the worker until its 1,000
    were done; with `gevent.sleep(0)` as the turn, about 50 of A's still went first.)"""
    request = b"GET /health/liveliness HTTP/1.1\r\nHost: gateway\r\n\r\n"
    a, b = (socket.create_connection(("127.0.0.1", gateway.port), timeout=10) for _ in range(2))
    with a, b:
        for conn in (a, b):  # both connections accepted and idle in the worker first
            conn.sendall(request)
            assert _one_answer(conn).startswith(b"HTTP/1.1 200")
        a.sendall(request * 1000)
        got_a, got_b = _one_answer(a), b""  # A's greenlet is at work on its 1,000
        b.sendall(request)
        a.setblocking(False)
        b.settimeout(10)
        while b"HTTP/1.1 200" not in got_b:
            got_a += _available(a)  # everything A received so far counts as served before B
            try:
                b.settimeout(0.001)
                got_b += b.recv(65536)
            except TimeoutError:
                pass
        before_b = got_a.count(b"HTTP/1.1 ")
        a.settimeout(10)
        while got_a.count(b"HTTP/1.1 ") < 1000:
            got_a += a.recv(65536)
    assert before_b < 25, f"{before_b} of connection A's 1,000 answers came before B's one"


def _one_answer(conn) -> bytes:
    """One whole answer (head and Content-Length body) read from `conn`, and nothing more."""
    got = b""
    while b"\r\n\r\n" not in got:
        got += conn.recv(1)
    length = int(re.search(rb"(?i)content-length: *(\d+)", got).group(1))
    while len(got) < got.index(b"\r\n\r\n") + 4 + length:
        got += conn.recv(1)
    return got


def _available(conn) -> bytes:
    out = b""
    while True:
        try:
            chunk = conn.recv(65536)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def test_sigterm_stops_the_gateway_cleanly(config_file):
    process = GatewayProcess("--config", str(config_file), "--workers", "1")
    try:
        process.wait_ready()
        assert process.stop() == 0
        assert "Shutting down" in process.output()
    finally:
        process.close()


def test_the_gateway_lifts_a_low_open_files_limit_so_a_worker_can_hold_its_connections(config_file):
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= 1024:
        pytest.skip("the hard limit here leaves nothing to lift")
    process = GatewayProcess("--config", str(config_file), "--workers", "1",
                             preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard)))
    try:
        process.wait_ready()
        with open(f"/proc/{process.process.pid}/limits") as f:
            soft = next(int(line.split()[3]) for line in f if line.startswith("Max open files"))
        assert soft > 2 * 1000  # a client and an upstream socket for each of worker_connections
    finally:
        process.close()


def test_a_bad_config_stops_start_up_with_the_path_and_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"model_list": [
        {"model_name": "a", "dheera_ai_params": {"model": "mock/a"}},
        {"model_name": "b", "dheera_ai_params": {"model": "mock/b"}},
        {"model_name": "c", "dheera_ai_params": {"model": "opnai/gpt-4o"}}]}))
    result = subprocess.run([COMMAND, "--config", str(bad)], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "model_list[2].dheera_ai_params.model: unknown provider 'opnai'" in result.stderr


def test_quick_start_without_a_master_key_listens_on_loopback_and_says_why():
    process = GatewayProcess("--model", "mock/quick", "--workers", "1")
    try:
        process.wait_ready()
        answer = requests.post(process.url + "/v1/chat/completions", timeout=5, json={
            "model": "quick", "messages": [{"role": "user", "content": "hi"}]}).json()
        assert answer["choices"][0]["message"]["content"]
        output = process.output()
        assert "bind 127.0.0.1" in output and "master_key" in output
    finally:
        process.close()
