"""The Azure Responses API page: every block of its "Dheera AI SDK" tabs, against a fake Azure.

Only the Azure resource addresses change (to the fake's). The blocks read the key with
`os.getenv("AZURE_RESPONSES_OPENAI_API_KEY")`, which the test sets, but do not `import os`: as
fragments of a page they are run with `os` already imported.
"""

import asyncio
import json
import os

import pytest

import dheera_ai
from dheera_ai import response_ids
from tests.sdk.seed_pages import AZURE_PAGE, adapted, python_blocks, run

BLOCKS = python_blocks(AZURE_PAGE)
CREATE = "Create a model response"
CODEX = "Azure Codex Models"
VIA_CHAT = "Calling via `/chat/completions`"
SDK_TAB = "dheera_ai-sdk"
EXAMPLES = [(CREATE, None, SDK_TAB, "Non-streaming"), (CREATE, None, SDK_TAB, "Streaming"),
            (CODEX, None, SDK_TAB, "Non-streaming"), (CODEX, None, SDK_TAB, "Streaming"),
            (VIA_CHAT, None, SDK_TAB, None)]
AZURE_KEY = "azure-responses-key"
PROMPT = "Tell me a three sentence bedtime story about a unicorn."


@pytest.fixture(autouse=True)
def azure_key(monkeypatch):
    monkeypatch.setenv("AZURE_RESPONSES_OPENAI_API_KEY", AZURE_KEY)


def fake_azure(upstream, base):
    return {base: upstream.url + ("/" if base.endswith("/") else "")}


def run_block(key, upstream, base):
    return run(adapted(BLOCKS[key], fake_azure(upstream, base)), {"os": os})


def test_every_sdk_block_of_the_page_is_run_here():
    assert [key for key in BLOCKS if key[2] == SDK_TAB] == EXAMPLES


def test_responses_non_streaming(upstream):
    response = run_block(EXAMPLES[0], upstream, "https://dheera_ai8397336933.openai.azure.com/")["response"]

    assert isinstance(response, dheera_ai.ResponsesAPIResponse)
    assert response.output_text == "Hello from the fake Responses API."
    assert response["output"][0]["content"][0]["text"] == "Hello from the fake Responses API."
    assert response.usage.total_tokens == 20
    sent = upstream.last
    assert sent.path == "/openai/responses?api-version=2023-03-15-preview"
    assert sent.headers["api-key"] == AZURE_KEY
    assert sent.json == {"model": "o1-pro", "input": PROMPT, "max_output_tokens": 100}
    # The page's "Cost Tracking" row: o1-pro is priced, per input and output token.
    assert response.response_cost == pytest.approx(12 * 1.5e-4 + 8 * 6.0e-4)


def test_a_created_response_can_be_fetched_and_deleted_where_it_lives(upstream):
    response = run_block(EXAMPLES[0], upstream, "https://dheera_ai8397336933.openai.azure.com/")["response"]
    assert response_ids.decode(response.id)[1] == "resp_fake123"

    fetched = dheera_ai.get_responses(response.id)
    assert upstream.last.method == "GET"
    assert upstream.last.path == "/openai/responses/resp_fake123?api-version=2023-03-15-preview"
    assert upstream.last.headers["api-key"] == AZURE_KEY
    assert fetched.id == response.id and fetched.output_text == "Hello from the fake Responses API."

    deleted = asyncio.run(dheera_ai.adelete_responses(response.id))
    assert upstream.last.method == "DELETE"
    assert upstream.last.path == "/openai/responses/resp_fake123?api-version=2023-03-15-preview"
    assert deleted.deleted is True


def test_a_response_made_elsewhere_needs_its_address(upstream):
    with pytest.raises(dheera_ai.BadRequestError, match="not made by this process"):
        dheera_ai.get_responses("resp_from_somewhere_else")
    fetched = dheera_ai.get_responses("resp_abc", custom_llm_provider="azure", api_base=upstream.url,
                                      api_key=AZURE_KEY, api_version="2025-04-01-preview")
    assert upstream.last.path == "/openai/responses/resp_abc?api-version=2025-04-01-preview"
    assert fetched.status == "completed"


def printed_events(capsys) -> list:
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith("ResponsesAPIStreamEvent(") for line in lines)
    return [json.loads(line[len("ResponsesAPIStreamEvent("):-1]) for line in lines]


def test_responses_streaming(upstream, capsys):
    response = run_block(EXAMPLES[1], upstream, "https://dheera_ai8397336933.openai.azure.com/")["response"]

    events = printed_events(capsys)
    assert [e["type"] for e in events] == ["response.created", "response.output_item.added",
                                           "response.output_text.delta", "response.output_text.delta",
                                           "response.completed"]
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "Hello stream"
    assert upstream.last.path == "/openai/responses?api-version=2023-03-15-preview"
    assert upstream.last.json["stream"] is True
    assert response.usage.total_tokens == 20


def test_codex_non_streaming_uses_the_v1_preview_api(upstream):
    response = run_block(EXAMPLES[2], upstream, "https://dheera_ai8397336933.openai.azure.com")["response"]

    assert response.output_text == "Hello from the fake Responses API."
    assert upstream.last.path == "/openai/v1/responses?api-version=preview"
    assert upstream.last.json["model"] == "codex-mini"
    assert upstream.last.json["max_output_tokens"] == 100


def test_codex_streaming_uses_the_v1_preview_api(upstream, capsys):
    run_block(EXAMPLES[3], upstream, "https://dheera_ai8397336933.openai.azure.com")

    assert printed_events(capsys)[-1]["type"] == "response.completed"
    assert upstream.last.path == "/openai/v1/responses?api-version=preview"
    assert upstream.last.json["model"] == "codex-mini" and upstream.last.json["stream"] is True


def test_chat_completions_through_the_responses_api(upstream):
    # The block sets AZURE_API_BASE itself; the fixture undoes it afterwards.
    response = run_block(EXAMPLES[4], upstream, "https://my-endpoint-sweden-berri992.openai.azure.com/")["response"]

    assert isinstance(response, dheera_ai.ModelResponse)
    assert response.choices[0].message.content == "Hello from the fake Responses API."
    assert response.choices[0].finish_reason == "stop"
    sent = upstream.last
    assert sent.path == "/openai/responses?api-version=2023-03-15-preview"
    assert sent.headers["api-key"] == "my-api-key"
    assert sent.json == {"model": "my-custom-o1-pro", "store": False,
                         "input": [{"type": "message", "role": "user", "content": "Hello world"}]}


def test_the_sdk_examples_async(upstream):
    base = upstream.url + "/"

    async def main():
        plain = await dheera_ai.aresponses(model="azure/o1-pro", input=PROMPT, max_output_tokens=100,
                                           api_key=os.getenv("AZURE_RESPONSES_OPENAI_API_KEY"), api_base=base,
                                           api_version="2023-03-15-preview")
        stream = await dheera_ai.aresponses(model="azure/codex-mini", input=PROMPT, stream=True,
                                            api_key=os.getenv("AZURE_RESPONSES_OPENAI_API_KEY"), api_base=base,
                                            api_version="preview")
        events = [event async for event in stream]
        chat = await dheera_ai.acompletion(model="azure/responses/my-custom-o1-pro", api_key="my-api-key",
                                           api_base=base, api_version="2023-03-15-preview",
                                           messages=[{"role": "user", "content": "Hello world"}])
        return plain, events, chat

    plain, events, chat = asyncio.run(main())
    assert plain.output_text == "Hello from the fake Responses API."
    assert isinstance(events[0], dheera_ai.ResponsesAPIStreamEvent) and events[-1].type == "response.completed"
    assert chat.choices[0].message.content == "Hello from the fake Responses API."
    assert [r.path for r in upstream.requests] == ["/openai/responses?api-version=2023-03-15-preview",
                                                   "/openai/v1/responses?api-version=preview",
                                                   "/openai/responses?api-version=2023-03-15-preview"]
