"""Guardrails through the gateway: what reaches the upstream (the fake's log proves it), what the
client gets, streams, per-key and per-request enabling, the spend row, and a pip-installed kind."""

import json
import time

import openai
import pytest

from tests.conftest import MASTER_KEY
from tests.support.fake_upstream import Script, chat_chunks, chat_completion
from tests.support.plugin_dist import install_plugin, run_with
from tests.test_spend import stored

CARD = "4111 1111 1111 1111"
EMAIL = "jane.doe@example.com"
OPENAI_KEY = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"

PII = {"guardrail_name": "pii-mask", "dheera_ai_params": {
    "guardrail": "pii", "mode": ["pre_call", "post_call"], "default_on": True, "action": "mask",
    "entities": ["EMAIL_ADDRESS", "CREDIT_CARD", "IBAN_CODE"]}}
SECRETS = {"guardrail_name": "no-secrets", "litellm_params": {"guardrail": "secrets", "mode": "pre_call"}}
WORDS = {"guardrail_name": "no-falcon", "dheera_ai_params": {
    "guardrail": "banned_words", "mode": ["pre_call", "post_call"], "words": ["project falcon"]}}


@pytest.fixture
def guarded(make_app, base_config):
    """`guarded(*entries)`: a gateway with these guardrails (spend flushed by hand)."""
    def build(*entries, **general):
        config = dict(base_config, guardrails=list(entries))
        config["general_settings"] = {**base_config["general_settings"], "spend_flush_seconds": 3600, **general}
        return make_app(config)
    return build


def chat(client, content, auth=None, **body):
    return client.post("/v1/chat/completions", headers=auth or {"Authorization": f"Bearer {MASTER_KEY}"},
                       json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], **body})


def sent_text(upstream) -> str:
    return json.dumps(upstream.last.json["messages"])


def spend_rows(app):
    app.extensions["dheera_ai_state"].spend.flush()
    response = app.test_client().get("/spend/logs", headers={"Authorization": f"Bearer {MASTER_KEY}"})
    return response.json["data"]


def test_pii_is_masked_before_the_request_leaves_the_gateway(guarded, upstream):
    app = guarded(PII)
    r = chat(app.test_client(), f"Charge {CARD} and mail {EMAIL}; an invalid 4111 1111 1111 1112 stays.")
    assert r.status_code == 200
    sent = sent_text(upstream)
    assert CARD not in sent and EMAIL not in sent
    assert "Charge <CREDIT_CARD> and mail <EMAIL_ADDRESS>; an invalid 4111 1111 1111 1112 stays." in sent
    assert r.headers["x-dheera-ai-applied-guardrails"] == "pii-mask"
    [row] = spend_rows(app)
    assert row["guardrails"] == [
        {"guardrail": "pii-mask", "phase": "pre_call", "result": "masked", "items": 2,
         "entities": ["CREDIT_CARD", "EMAIL_ADDRESS"]},
        {"guardrail": "pii-mask", "phase": "post_call", "result": "passed"}]


def test_a_secret_is_blocked_and_never_sent_nor_echoed(guarded, upstream, call_log):
    app = guarded(dict(SECRETS, litellm_params={**SECRETS["litellm_params"], "default_on": True}))
    r = chat(app.test_client(), f"debug this: OPENAI_API_KEY={OPENAI_KEY}")
    assert r.status_code == 400
    error = r.json["error"]
    assert error["code"] == "guardrail_violated" and error["guardrail"] == "no-secrets"
    assert error["message"] == "Blocked by guardrail 'no-secrets' (pre_call): found OPENAI_API_KEY."
    assert OPENAI_KEY not in r.get_data(as_text=True)
    assert upstream.count("/v1/chat/completions") == 0
    line = call_log(1)[-1]
    assert line["status"] == 400 and line["guardrails"][0]["result"] == "blocked"
    assert OPENAI_KEY not in json.dumps(line)
    [row] = spend_rows(app)
    assert row["status"] == 400 and row["guardrails"][0]["entities"] == ["OPENAI_API_KEY"]


def test_a_guardrail_that_is_not_default_on_runs_when_the_request_names_it(guarded, upstream):
    client = guarded(WORDS).test_client()
    assert chat(client, "Tell me about Project Falcon").status_code == 200  # off unless asked for
    r = chat(client, "Tell me about Project Falcon", guardrails=["no-falcon"])
    assert r.status_code == 400 and r.json["error"]["guardrail"] == "no-falcon"
    assert "guardrails" not in upstream.last.json  # a gateway field: never sent upstream
    r = chat(client, "hi", guardrails=["no-such-guardrail"])
    assert r.status_code == 400 and r.json["error"]["code"] == "unknown_guardrail"
    assert "no-falcon" in r.json["error"]["message"]


def test_naming_a_guardrail_on_a_gateway_without_any_is_refused(app, client, auth):
    r = chat(client, "hi", auth=auth, guardrails=["pii"])
    assert r.status_code == 400 and r.json["error"]["code"] == "unknown_guardrail"


def test_a_keys_guardrails_are_always_on_and_may_forbid_opting_out(guarded, upstream):
    app = guarded(PII, WORDS)
    client = app.test_client()
    admin = {"Authorization": f"Bearer {MASTER_KEY}"}
    free = client.post("/key/generate", headers=admin, json={}).json["key"]
    strict = client.post("/key/generate", headers=admin, json={"metadata": {
        "guardrails": ["no-falcon"], "allow_client_opt_out": False}}).json["key"]
    as_free, as_strict = ({"Authorization": f"Bearer {k}"} for k in (free, strict))

    assert chat(client, "Project Falcon", auth=as_free).status_code == 200
    assert chat(client, "Project Falcon", auth=as_strict).json["error"]["guardrail"] == "no-falcon"
    # The default_on pii guardrail: a client may turn it off, unless its key forbids it.
    assert chat(client, f"mail {EMAIL}", auth=as_free, guardrails={"pii-mask": False}).status_code == 200
    assert EMAIL in sent_text(upstream)
    r = chat(client, f"mail {EMAIL}", auth=as_strict, guardrails={"pii-mask": False})
    assert r.status_code == 403 and r.json["error"]["code"] == "guardrail_opt_out_refused"
    assert upstream.count("/v1/chat/completions") == 2


def test_a_teams_guardrails_apply_to_every_key_of_the_team(guarded, upstream):
    client = guarded(dict(SECRETS)).test_client()
    admin = {"Authorization": f"Bearer {MASTER_KEY}"}
    team = client.post("/team/new", headers=admin, json={"team_alias": "payments",
                                                         "metadata": {"guardrails": ["no-secrets"]}}).json
    key = client.post("/key/generate", headers=admin, json={"team_id": team["team_id"]}).json["key"]
    r = chat(client, f"key {OPENAI_KEY}", auth={"Authorization": f"Bearer {key}"})
    assert r.status_code == 400 and r.json["error"]["guardrail"] == "no-secrets"
    assert upstream.count("/v1/chat/completions") == 0


def test_a_request_may_override_a_guardrails_parameters(guarded, upstream):
    client = guarded(PII).test_client()
    r = chat(client, f"mail {EMAIL}, card {CARD}", guardrails={"pii-mask": {"entities": ["CREDIT_CARD"]}})
    assert r.status_code == 200
    assert EMAIL in sent_text(upstream) and CARD not in sent_text(upstream)
    r = chat(client, "hi", guardrails={"pii-mask": {"entities": ["SHOE_SIZE"]}})
    assert r.status_code == 400 and "SHOE_SIZE" in r.json["error"]["message"]


def test_the_answer_is_masked_too_and_masked_values_can_be_put_back(guarded, upstream):
    def echo(recorded):  # the model repeats what it was sent
        said = recorded.json["messages"][-1]["content"]
        return Script(body=json.dumps(chat_completion(content=f"You said: {said}")).encode())
    upstream.route("/v1/chat/completions", echo)
    plain = guarded(PII).test_client()
    r = chat(plain, f"my mail is {EMAIL}")
    assert r.json["choices"][0]["message"]["content"] == "You said: my mail is <EMAIL_ADDRESS>"

    unmasking = guarded({"guardrail_name": "pii-mask", "dheera_ai_params": {
        **PII["dheera_ai_params"], "mode": "pre_call", "output_parse_pii": True}}).test_client()
    r = chat(unmasking, f"my mail is {EMAIL}")
    assert upstream.last.json["messages"][-1]["content"] == "my mail is <EMAIL_ADDRESS_1>"
    assert r.json["choices"][0]["message"]["content"] == f"You said: my mail is {EMAIL}"


def test_a_term_split_across_stream_chunks_is_masked_for_the_openai_sdk(guarded, upstream, live_app, base_config):
    words = ("Contact", " jane.d", "oe@exa", "mple.com", " or pay to ", "DE89 3704 ", "0044 0532 0130 00", ".")
    upstream.stream(chat_chunks(words=words))
    config = dict(base_config, guardrails=[PII])
    live = live_app(config)
    client = openai.OpenAI(base_url=live.url + "/v1", api_key=MASTER_KEY, max_retries=0)
    stream = client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                            messages=[{"role": "user", "content": "who?"}])
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "Contact <EMAIL_ADDRESS> or pay to <IBAN_CODE>."


def test_a_blocked_term_in_a_stream_ends_it_with_an_error_before_the_term_is_sent(guarded, upstream, live_app,
                                                                                  base_config):
    upstream.stream(chat_chunks(words=("The plan: ", "Project ", "Fal", "con", " ships in May.")))
    live = live_app(dict(base_config, guardrails=[dict(WORDS, dheera_ai_params={**WORDS["dheera_ai_params"],
                                                                               "default_on": True})]))
    client = openai.OpenAI(base_url=live.url + "/v1", api_key=MASTER_KEY, max_retries=0)
    received = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                    messages=[{"role": "user", "content": "plan?"}]):
            received.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
    assert "no-falcon" in str(raised.value)
    assert "Falcon" not in "".join(received) and "Fal" not in "".join(received)


def test_a_during_call_block_closes_the_upstream_stream_before_any_byte_is_sent(guarded, upstream):
    upstream.stream(chat_chunks(words=("a", "b", "c")), event_delay=0.05, hold=2)
    app = guarded({"guardrail_name": "falcon-watch", "dheera_ai_params": {
        "guardrail": "banned_words", "mode": "during_call", "default_on": True, "words": ["falcon"]}})
    r = chat(app.test_client(), "about falcon", stream=True)
    assert r.status_code == 400 and r.json["error"]["guardrail"] == "falcon-watch"
    assert upstream.count("/v1/chat/completions") == 1  # it ran beside the upstream call
    deadline = time.monotonic() + 5
    while upstream.closed_streams == 0 and time.monotonic() < deadline:
        time.sleep(0.05)  # the fake notices when its next write fails
    assert upstream.closed_streams == 1


def test_max_input_tokens_refuses_a_long_prompt(guarded, upstream):
    client = guarded({"guardrail_name": "short", "dheera_ai_params": {
        "guardrail": "max_input_tokens", "max_input_tokens": 20, "default_on": True}}).test_client()
    assert chat(client, "x" * 80).status_code == 200
    r = chat(client, "x" * 81)
    assert r.status_code == 400 and "OVER_20_TOKENS" in r.json["error"]["message"]


def test_moderation_asks_a_moderation_group_through_the_gateways_router(guarded, base_config, upstream):
    base_config["model_list"].append({"model_name": "omni-moderation", "dheera_ai_params": {
        "model": "openai/omni-moderation-latest", "api_base": upstream.url + "/v1", "api_key": "sk-upstream-secret"}})
    app = guarded({"guardrail_name": "mod", "dheera_ai_params": {
        "guardrail": "moderation", "model": "omni-moderation", "default_on": True}})
    r = chat(app.test_client(), "something violent")
    assert r.status_code == 400
    assert r.json["error"]["message"] == "Blocked by guardrail 'mod' (pre_call): found MODERATION:violence."
    assert upstream.count("/v1/moderations") == 1 and upstream.count("/v1/chat/completions") == 0
    assert upstream.last.json["input"] == ["something violent"]
    [check] = [row for row in stored(app) if row["call_type"] == "moderations"]
    assert check["tags"] == ["guardrail:mod"], "the check's own spend row says which guardrail made it"


def test_presidio_finds_entities_through_its_analyzer_api(guarded, upstream):
    def analyze(recorded):
        text = recorded.json["text"]
        start = text.index("Jane Doe")
        return Script(body=json.dumps([{"entity_type": "PERSON", "start": start, "end": start + 8,
                                        "score": 0.85}]).encode())
    upstream.route("/presidio/analyze", analyze)
    app = guarded({"guardrail_name": "presidio-pii", "litellm_params": {
        "guardrail": "presidio", "presidio_analyzer_api_base": upstream.url + "/presidio", "default_on": True}})
    assert chat(app.test_client(), "Write to Jane Doe today").status_code == 200
    analyzed = [r for r in upstream.requests if r.path == "/presidio/analyze"]
    assert analyzed[0].json == {"text": "Write to Jane Doe today", "language": "en"}
    assert upstream.last.json["messages"][-1]["content"] == "Write to <PERSON> today"


def test_a_guardrail_service_that_is_down_is_skipped_unless_it_fails_closed(guarded, upstream):
    params = {"guardrail": "presidio", "presidio_analyzer_api_base": "http://127.0.0.1:9", "default_on": True,
              "timeout": 1}
    open_app = guarded({"guardrail_name": "p", "dheera_ai_params": params})
    assert chat(open_app.test_client(), "hi").status_code == 200
    assert spend_rows(open_app)[0]["guardrails"][0]["result"] == "error"
    closed = guarded({"guardrail_name": "p", "dheera_ai_params": {**params, "fail_closed": True}})
    r = chat(closed.test_client(), "hi")
    assert r.status_code == 503 and r.json["error"]["code"] == "guardrail_unavailable"


def test_a_bad_guardrail_config_stops_start_up_naming_it(make_app, base_config):
    from dheera_ai.config import ConfigError
    with pytest.raises(ConfigError) as raised:
        make_app(dict(base_config, guardrails=[{"guardrail_name": "x", "dheera_ai_params": {
            "guardrail": "pii", "action": "shred"}}]))
    assert "guardrails[0].dheera_ai_params.action: must be one of block, mask, log, not 'shred'" in str(raised.value)


def test_a_pip_installed_plugin_adds_a_guardrail_kind(tmp_path):
    site = install_plugin(tmp_path, "dheera-ai-no-shouting", "dheera_ai_no_shouting", """
        import re
        from dheera_ai import hookimpl
        from dheera_ai.guardrails import Finding, Guardrail

        class NoShouting(Guardrail):
            def inspect(self, texts, call):
                return [Finding("SHOUTING", i, m.start(), m.end())
                        for i, t in enumerate(texts) for m in re.finditer(r"\\b[A-Z]{5,}\\b", t)]

        @hookimpl
        def dheera_ai_register_guardrails(register):
            register("no_shouting", NoShouting)
    """)
    answer = run_with(site, tmp_path, f"""
        import json
        from proxy_app import create_app
        app = create_app({{"model_list": [{{"model_name": "demo", "dheera_ai_params": {{"model": "mock/demo"}}}}],
                           "guardrails": [{{"guardrail_name": "calm", "dheera_ai_params": {{
                               "guardrail": "no_shouting", "default_on": True}}}}],
                           "general_settings": {{"master_key": "{MASTER_KEY}", "database_url": "sqlite:///s.db"}}}})
        body = {{"model": "demo", "messages": [{{"role": "user", "content": "please STOP SHOUTING"}}]}}
        r = app.test_client().post("/v1/chat/completions", headers={{"Authorization": "Bearer {MASTER_KEY}"}},
                                   json=body)
        print(json.dumps(r.get_json()))
    """)
    assert json.loads(answer)["error"]["message"] == "Blocked by guardrail 'calm' (pre_call): found SHOUTING."
