"""The README's own Python examples, run as a reader would run them against a real gateway.

A clone with nothing beside it proves its documented examples work. Only placeholders change (the address, a key,
`[...]`), each named where it happens; a placeholder the README no longer has fails the test.
"""

import contextlib
import io
import json
import os

import yaml

from tests.conftest import MASTER_KEY
from tests.plugins.test_anthropic import stream_events
from tests.sdk.seed_pages import adapted, python_blocks_in, run
from tests.support.fake_upstream import Script

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")
SHIPPED_CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "conf", "config.yaml")
BLOCKS = python_blocks_in(open(README, encoding="utf-8").read())


def block(*where):
    """The README block under these headings (## heading, ### heading, tab, #### heading)."""
    key = tuple(where) + (None,) * (4 - len(where))
    assert key in BLOCKS, f"the README no longer has a Python block at {key}; it has {sorted(BLOCKS, key=str)}"
    return BLOCKS[key]


def printed(code: str, namespace=None) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run(code, namespace)
    return out.getvalue()


def test_the_first_example_runs_against_the_shipped_config(live_app, tmp_path):
    with open(SHIPPED_CONFIG, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    config.setdefault("general_settings", {})["database_url"] = f"sqlite:///{tmp_path}/state.sqlite3"
    gateway = live_app(config)
    code = adapted(block("Two commands"), {"http://localhost:4000": gateway.url})
    out = printed(code)
    assert "ChatCompletion(" in out  # the whole answer printed, then the stream's text
    assert out.strip().splitlines()[-1]  # the streamed words


def test_the_user_config_example_serves_one_call_from_the_clients_router(live_app, upstream, tmp_path):
    gateway = live_app({
        "model_list": [{"model_name": "demo", "dheera_ai_params": {"model": "mock/demo"}}],
        "general_settings": {"master_key": MASTER_KEY, "database_url": f"sqlite:///{tmp_path}/state.sqlite3",
                             "allow_client_side_credentials": True,
                             # the README's Azure address stands in for the fake upstream on loopback
                             "allowed_client_api_base_hosts": ["127.0.0.1"]}})
    import openai
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=MASTER_KEY, max_retries=0)
    code = adapted(block("Routing", "Client-side credentials and `user_config`"), {
        "messages=[...]": 'messages=[{"role": "user", "content": "Hi"}]',
        '"api_key": "..."': '"api_key": "sk-the-clients-own"',
        "https://mine.openai.azure.com": upstream.url,
    })
    run(code, {"client": client})
    sent = upstream.last
    assert sent.path.startswith("/openai/deployments/gpt-4o/chat/completions")
    assert sent.headers["api-key"] == "sk-the-clients-own"


def test_the_plugin_example_tags_every_call(live_app, tmp_path, monkeypatch, call_log):
    code = block("Plugins")
    (tmp_path / "dheera_ai_shout.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    gateway = live_app({
        "model_list": [{"model_name": "demo", "dheera_ai_params": {"model": "mock/demo"}}],
        "plugins": ["dheera_ai_shout"],
        "general_settings": {"master_key": MASTER_KEY, "database_url": f"sqlite:///{tmp_path}/state.sqlite3"}})
    import requests
    r = requests.post(gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER_KEY}"},
                      json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]}, timeout=10)
    assert r.status_code == 200
    assert "shouted" in call_log(1)[-1]["tags"]


def test_the_guardrail_kind_example_blocks_shouting(make_app, tmp_path, monkeypatch):
    (tmp_path / "dheera_ai_no_shouting.py").write_text(block("Guardrails"))
    monkeypatch.syspath_prepend(str(tmp_path))
    app = make_app({
        "model_list": [{"model_name": "demo", "dheera_ai_params": {"model": "mock/demo"}}],
        "plugins": ["dheera_ai_no_shouting"],
        "guardrails": [{"guardrail_name": "calm", "dheera_ai_params": {"guardrail": "no_shouting",
                                                                        "default_on": True}}],
        "general_settings": {"master_key": MASTER_KEY, "database_url": f"sqlite:///{tmp_path}/state.sqlite3"}})
    r = app.test_client().post("/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER_KEY}"},
                               json={"model": "demo", "messages": [{"role": "user", "content": "STOP SHOUTING"}]})
    assert r.status_code == 400
    assert r.json["error"]["message"] == "Blocked by guardrail 'calm' (pre_call): found SHOUTING."


def test_the_sdk_example_calls_each_provider_it_names(upstream, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-test")
    monkeypatch.setenv("OPENAI_BASE_URL", upstream.url + "/v1")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_API_BASE", upstream.url)
    upstream.route("/v1/messages", lambda recorded: Script(events=stream_events(words=("Hello", " from", " Claude"))))
    code = adapted(block("SDK"), {
        "messages=[...]": 'messages=[{"role": "user", "content": "Hi"}]',
        "api_key=...": 'api_key="azure-test-key"',
        "https://my-res.openai.azure.com/": upstream.url + "/",
    })
    out = printed(code)
    content, tokens, cost = out.splitlines()[0].rsplit(" ", 2)
    assert (content, tokens) == ("Hello from the fake upstream.", "16")  # the fake's 9 + 7 tokens
    assert float(cost) > 0  # priced from the shipped table
    assert "Hello from Claude" in out
    paths = [r.path.split("?")[0] for r in upstream.requests]
    assert paths == ["/v1/chat/completions", "/v1/messages", "/openai/responses"], paths


def test_the_files_and_batches_example_runs_a_batch_on_a_gateway(live_app, tmp_path):
    gateway = live_app({
        "model_list": [{"model_name": "demo", "dheera_ai_params": {"model": "mock/demo"}}],
        "general_settings": {"master_key": MASTER_KEY, "database_url": f"sqlite:///{tmp_path}/state.sqlite3",
                             "batch_poll_interval": 0.2}})
    # The block runs in the test's scratch working directory (clean_sdk), where its requests.jsonl is.
    lines = [{"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "demo", "messages": [{"role": "user", "content": "Hi"}],
                       "mock_response": f"answer {i}"}} for i in (1, 2)]
    (tmp_path / "requests.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    code = adapted(block("SDK", "Files and batches"), {
        "http://localhost:4000": gateway.url,
        '"sk-1234"': repr(MASTER_KEY),
        "time.sleep(5)": "time.sleep(0.05)",
    })
    out = printed(code).splitlines()
    assert out[0] == "completed 2 of 2"
    assert sorted(out[1:3]) == ["req-1 answer 1", "req-2 answer 2"]
    assert out[3].startswith("['batch_") and len(out) == 4


def test_the_router_example_retries_then_falls_back_to_claude(upstream, monkeypatch):
    from tests.plugins.test_anthropic import message

    for name in ("AZURE_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.setenv(name, f"sk-{name.lower()}")
    # Both gpt-4o deployments are down: each call tries one, retries on the other, then asks claude.
    upstream.always("/openai/deployments/", status=500)
    upstream.always("/v1/chat/completions", status=503)
    upstream.route("/v1/messages", lambda recorded: Script(events=stream_events()) if recorded.json.get("stream")
                   else Script(body=json.dumps(message()).encode()))
    code = adapted(block("SDK", "Router"), {
        "https://eu-res.openai.azure.com/": upstream.url + "/",
        "https://api.openai.com/v1": upstream.url + "/v1",
        "https://api.anthropic.com": upstream.url,
    })

    out = printed(code).splitlines()

    assert out == [f"Hello from Claude. from {upstream.url}", "Hello there", "['gpt-4o', 'gpt-4o', 'claude']"]
    tried = [(r.path.split("?")[0].split("/")[1], r.headers.get("api-key") or r.headers.get("authorization")
              or r.headers.get("x-api-key")) for r in upstream.requests]
    assert sorted(tried[:2]) == [("openai", "sk-azure_api_key"), ("v1", "Bearer sk-openai_api_key")]
    assert tried[2] == ("v1", "sk-anthropic_api_key") and len(tried) == 6


def test_the_langfuse_example_names_the_generation_and_groups_the_trace(live_app, tmp_path, monkeypatch):
    from plugins.observability.tracing import trace_id_for
    from tests.support.otlp import OtlpReceiver

    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    langfuse = OtlpReceiver(path="/api/public/otel/v1/traces")
    try:
        gateway = live_app({
            "model_list": [{"model_name": "gpt-4o", "dheera_ai_params": {"model": "mock/gpt-4o"}}],
            "litellm_settings": {"callbacks": ["langfuse"]},
            "callback_settings": {"langfuse": {"public_key": "pk-lf-1", "secret_key": "sk-lf-1", "host": langfuse.url}},
            "general_settings": {"master_key": MASTER_KEY, "database_url": f"sqlite:///{tmp_path}/state.sqlite3"}})
        import openai
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=MASTER_KEY, max_retries=0)
        code = adapted(block("Observability", "Langfuse (`langfuse`)"), {
            "messages=[...]": 'messages=[{"role": "user", "content": "Hi"}]'})
        run(code, {"client": client})
        [generation] = langfuse.wait_for(1, kind="SERVER")
    finally:
        langfuse.close()
    assert generation.name == "summarize"
    assert (generation.attributes["user.id"], generation.attributes["session.id"]) == ("ann", "s-1")
    assert generation.trace_id == f"{trace_id_for('conversation-42'):032x}"


def test_the_exporter_example_posts_its_records(live_app, tmp_path, monkeypatch):
    from tests.support.calls import wait_for
    from tests.support.fake_upstream import FakeUpstream

    store = FakeUpstream()
    store.route("/ingest", lambda recorded: Script(status=204, body=b""))
    code = adapted(block("Observability", "Your own exporter"), {
        "https://logs.example.com/ingest": store.url + "/ingest"})
    package = tmp_path / "my_company"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "exporter.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        gateway = live_app({
            "model_list": [{"model_name": "demo", "dheera_ai_params": {"model": "mock/demo"}}],
            "plugins": ["my_company.exporter"],
            "general_settings": {"master_key": MASTER_KEY, "database_url": f"sqlite:///{tmp_path}/state.sqlite3"}})
        import requests
        r = requests.post(gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER_KEY}"},
                          json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]}, timeout=10)
        def posted():
            return [x for p in store.requests if p.path == "/ingest" for x in p.json]
        assert wait_for(lambda: len(posted()), 1, timeout=10) == 1
        posted = posted()
    finally:
        store.close()
    assert len(posted) == 1
    assert posted[0]["call_id"] == r.headers["x-dheera-ai-call-id"]
    assert posted[0]["model"] == "demo" and posted[0]["tokens"] > 0


def test_every_readme_python_block_has_a_test_here():
    tested = {"Two commands", "Routing", "Plugins", "SDK", "Guardrails", "Observability"}
    untested = [key for key in BLOCKS if key[0] not in tested]
    assert not untested, f"README Python blocks without a test in this module: {untested}"
