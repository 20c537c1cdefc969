"""Structured logs: one JSON line per call, and no secret in any line, whatever carried it."""

import io
import json
import logging
import random

import pytest

from dheera_ai.redact import is_secret_name, redact, redact_data, redact_headers
from plugins.call_log import JSONLine
from proxy_app.logs import JSONFormatter

OPENAI_KEY = "sk-proj-AbCdEfGh1234567890abcdefghijkl"
ANTHROPIC_KEY = "sk-ant-api03-ZyXwVuTs9876543210-abcdefghijklmnop"
GOOGLE_KEY = "AIzaSyA1234567890abcdefghijklmnopqrstu"
AZURE_KEY = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("text, secret", [
    (f"Incorrect API key provided: {OPENAI_KEY}.", OPENAI_KEY),
    (f"invalid x-api-key {ANTHROPIC_KEY}", ANTHROPIC_KEY),
    (f"API key not valid: key={GOOGLE_KEY}", GOOGLE_KEY),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "eyJhbGciOiJIUzI1NiJ9.payload.sig"),
    (f"api-key: {AZURE_KEY}", AZURE_KEY),
    (f'{{"api_key": "{AZURE_KEY}"}}', AZURE_KEY),
])
def test_credentials_in_text_are_masked_keeping_a_recognisable_prefix(text, secret):
    out = redact(text)
    assert secret not in out
    assert "****" in out


def test_ordinary_text_is_left_alone():
    text = "model gpt-4o-mini answered 12 tokens for task-runner (call 5f0c1d2e-aaaa-bbbb-cccc-123456789012)"
    assert redact(text) == text


def test_text_skipped_by_the_quick_scan_is_text_the_patterns_leave_alone(monkeypatch):
    # `redact` runs the credential patterns only on text holding one of their literal starts: on
    # any text it must mask exactly what the patterns alone mask, mixed case and non-ASCII included.
    from dheera_ai import redact as module
    from dheera_ai.redact import _TEXT_PATTERNS, _keep_prefix

    monkeypatch.setattr(module, "_known_pattern", None)  # other tests' configured keys: not this test's

    ascii_only = "sk-SK-ant-AIZaiza Bearer bEARER authorization: api-key_api_key x-goog =\"',;\n\t*0123456789xyz"
    alphabets = (ascii_only, ascii_only + "\u212a\u017f\u0130")  # the Kelvin sign, a long s, a dotted I
    rng = random.Random(7)
    texts = ["\u212aey SK-abcdefgh1234", "\u017fk-abcdefgh12345678", "SK-ABCD12345678", "AIzaSyABCDEFGHIJKL",
             "AUTHORIZATION: tok123", "x-API_KEY=zzzz", "Api-Key: abc123", "x-goog-api-key=zz", "beaRer abc"]
    texts += ["".join(rng.choice(alphabets[i % 2]) for _ in range(rng.randint(0, 60))) for i in range(20000)]
    for text in texts:
        assert redact(text) == _TEXT_PATTERNS.sub(_keep_prefix, text), text


@pytest.mark.parametrize("name", ["api_key", "apiKey", "x-api-key", "Authorization", "password", "client_secret",
                                  "access_token", "credentials", "private_key", "key", "azure_ad_token", "Cookie"])
def test_names_of_secrets_are_recognised(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["max_tokens", "prompt_tokens", "key_alias", "keys", "model", "monkey_business"])
def test_ordinary_names_are_not_secrets(name):
    assert not is_secret_name(name)


def test_nested_metadata_is_redacted_by_name_and_by_shape():
    data = {"metadata": {"team": "eng", "db": {"password": "hunter2", "user": "app"},
                         "creds": {"credential": ["a", "b"]}, "note": f"use {OPENAI_KEY}"},
            "user_config": {"model_list": [{"litellm_params": {"api_key": "plain-looking-secret-value"}}]},
            "max_tokens": 5}
    out = json.dumps(redact_data(data))
    for secret in ("hunter2", OPENAI_KEY, "plain-looking-secret-value", '"a"'):
        assert secret not in out
    assert redact_data(data)["max_tokens"] == 5
    assert redact_data(data)["metadata"]["db"]["user"] == "app"


def test_headers_lose_their_credentials():
    headers = redact_headers({"Authorization": f"Bearer {OPENAI_KEY}", "api-key": AZURE_KEY,
                              "x-api-key": ANTHROPIC_KEY, "content-type": "application/json"})
    assert OPENAI_KEY not in str(headers) and AZURE_KEY not in str(headers) and ANTHROPIC_KEY not in str(headers)
    assert headers["content-type"] == "application/json"


def test_http_redact_is_the_same_function_for_existing_callers():
    from dheera_ai import http
    assert http.redact(f"bad key {OPENAI_KEY}") == redact(f"bad key {OPENAI_KEY}")


def _virtual_key(client, auth, alias):
    return client.post("/key/generate", headers=auth, json={"key_alias": alias}).json["key"]


def test_a_call_line_names_the_key_alias_deployment_status_latency_tokens_and_has_a_cost_field(
        client, auth, call_log):
    key = _virtual_key(client, auth, "ann-laptop")
    answer = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                         json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 200
    line = call_log()[-1]
    assert line["call_id"] == answer.headers["x-dheera-ai-call-id"]
    assert line["key_alias"] == "ann-laptop"
    assert line["model"] == "gpt-4o-mini" and line["model_group"] == "gpt-4o-mini"
    assert line["deployment"] == answer.headers["x-dheera-ai-model-id"]
    assert line["status"] == 200 and line["latency_ms"] > 0
    assert (line["prompt_tokens"], line["completion_tokens"], line["total_tokens"]) == (9, 7, 16)
    assert "cost" in line  # filled in by spend logging
    assert key not in json.dumps(line)


def test_a_provider_key_echoed_in_an_upstream_error_never_reaches_the_log(client, auth, upstream, call_log):
    upstream.fail(401, f"Incorrect API key provided: {OPENAI_KEY}. Authorization: Bearer {OPENAI_KEY}")
    answer = client.post("/v1/chat/completions", headers=auth,
                         json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 401
    assert OPENAI_KEY not in answer.get_data(as_text=True)
    line = call_log()[-1]
    assert line["status"] == 401 and line["error_type"] == "AuthenticationError"
    assert OPENAI_KEY not in json.dumps(line) and "sk-proj****" in line["error"]


def test_detailed_debug_adds_the_request_but_never_a_secret(client, auth, caplog, call_log, base_config):
    caplog.set_level(logging.DEBUG, logger="dheera_ai.calls")
    answer = client.post("/v1/chat/completions", headers={**auth, "x-trace": "abc"},
                         json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                               "metadata": {"password": "hunter2", "purpose": "demo"}})
    assert answer.status_code == 200
    line = call_log()[-1]
    request = line["request"]
    assert request["body"]["messages"] == [{"role": "user", "content": "hi"}]
    assert request["headers"]["x-trace"] == "abc"
    assert request["metadata"]["purpose"] == "demo" or request["gateway_params"]["metadata"]["purpose"] == "demo"
    assert request["api_base"] == base_config["model_list"][0]["dheera_ai_params"]["api_base"]
    text = json.dumps(line)
    for secret in ("hunter2", "sk-upstream-secret", auth["Authorization"].split()[1]):
        assert secret not in text


def test_every_log_line_is_json_and_exception_text_is_redacted():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("dheera_ai.test-json")
    logger.addHandler(handler)
    try:
        logger.warning('{"event": "call", "status": 200}')
        logger.info(JSONLine(event="call", status=201))  # the call log's own lines: fields, not text
        try:
            raise RuntimeError(f"upstream said no to {OPENAI_KEY}")
        except RuntimeError:
            logger.exception("unexpected error with key %s", GOOGLE_KEY)
    finally:
        logger.removeHandler(handler)
    first, fields, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["event"] == "call" and first["status"] == 200 and first["level"] == "warning"
    assert fields["event"] == "call" and fields["status"] == 201 and fields["logger"] == "dheera_ai.test-json"
    assert json.loads(str(JSONLine(status=201))) == {"status": 201}  # how any other formatter prints it
    assert second["level"] == "error" and "unexpected error" in second["message"]
    assert OPENAI_KEY not in second["exc"] and GOOGLE_KEY not in second["message"]



def test_gunicorn_access_log_is_json_without_query_strings_when_asked_for(tmp_path):
    import time

    import requests
    import yaml

    from tests.support.process import GatewayProcess

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"model_list": [{"model_name": "demo", "dheera_ai_params": {"model": "mock/demo"}}],
                                    "general_settings": {"master_key": "sk-access-log-master"}}))
    process = GatewayProcess("--config", str(path), "--workers", "1", "--host", "127.0.0.1",
                             env={"DHEERA_AI_ACCESS_LOG": "1"})
    try:
        process.wait_ready()
        secret = "sk-" + "q" * 40
        answer = requests.get(process.url + f"/key/info?key={secret}",
                              headers={"Authorization": "Bearer sk-access-log-master"}, timeout=10)
        call_id = answer.headers["x-dheera-ai-call-id"]
        chat = requests.post(process.url + "/v1/chat/completions", timeout=10,
                             headers={"Authorization": "Bearer sk-access-log-master"},
                             json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]})
        deadline = time.time() + 5
        while chat.headers["x-dheera-ai-call-id"] not in process.output() and time.time() < deadline:
            time.sleep(0.05)
        output = process.output()
    finally:
        process.close()
    [line] = [json.loads(row) for row in output.splitlines() if call_id in row and '"access"' in row]
    assert line["method"] == "GET" and line["path"] == "/key/info" and line["status"] == answer.status_code
    assert line["duration_ms"] >= 0 and line["bytes"] > 0
    assert secret not in output and "sk-access-log-master" not in output
    # The call log's line, in the same JSON style, with its time and level.
    [call] = [json.loads(row) for row in output.splitlines()
              if chat.headers["x-dheera-ai-call-id"] in row and '"event":"call"' in row]
    assert call["logger"] == "dheera_ai.calls" and call["level"] == "info" and call["time"].endswith("Z")
