"""The webhook callback: batches of redacted call records POSTed as JSON arrays, off the call's path."""

import pytest

from tests.conftest import MASTER_KEY
from tests.support.calls import wait_for
from tests.support.fake_upstream import FakeUpstream, Script

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hi"}]}


@pytest.fixture
def hook():
    server = FakeUpstream()
    server.route("/hook", lambda recorded: Script(status=204, body=b""))  # a log store taking the batch
    yield server
    server.close()


def with_webhook(config, hook, **settings):
    return {**config, "dheera_ai_settings": {"callbacks": ["webhook"]},
            "callback_settings": {"webhook": {"url": hook.url + "/hook", "headers": {"X-Log-Token": "t-1"},
                                              "flush_interval": 0.05, **settings}}}


def records(hook):
    return [record for r in hook.requests if r.path == "/hook" for record in r.json]


def test_call_records_arrive_in_batches(make_app, base_config, hook, upstream):
    gateway = make_app(with_webhook(base_config, hook, batch_size=2)).test_client()
    made = gateway.post("/key/generate", headers=AUTH, json={"key_alias": "ci-bot"}).get_json()
    upstream.fail(429, "slow down")
    ids = []
    for _ in range(3):
        response = gateway.post("/v1/chat/completions", headers={"Authorization": f"Bearer {made['key']}"},
                                json={**CHAT, "tags": ["batch"], "metadata": {"ticket": "T-2", "password": "pw-123"}})
        ids.append(response.headers["x-dheera-ai-call-id"])

    assert wait_for(lambda: len(records(hook)), 3) == 3
    posts = [r for r in hook.requests if r.path == "/hook"]
    assert all(len(r.json) <= 2 for r in posts)
    assert posts[0].headers["x-log-token"] == "t-1"
    assert posts[0].headers["content-type"] == "application/json"
    got = {r["call_id"]: r for r in records(hook)}
    assert set(got) == set(ids)
    failed, answered = got[ids[0]], got[ids[1]]
    assert (failed["status"], failed["error_type"]) == (429, "RateLimitError")
    assert answered["status"] == 200 and answered["model_group"] == "gpt-4o-mini"
    assert (answered["prompt_tokens"], answered["completion_tokens"]) == (9, 7)
    assert answered["cost"] > 0 and answered["latency_ms"] > 0
    assert answered["key_alias"] == "ci-bot" and answered["tags"] == ["batch"]
    assert answered["metadata"]["ticket"] == "T-2"
    everything = str(records(hook))
    for secret in ("pw-123", made["key"], made["token"]):
        assert secret not in everything


def test_a_failing_webhook_changes_nothing_for_callers(make_app, base_config, hook):
    hook.always("/hook", status=500)
    gateway = make_app(with_webhook(base_config, hook, max_queue_size=2, batch_size=1)).test_client()
    statuses = [gateway.post("/v1/chat/completions", headers=AUTH, json=CHAT).status_code for _ in range(10)]
    assert statuses == [200] * 10

    def dropped():
        text = gateway.get("/metrics", headers=AUTH).get_data(as_text=True)
        lines = [x for x in text.splitlines() if x.startswith('dheera_ai_callback_dropped_total{callback="webhook"}')]
        return float(lines[0].split()[-1]) >= 8 if lines else False
    assert wait_for(dropped, True)


def test_success_callback_sends_only_answered_calls(make_app, base_config, hook, upstream):
    config = with_webhook(base_config, hook)
    config["dheera_ai_settings"] = {"success_callback": ["webhook"]}
    gateway = make_app(config).test_client()
    upstream.fail(400)
    gateway.post("/v1/chat/completions", headers=AUTH, json=CHAT)
    ok = gateway.post("/v1/chat/completions", headers=AUTH, json=CHAT).headers["x-dheera-ai-call-id"]

    assert wait_for(lambda: [r["call_id"] for r in records(hook)], [ok]) == [ok]
