"""The Responses API through the gateway: passed through to a deployment that speaks it, bridged
through chat completions for one that does not, and follow-ups routed back by response id."""

import pytest

from dheera_ai import hookimpl
from dheera_ai.providers import Provider
from plugins.providers.openai import OpenAIProvider
from tests.conftest import MASTER_KEY
from tests.support.fake_upstream import FakeUpstream, chat_completion
from tests.support.openapi import assert_valid
from tests.support.servers import LiveServer


class ChatOnlyProvider(Provider):
    """An OpenAI-compatible server without the Responses API (most of them)."""

    def chat_completions(self, call, deployment):
        return OpenAIProvider.chat_completions(OpenAIProvider(), call, deployment)


class ChatOnlyPlugin:
    @hookimpl
    def dheera_ai_register_providers(self, register):
        register("chatonly", ChatOnlyProvider())


@pytest.fixture
def chat_only(make_app, base_config, upstream):
    import openai

    base_config["model_list"].append({"model_name": "chat-only", "dheera_ai_params": {
        "model": "chatonly/llama", "api_base": upstream.url + "/v1", "api_key": "sk-upstream-secret"}})
    server = LiveServer(make_app(base_config, [ChatOnlyPlugin()]))
    yield openai.OpenAI(base_url=server.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)
    server.close()


# -- passed through -----------------------------------------------------------------------------

def test_create_passes_through_with_an_id_that_names_the_deployment(openai_client, upstream, call_log):
    raw = openai_client.responses.with_raw_response.create(model="gpt-4o-mini", input="Hi", temperature=0.5)
    body = raw.http_response.json()

    assert_valid("Response", body)
    response = raw.parse()
    assert response.output_text == "Hello from the fake Responses API."
    assert response.id.startswith("resp_") and response.id != "resp_fake123"
    assert upstream.last.path == "/v1/responses"
    assert upstream.last.json == {"model": "gpt-4o-mini", "input": "Hi", "temperature": 0.5}
    assert call_log()[-1]["prompt_tokens"] == 12


def test_a_streamed_create_relays_named_events(openai_client, call_log):
    events = list(openai_client.responses.create(model="gpt-4o-mini", input="Hi", stream=True))

    assert [e.type for e in events] == ["response.created", "response.output_item.added",
                                        "response.output_text.delta", "response.output_text.delta",
                                        "response.completed"]
    assert events[0].response.id == events[-1].response.id != "resp_fake123"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Hello stream"
    assert call_log()[-1]["completion_tokens"] == 8


def test_retrieve_delete_and_input_items_reach_the_upstream_with_its_own_id(openai_client, upstream):
    created = openai_client.responses.create(model="gpt-4o-mini", input="Hi")

    fetched = openai_client.responses.retrieve(created.id)
    assert fetched.id == created.id
    assert upstream.last.method == "GET" and upstream.last.path == "/v1/responses/resp_fake123"
    items = openai_client.responses.input_items.list(created.id, limit=5)
    assert items.data[0].content[0].text == "Hi"
    assert upstream.last.path == "/v1/responses/resp_fake123/input_items?limit=5"
    assert upstream.last.headers["authorization"] == "Bearer sk-upstream-secret"
    openai_client.responses.delete(created.id)
    assert upstream.last.method == "DELETE" and upstream.last.path == "/v1/responses/resp_fake123"


def test_previous_response_id_goes_back_to_the_deployment_that_made_it(make_app, upstream):
    import openai

    other = FakeUpstream()
    try:
        config = {"model_list": [
            {"model_name": "pair", "dheera_ai_params": {"model": "openai/gpt-4o-mini", "api_base": up.url + "/v1",
                                                        "api_key": "sk-x"}} for up in (upstream, other)]}
        server = LiveServer(make_app(config))
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-anything", max_retries=0)
        for _ in range(4):
            first = client.responses.create(model="pair", input="Hi")
            maker = upstream if upstream.requests and upstream.last.json.get("input") == "Hi" else other
            maker.requests.clear()
            for _ in range(3):
                follow = client.responses.create(model="pair", input="More", previous_response_id=first.id)
                assert follow.previous_response_id == first.id
                client.responses.retrieve(first.id)
            assert len(maker.requests) == 6
            assert maker.requests[0].json["previous_response_id"] == "resp_fake123"
            upstream.requests.clear()
            other.requests.clear()
        server.close()
    finally:
        other.close()


def test_an_id_the_gateway_never_gave_is_a_404(openai_client, upstream):
    import openai

    with pytest.raises(openai.NotFoundError):
        openai_client.responses.retrieve("resp_not_ours")
    assert upstream.requests == []


# -- bridged through chat completions -----------------------------------------------------------

def test_a_chat_only_deployment_answers_through_chat_completions(chat_only, upstream, call_log):
    upstream.respond(chat_completion("Paris."))
    raw = chat_only.responses.with_raw_response.create(model="chat-only", input="Capital of France?",
                                                       instructions="Be brief.", max_output_tokens=20)
    assert_valid("Response", raw.http_response.json())
    response = raw.parse()
    assert response.output_text == "Paris."
    assert upstream.last.path == "/v1/chat/completions"
    assert upstream.last.json["messages"] == [{"role": "system", "content": "Be brief."},
                                              {"role": "user", "content": "Capital of France?"}]
    assert upstream.last.json["max_completion_tokens"] == 20
    assert call_log()[-1]["prompt_tokens"] == 9


def test_bridged_follow_ups_use_the_stored_conversation(chat_only, upstream):
    upstream.respond(chat_completion("Paris."))
    first = chat_only.responses.create(model="chat-only", input="Capital of France?")
    upstream.respond(chat_completion("About 2 million."))
    second = chat_only.responses.create(model="chat-only", input="Population?", previous_response_id=first.id)

    assert second.output_text == "About 2 million."
    assert upstream.last.json["messages"] == [
        {"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "Population?"}]
    assert chat_only.responses.retrieve(second.id).output_text == "About 2 million."
    items = chat_only.responses.input_items.list(second.id)
    assert_valid("ResponseItemList", items.model_dump(exclude_unset=True))
    assert [i.content[0].text for i in items.data] == ["Population?"]


@pytest.mark.parametrize("model", ["demo", "chat-only"])
def test_a_bridged_stream_has_the_responses_events(chat_only, model):
    events = list(chat_only.responses.create(model=model, input="Hi", stream=True))

    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert "response.output_text.delta" in types and types[-1] == "response.completed"
    for event in events:
        assert_valid("ResponseStreamEvent", event.model_dump(exclude_unset=True, mode="json"))
    final = events[-1].response
    assert final.usage.output_tokens > 0
    assert chat_only.responses.retrieve(final.id).output_text == final.output_text


def test_the_mock_serves_the_whole_responses_lifecycle(openai_client):
    import openai

    created = openai_client.responses.create(model="demo", input=[{"role": "user", "content": "Hello"}],
                                             extra_body={"mock_response": "Hi back"})
    assert created.output_text == "Hi back"
    assert openai_client.responses.retrieve(created.id).id == created.id
    assert openai_client.responses.input_items.list(created.id).data[0].content[0].text == "Hello"
    deleted = openai_client.responses.delete(created.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.retrieve(created.id)


def test_an_untranslatable_request_is_a_400_naming_the_field(chat_only):
    import openai

    with pytest.raises(openai.BadRequestError) as exc:
        chat_only.responses.create(model="chat-only", input="Hi", tools=[{"type": "web_search"}])
    assert "web_search" in exc.value.message


def test_wrong_field_types_are_a_400(client, auth):
    response = client.post("/v1/responses", headers=auth, json={"model": "demo", "input": "x", "stream": "yes"})
    assert response.status_code == 400 and response.json["error"]["param"] == "stream"


def test_a_follow_up_is_answered_and_logged_by_the_group_that_holds_the_conversation(openai_client, upstream,
                                                                                     call_log):
    first = openai_client.responses.create(model="demo", input="Hi", extra_body={"mock_response": "mock says hi"})
    follow = openai_client.responses.create(model="gpt-4o-mini", input="Again", previous_response_id=first.id,
                                            extra_body={"mock_response": "still the mock"})
    assert follow.output_text == "still the mock"
    assert upstream.requests == []
    assert call_log(2)[-1]["model"] == "demo"


def test_an_error_mid_stream_is_a_responses_error_event(chat_only, upstream):
    from tests.support.fake_upstream import chat_chunks

    upstream.stream(chat_chunks()[:2] + ['{"error": {"message": "upstream fell over", "code": "boom"}}'])
    events = list(chat_only.responses.create(model="chat-only", input="Hi", stream=True))

    assert events[0].type == "response.created"
    # The Responses API's own error event (ResponseErrorEvent), as the SDK parses it.
    assert events[-1].type == "error" and "upstream fell over" in events[-1].message
    assert_valid("ResponseStreamEvent", events[-1].model_dump(exclude_unset=True))
