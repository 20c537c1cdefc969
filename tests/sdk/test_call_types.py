"""The gateway's other call types in the SDK: `/v1/messages` (plain and streamed), audio
translations, a response's input items, moderation; direct, async, through a Router, and through a
gateway (`dheera_ai_proxy/`)."""

import asyncio

import anthropic
import pytest

import dheera_ai
from tests.plugins.test_anthropic import message, stream_events
from tests.sdk.conftest import GATEWAY_KEY

HI = [{"role": "user", "content": "Hi"}]


def on(upstream, **kwargs):
    return {"api_base": upstream.url + "/v1", "api_key": "sk-upstream-secret", **kwargs}


# -- /v1/messages ----------------------------------------------------------------------------------

def test_anthropic_messages_go_to_anthropic_as_written(upstream):
    upstream.respond(message())

    answer = dheera_ai.anthropic_messages(model="anthropic/claude-sonnet-4", messages=HI, max_tokens=20,
                                          api_base=upstream.url, api_key="sk-ant-secret")

    assert upstream.last.path == "/v1/messages"
    assert upstream.last.json == {"model": "claude-sonnet-4", "messages": HI, "max_tokens": 20}
    assert upstream.last.headers["x-api-key"] == "sk-ant-secret"
    assert answer == message()
    assert answer.content[0].text == message()["content"][0]["text"]
    assert answer._hidden_params["custom_llm_provider"] == "anthropic"
    # The answer parses as the anthropic SDK's own type.
    assert anthropic.types.Message.model_validate(dict(answer)).usage.output_tokens == answer.usage.output_tokens


def test_a_streamed_anthropic_message_is_its_named_events(upstream):
    upstream.stream(stream_events())

    stream = dheera_ai.anthropic_messages(model="anthropic/claude-sonnet-4", messages=HI, max_tokens=20,
                                          stream=True, api_base=upstream.url, api_key="sk-ant-secret")
    events = list(stream)

    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text == "Hello there"
    assert upstream.last.json["stream"] is True
    assert stream.usage is not None and stream.usage.completion_tokens == 7


def test_an_anthropic_error_event_is_raised_while_iterating(upstream):
    events = stream_events()[:2] + [("error", {"type": "error",
                                               "error": {"type": "overloaded_error", "message": "Overloaded"}})]
    upstream.stream(events)

    stream = dheera_ai.anthropic_messages(model="anthropic/claude-sonnet-4", messages=HI, max_tokens=20,
                                          stream=True, api_base=upstream.url, api_key="sk-ant-secret")
    with pytest.raises(dheera_ai.DheeraAIError, match="Overloaded"):
        list(stream)


def test_any_model_answers_anthropic_messages_in_anthropics_shape(upstream):
    answer = dheera_ai.anthropic_messages(model="openai/gpt-4o-mini", messages=HI, max_tokens=20, **on(upstream))

    assert upstream.last.path == "/v1/chat/completions"
    assert answer.type == "message" and answer.content[0].text == "Hello from the fake upstream."
    assert answer.usage.input_tokens == 9

    events = [e.type for e in dheera_ai.anthropic_messages(model="openai/gpt-4o-mini", messages=HI, max_tokens=20,
                                                           stream=True, **on(upstream))]
    assert events[0] == "message_start" and events[-1] == "message_stop"


def test_anthropic_messages_awaited_and_through_a_router(upstream):
    router = dheera_ai.Router(model_list=[{"model_name": "claude", "litellm_params": {
        "model": "anthropic/claude-sonnet-4", "api_base": upstream.url, "api_key": "sk-ant-secret"}}])
    upstream.respond(message())
    upstream.stream(stream_events())

    async def main():
        answer = await router.aanthropic_messages(model="claude", messages=HI, max_tokens=20)
        stream = await dheera_ai.aanthropic_messages(model="anthropic/claude-sonnet-4", messages=HI, max_tokens=20,
                                                     stream=True, api_base=upstream.url, api_key="sk-ant-secret")
        return answer, [e.type async for e in stream]

    answer, events = asyncio.run(main())
    assert answer.content[0].text == message()["content"][0]["text"]
    assert events[0] == "message_start" and events[-1] == "message_stop"


# -- audio translations, input items, moderation ---------------------------------------------------

def test_a_translation_is_sent_as_audio_translations(upstream):
    heard = dheera_ai.translation(model="openai/whisper-1", file=("clip.mp3", b"ID3...", "audio/mpeg"),
                                  **on(upstream))

    assert upstream.last.path == "/v1/audio/translations"
    fields, files = upstream.last.form
    assert fields["model"] == "whisper-1"
    assert files == [("file", "clip.mp3", "audio/mpeg", b"ID3...")]
    assert heard.text
    assert asyncio.run(dheera_ai.atranslation(model="openai/whisper-1", file=b"ID3...", **on(upstream))).text


def test_input_items_of_a_response_come_from_where_it_was_made(upstream):
    made = dheera_ai.responses(model="openai/gpt-4o", input="Hi", **on(upstream))

    items = dheera_ai.list_input_items(made.id)

    assert (upstream.last.method, upstream.last.path) == ("GET", "/v1/responses/resp_fake123/input_items")
    assert items.data[0].content[0].text == "Hi" and items.has_more is False
    assert asyncio.run(dheera_ai.alist_input_items(made.id)).first_id == "msg_in1"


def test_an_unknown_response_id_says_where_to_look():
    with pytest.raises(dheera_ai.BadRequestError, match="not made by this process"):
        dheera_ai.list_input_items("resp_somewhere_else")


def test_moderation_direct_and_awaited(upstream):
    flagged = dheera_ai.moderation(input="hello", model="openai/omni-moderation-latest", **on(upstream))

    assert upstream.last.path == "/v1/moderations"
    assert flagged.results is not None
    assert asyncio.run(dheera_ai.amoderation(input="hello", model="openai/omni-moderation-latest",
                                             **on(upstream))).results is not None


# -- the same through a gateway ----------------------------------------------------------------------

def test_every_call_type_reaches_a_gateway(gateway, upstream):
    via = {"api_base": gateway.url, "api_key": GATEWAY_KEY}

    answer = dheera_ai.anthropic_messages(model="dheera_ai_proxy/your-model-name", messages=HI, max_tokens=20, **via)
    assert answer.type == "message" and answer.content[0].text == "Hello from the fake upstream."
    assert upstream.last.path == "/v1/chat/completions"  # the gateway served it through chat

    events = [e.type for e in dheera_ai.anthropic_messages(model="dheera_ai_proxy/your-model-name", messages=HI,
                                                           max_tokens=20, stream=True, **via)]
    assert events[0] == "message_start" and events[-1] == "message_stop"

    heard = dheera_ai.translation(model="dheera_ai_proxy/whisper-1", file=("a.wav", b"RIFF...."), **via)
    assert heard.text and upstream.last.path == "/v1/audio/translations"

    made = dheera_ai.responses(model="dheera_ai_proxy/gpt-4", input="Hi", **via)
    items = dheera_ai.list_input_items(made.id)
    assert upstream.last.path.endswith("/input_items") and items.data[0].id == "msg_in1"

    moderated = dheera_ai.moderation(input="hello", model="dheera_ai_proxy/your-model-name", **via)
    assert moderated.results is not None and upstream.last.path == "/v1/moderations"

    async def awaited():
        return await dheera_ai.aanthropic_messages(model="dheera_ai_proxy/your-model-name", messages=HI,
                                                   max_tokens=20, **via)
    assert asyncio.run(awaited()).content[0].text == "Hello from the fake upstream."
