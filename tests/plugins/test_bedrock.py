"""Amazon Bedrock through the OpenAI and Anthropic SDKs: Converse and ConverseStream (an AWS event
stream), tools, images, embeddings and /v1/messages via InvokeModel, every request's SigV4 signature
checked by a fake Bedrock with botocore, assume-role through a fake STS that checks its own."""

import base64
import json
import threading

import anthropic
import openai
import pytest

from tests.conftest import MASTER_KEY
from tests.support import fake_aws
from tests.support.fake_aws import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    FakeBedrock,
    event,
    exception,
)
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.servers import LiveServer

CLAUDE = "us.anthropic.claude-3-5-sonnet-20241022-v2:0"
NOVA = "amazon.nova-pro-v1:0"
AWS = {"aws_access_key_id": ACCESS_KEY, "aws_secret_access_key": SECRET_KEY, "aws_region_name": REGION}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}


def converse_answer(text="Hello from Bedrock.", stop="end_turn", usage=(11, 5), content=None, cache=(0, 0)):
    return {"output": {"message": {"role": "assistant", "content": content or [{"text": text}]}},
            "stopReason": stop,
            "usage": {"inputTokens": usage[0], "outputTokens": usage[1], "totalTokens": sum(usage) + sum(cache),
                      "cacheReadInputTokens": cache[0], "cacheWriteInputTokens": cache[1]},
            "metrics": {"latencyMs": 120}}


def stream_frames(words=("Hel", "lo", " there"), usage=(11, 3)):
    frames = [event("messageStart", {"role": "assistant"})]
    frames += [event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": w}}) for w in words]
    frames += [event("contentBlockStop", {"contentBlockIndex": 0}), event("messageStop", {"stopReason": "end_turn"}),
               event("metadata", {"usage": {"inputTokens": usage[0], "outputTokens": usage[1],
                                            "totalTokens": sum(usage)}, "metrics": {"latencyMs": 200}})]
    return frames


@pytest.fixture
def bedrock(upstream):
    fake = FakeBedrock(upstream, bearer_tokens={"ABSKbedrock-api-key-example"})
    for model in (CLAUDE, NOVA, "amazon.titan-embed-text-v2:0", "cohere.embed-english-v3"):
        fake.serve(model)
    return fake


def entry(name, model, **params):
    return {"model_name": name, "dheera_ai_params": {"model": model, **params}}


@pytest.fixture
def gateway(make_app, bedrock, tmp_path):
    endpoint = {"aws_bedrock_runtime_endpoint": bedrock.url}
    config = {"model_list": [
        entry("claude", f"bedrock/{CLAUDE}", **AWS, **endpoint),
        entry("nova", f"bedrock/converse/{NOVA}", **AWS, **endpoint),
        entry("titan", "bedrock/amazon.titan-embed-text-v2:0", **AWS, **endpoint),
        entry("cohere-embed", "bedrock/cohere.embed-english-v3", **AWS, **endpoint),
        entry("keyed", f"bedrock/{NOVA}", api_key="ABSKbedrock-api-key-example", aws_region_name=REGION, **endpoint),
        entry("wrong-secret", f"bedrock/{NOVA}", aws_access_key_id=ACCESS_KEY, aws_secret_access_key="not-the-secret",
              aws_region_name=REGION, **endpoint),
    ], "general_settings": {"master_key": MASTER_KEY, "database_url": f"sqlite:///{tmp_path}/state.sqlite3"}}
    server = LiveServer(make_app(config))
    yield server
    server.close()


@pytest.fixture
def client(gateway):
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)


def test_chat_is_a_signed_converse_call(client, bedrock, upstream):
    bedrock.respond(converse_answer())
    response = client.chat.completions.create(model="claude", max_tokens=50, temperature=0.2, stop=["\n\n"], messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "How are you?"}])

    assert response.choices[0].message.content == "Hello from Bedrock."
    assert response.choices[0].finish_reason == "stop"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (11, 5)
    sent = upstream.last
    assert sent.path == "/model/us.anthropic.claude-3-5-sonnet-20241022-v2%3A0/converse"
    assert bedrock.signed_by == [ACCESS_KEY]
    assert sent.json == {
        "system": [{"text": "Be brief."}],
        "messages": [{"role": "user", "content": [{"text": "Hi"}]},
                     {"role": "assistant", "content": [{"text": "Hello!"}]},
                     {"role": "user", "content": [{"text": "How are you?"}]}],
        "inferenceConfig": {"maxTokens": 50, "temperature": 0.2, "stopSequences": ["\n\n"]}}


def test_a_wrong_secret_fails_the_signature_check_as_a_401(client, bedrock):
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="wrong-secret", messages=[{"role": "user", "content": "Hi"}])
    assert "Signature check failed" in caught.value.message
    assert "not-the-secret" not in caught.value.message
    assert bedrock.signed_by == []


def test_a_bedrock_api_key_is_sent_as_a_bearer_token(client, bedrock, upstream):
    bedrock.respond(converse_answer("keyed"))
    assert client.chat.completions.create(model="keyed", messages=[{"role": "user", "content": "Hi"}]) \
        .choices[0].message.content == "keyed"
    assert bedrock.signed_by == ["bearer"] and "x-amz-date" not in upstream.last.headers


def test_tools_and_tool_results_round_trip(client, bedrock, upstream):
    bedrock.respond(converse_answer(stop="tool_use", content=[
        {"text": "Let me check."},
        {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Oslo"}}}]))
    first = client.chat.completions.create(model="nova", tools=[WEATHER], tool_choice="required",
                                           messages=[{"role": "user", "content": "Weather in Oslo?"}])
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert (call.id, call.function.name) == ("tooluse_1", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Oslo"}
    assert upstream.last.path == "/model/amazon.nova-pro-v1%3A0/converse"  # the converse/ route prefix is not the id
    assert upstream.last.json["toolConfig"] == {"tools": [{"toolSpec": {
        "name": "get_weather", "description": "Weather in a city",
        "inputSchema": {"json": WEATHER["function"]["parameters"]}}}], "toolChoice": {"any": {}}}

    bedrock.respond(converse_answer("It is 3 degrees."))
    second = client.chat.completions.create(model="nova", tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather in Oslo?"}, first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": "tooluse_1", "content": '{"celsius": 3}'}])
    assert second.choices[0].message.content == "It is 3 degrees."
    assert upstream.last.json["messages"][1:] == [
        {"role": "assistant", "content": [{"text": "Let me check."}, {"toolUse": {
            "toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Oslo"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_1",
                                                     "content": [{"json": {"celsius": 3}}]}}]}]


def test_images_go_as_bytes_and_links_are_refused(client, bedrock, upstream):
    png = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
    bedrock.respond(converse_answer("A cat."))
    client.chat.completions.create(model="nova", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is it?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}]}])
    assert upstream.last.json["messages"][0]["content"][1] == {"image": {"format": "png", "source": {"bytes": png}}}

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="nova", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/cat.png"}}]}])
    assert "base64 data URLs" in caught.value.message and len(upstream.requests) == 1


def test_cache_tokens_count_as_prompt_tokens(client, bedrock):
    bedrock.respond(converse_answer(usage=(10, 5), cache=(100, 20)))
    usage = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "Hi"}]).usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.prompt_tokens_details.cached_tokens) == (130, 5, 100)


def test_the_stream_is_relayed_chunk_by_chunk_with_usage(client, bedrock, upstream):
    bedrock.stream(stream_frames(), piece=7)  # frames split across reads: the parser must reassemble them
    chunks = list(client.chat.completions.create(model="claude", stream=True, stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": "Hi"}]))

    assert upstream.last.path.endswith("/converse-stream") and bedrock.signed_by == [ACCESS_KEY]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello there"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (11, 3)


def test_streamed_tool_calls_arrive_as_openai_deltas(client, bedrock):
    bedrock.stream([event("messageStart", {"role": "assistant"}),
                    event("contentBlockStart", {"contentBlockIndex": 0, "start": {
                        "toolUse": {"toolUseId": "tooluse_9", "name": "get_weather"}}}),
                    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": '{"city": '}}}),
                    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": '"Rome"}'}}}),
                    event("contentBlockStop", {"contentBlockIndex": 0}),
                    event("messageStop", {"stopReason": "tool_use"}),
                    event("metadata", {"usage": {"inputTokens": 20, "outputTokens": 9, "totalTokens": 29}})])
    chunks = list(client.chat.completions.create(model="nova", stream=True, tools=[WEATHER],
                                                 messages=[{"role": "user", "content": "Rome?"}]))
    calls = [tc for c in chunks for tc in c.choices[0].delta.tool_calls or []]
    assert (calls[0].id, calls[0].function.name) == ("tooluse_9", "get_weather")
    assert json.loads("".join(tc.function.arguments for tc in calls)) == {"city": "Rome"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_an_exception_event_mid_stream_is_an_error_event(gateway, bedrock):
    import requests

    bedrock.stream([event("messageStart", {"role": "assistant"}),
                    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
                    exception("throttlingException", "Too many tokens, please wait before trying again.")])
    response = requests.post(gateway.url + "/v1/chat/completions", timeout=10,
                             headers={"Authorization": f"Bearer {MASTER_KEY}"},
                             json={"model": "claude", "stream": True, "messages": [{"role": "user", "content": "Hi"}]})
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
    assert events[1]["choices"][0]["delta"]["content"] == "Hi"
    assert events[-1]["error"]["code"] == "throttlingException"
    assert "Too many tokens" in events[-1]["error"]["message"]


@pytest.mark.parametrize("error_type,status,expected", [
    ("ThrottlingException", 429, openai.RateLimitError),
    ("ValidationException", 400, openai.BadRequestError),
    ("AccessDeniedException", 403, openai.AuthenticationError),
    ("UnrecognizedClientException", 403, openai.AuthenticationError),
    ("ModelTimeoutException", 408, openai.APITimeoutError),
    ("ServiceUnavailableException", 503, openai.InternalServerError),
])
def test_errors_map_to_statuses(gateway, bedrock, error_type, status, expected):
    import requests

    bedrock.respond({"message": f"{error_type} happened"}, status=status, error_type=error_type,
                    headers={"Retry-After": "7"} if status == 429 else None)
    response = requests.post(gateway.url + "/v1/chat/completions", timeout=10,
                             headers={"Authorization": f"Bearer {MASTER_KEY}"},
                             json={"model": "claude", "messages": [{"role": "user", "content": "Hi"}]})
    wanted = {"ThrottlingException": 429, "ValidationException": 400, "AccessDeniedException": 401,
              "UnrecognizedClientException": 401, "ModelTimeoutException": 408, "ServiceUnavailableException": 503}
    assert response.status_code == wanted[error_type]
    assert f"{error_type} happened" in response.json()["error"]["message"]
    assert response.json()["error"]["code"] == error_type
    if status == 429:
        assert response.headers["Retry-After"] == "7"


def test_titan_embeddings_one_invoke_per_input(client, bedrock, upstream):
    bedrock.respond({"embedding": [0.1, 0.2], "inputTextTokenCount": 3})
    bedrock.respond({"embedding": [0.3, 0.4], "inputTextTokenCount": 4})
    result = client.embeddings.create(model="titan", input=["one", "two"], dimensions=256, encoding_format="float")
    assert [d.embedding for d in result.data] == [[0.1, 0.2], [0.3, 0.4]] and result.usage.prompt_tokens == 7
    assert [r.json for r in upstream.requests] == [{"inputText": "one", "dimensions": 256},
                                                   {"inputText": "two", "dimensions": 256}]
    assert upstream.last.path == "/model/amazon.titan-embed-text-v2%3A0/invoke"
    assert bedrock.signed_by == [ACCESS_KEY] * 2


def test_cohere_embeddings_in_one_batch(client, bedrock, upstream):
    bedrock.respond({"id": "e1", "embeddings": [[0.5, 0.5], [0.25, 0.75]], "texts": ["a", "b"],
                     "response_type": "embeddings_floats"})
    result = client.embeddings.create(model="cohere-embed", input=["a", "b"])  # the SDK asks for base64
    assert len(result.data) == 2 and list(result.data[1].embedding) == [0.25, 0.75]
    assert upstream.last.json == {"texts": ["a", "b"], "input_type": "search_document"}


def test_anthropic_sdk_reaches_claude_on_bedrock_through_invoke_model(gateway, bedrock, upstream):
    message = {"id": "msg_bdrk_1", "type": "message", "role": "assistant", "model": "claude-3-5-sonnet-20241022",
               "content": [{"type": "text", "text": "Hi from Claude on Bedrock."}], "stop_reason": "end_turn",
               "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 7}}
    bedrock.respond(message)
    client = anthropic.Anthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0)
    answer = client.messages.create(model="claude", max_tokens=100, messages=[{"role": "user", "content": "Hi"}])
    assert answer.content[0].text == "Hi from Claude on Bedrock."
    assert upstream.last.path.endswith("%3A0/invoke")
    assert upstream.last.json == {"max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}],
                                  "anthropic_version": "bedrock-2023-05-31"}

    events = [{"type": "message_start", "message": dict(message, content=[], stop_reason=None,
                                                        usage={"input_tokens": 12, "output_tokens": 1})},
              {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
              {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Streamed."}},
              {"type": "content_block_stop", "index": 0},
              {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
               "usage": {"output_tokens": 3}},
              {"type": "message_stop"}]
    bedrock.stream([event("chunk", {"bytes": base64.b64encode(json.dumps(e).encode()).decode()}) for e in events])
    with client.messages.stream(model="claude", max_tokens=100, messages=[{"role": "user", "content": "Hi"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Streamed." and final.usage.output_tokens == 3
    assert upstream.last.path.endswith("/invoke-with-response-stream") and bedrock.signed_by == [ACCESS_KEY] * 2


def test_assume_role_credentials_are_cached_and_refreshed_before_expiry(make_app, bedrock, upstream, tmp_path):
    sts = FakeUpstream()
    issued = [("ASIAFIRSTSESSION0001", "first-secret", "first-token", 700),  # inside botocore's 15-minute window
              ("ASIASECONDSESSION002", "second-secret", "second-token", 3600)]
    lock = threading.Lock()

    def assume_role(recorded):
        try:
            fake_aws.check_sigv4(recorded, sts.url, {ACCESS_KEY: (SECRET_KEY, None)}, service="sts")
        except fake_aws.SignatureError as exc:
            return Script(status=403, body=str(exc).encode())
        assert b"Action=AssumeRole" in recorded.body and b"RoleSessionName=gw-session" in recorded.body
        with lock:
            key_id, secret, token, lifetime = issued.pop(0)
        bedrock.secrets[key_id] = (secret, token)
        return Script(body=fake_aws.assume_role_answer(key_id, secret, token, lifetime),
                      headers={"Content-Type": "text/xml"})

    sts.route("/", assume_role)
    config = {"model_list": [entry("role", f"bedrock/{NOVA}", **AWS, aws_bedrock_runtime_endpoint=bedrock.url,
                                   aws_role_name="arn:aws:iam::123456789012:role/bedrock",
                                   aws_session_name="gw-session",
                                   aws_sts_endpoint=sts.url)],
              "general_settings": {"master_key": MASTER_KEY, "database_url": f"sqlite:///{tmp_path}/s.sqlite3"}}
    server = LiveServer(make_app(config))
    try:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)
        for _ in range(3):
            bedrock.respond(converse_answer())
            client.chat.completions.create(model="role", messages=[{"role": "user", "content": "Hi"}])
    finally:
        server.close()
        sts.close()
    # The first session expires within botocore's refresh window, so it was replaced before its
    # first use; the second lasts an hour, so no call after that asked STS again.
    assert len(sts.requests) == 2
    assert bedrock.signed_by == ["ASIASECONDSESSION002"] * 3
