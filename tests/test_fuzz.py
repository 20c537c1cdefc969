"""Bad input, fuzzed: schemathesis reads the gateway's own /openapi.json and throws generated
requests (valid by the schema, and deliberately invalid) at every route of a live gateway.
Every answer must be a well-formed success or an error in OpenAI's shape: never a 500, never an
HTML page, never a hang. Bounded: a fixed number of examples per route and a time budget."""

import os
import re
import time

import orjson
import pytest
import requests

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402

from tests.conftest import MASTER_KEY  # noqa: E402

EXAMPLES = int(os.environ.get("DHEERA_AI_FUZZ_EXAMPLES", 25))  # per route and mode; raise it for a long hunt
# The whole run's time budget; routes left when it is spent fail the test, by name.
BUDGET_SECONDS = int(os.environ.get("DHEERA_AI_FUZZ_SECONDS", 150))
REQUEST_TIMEOUT = 15  # a hang is a failure, not a slow test
PREFIX = re.compile(r"^/(v1|v2|openai/v1)(?=/)")


def check_answer(response, path: str) -> None:
    """A success that parses as what it says it is, or an OpenAI (or, on /v1/messages, Anthropic) error."""
    status, ctype = response.status_code, response.headers.get("content-type") or ""
    ctype = ctype[0] if isinstance(ctype, list) else ctype  # schemathesis keeps every value of a header
    where = f"{path} -> {status}: {response.content[:300]!r}"
    assert status < 500, where
    if status >= 400:
        assert ctype.startswith("application/json"), where
        body = orjson.loads(response.content)
        error = body["error"]
        assert isinstance(error["message"], str) and error["message"] and isinstance(error["type"], str), where
        return
    if ctype.startswith("application/json"):
        orjson.loads(response.content)
    elif ctype.startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data: ") and line != "data: [DONE]":
                orjson.loads(line[6:])
    elif ctype.startswith("text/html"):
        assert path == "/docs", where
    else:
        assert ctype, where  # audio, text transcripts, metrics, Swagger UI's files: a declared type


def _routes(schema):
    """Each view once (the bare, /v1 and /openai/v1 copies of a route are one view)."""
    seen = set()
    for result in schema.get_all_operations():
        operation = result.ok()
        key = (operation.method, PREFIX.sub("", operation.path))
        if key not in seen:
            seen.add(key)
            yield operation


def _aim_at_real_models(case_and_flag):
    """Half the generated bodies name a configured model, so the fuzz reaches past model lookup."""
    case, use_demo = case_and_flag
    if use_demo and isinstance(case.body, dict) and "model" in case.body:
        case.body["model"] = "demo"
    return case


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_every_route_answers_fuzzed_input_with_json_never_a_500(live, mode):
    schema = schemathesis.openapi.from_url(live.url + "/openapi.json")
    session = requests.Session()
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    started = time.monotonic()
    fuzzed, left, statuses = 0, [], {}
    for operation in _routes(schema):
        if time.monotonic() - started > BUDGET_SECONDS:
            left.append(operation.label)
            continue
        strategy = st.tuples(operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode)),
                             st.booleans()).map(_aim_at_real_models)

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def one_route(case):
            response = case.call(base_url=live.url, session=session, headers=headers, timeout=REQUEST_TIMEOUT)
            check_answer(response, case.formatted_path)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        try:
            one_route()
        except Unsatisfiable:  # negative mode: a route with no input has nothing to get wrong
            continue
        fuzzed += 1
    print(f"{mode}: {fuzzed} routes, answers by status {dict(sorted(statuses.items()))}")
    assert not left, f"the time budget ran out before these routes: {left}"
    assert fuzzed >= 40, f"only {fuzzed} routes had anything to fuzz"
    assert sum(n for status, n in statuses.items() if status < 300) > 0  # the fuzz got past validation too


def test_a_form_part_without_a_name_is_a_400_not_a_500(client, auth):
    """Found by the fuzzer: a multipart part with no `name=` crashed the form parsing."""
    body = (b"--XyZ\r\nContent-Disposition: form-data\r\n\r\nwhisper-1\r\n"
            b"--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ndemo\r\n--XyZ--\r\n")
    for path in ("/v1/audio/transcriptions", "/v1/images/edits"):
        answer = client.post(path, headers=auth, data=body, content_type="multipart/form-data; boundary=XyZ")
        assert answer.status_code == 400, answer.get_data(as_text=True)
        assert answer.json["error"]["code"] == "invalid_body"


def test_non_ascii_digits_in_numbers_are_a_400_not_a_500(client, auth):
    """Found by the fuzzer: '²' passes str.isdigit() but not int()."""
    import base64

    answer = client.get("/key/list?size=²", headers=auth)
    assert answer.status_code == 400 and answer.json["error"]["param"] == "size"
    from dheera_ai import response_ids

    forged = response_ids.PREFIX + base64.urlsafe_b64encode(
        (response_ids._MARK + "²:abcdef").encode()).decode().rstrip("=")
    assert response_ids.decode(forged) is None
    answer = client.get(f"/v1/responses/{forged}", headers=auth)
    assert answer.status_code == 404 and answer.json["error"]["type"]


@pytest.mark.parametrize("path, body", [("/team/new", {"rpm_limit": 10**30}), ("/key/generate", {"tpm_limit": 2**63}),
                                        ("/user/new", {"max_parallel_requests": 10**19})])
def test_limits_too_large_to_store_are_a_400_not_a_500(client, auth, path, body):
    """Found by the fuzzer: an integer past 64 bits overflowed the store's column."""
    answer = client.post(path, headers=auth, json=body)
    assert answer.status_code == 400, answer.get_data(as_text=True)
    assert answer.json["error"]["param"] == next(iter(body))


@pytest.mark.parametrize("path, body", [("/key/generate", {"duration": "9" * 400 + "d"}),
                                        ("/key/generate", {"duration": "99999999999999999999999d"}),
                                        ("/team/new", {"budget_duration": "9" * 30 + "d"})])
def test_durations_beyond_reason_are_a_400_not_a_500(client, auth, path, body):
    """Found following the fuzzer's lead: `now + duration` overflowed a float."""
    answer = client.post(path, headers=auth, json=body)
    assert answer.status_code == 400, answer.get_data(as_text=True)
    assert answer.json["error"]["param"] == next(iter(body))


@pytest.mark.parametrize("path, body", [
    ("/v1/messages", {"model": "demo", "max_tokens": 5, "messages": [{"role": "user", "content": [None]}]}),
    ("/v1/messages", {"model": "demo", "max_tokens": 5, "messages": [{"role": "user", "content": [{"text": "x"}]}]}),
    ("/v1/responses", {"model": "demo", "input": [None]}),
])
def test_malformed_blocks_on_translated_routes_are_a_400_not_a_500(client, auth, path, body):
    """Found by the fuzzer: a content block that is not an object crashed the translation."""
    answer = client.post(path, headers=auth, json=body)
    assert answer.status_code == 400, answer.get_data(as_text=True)
    assert "malformed" in answer.json["error"]["message"]
