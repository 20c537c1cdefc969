"""Azure OpenAI's inbound URL scheme: `openai.AzureOpenAI(azure_endpoint=<gateway>)` works
unchanged, with a model name as the deployment."""

import io

import openai
import pytest

from tests.conftest import MASTER_KEY
from tests.support.fake_upstream import FAKE_AUDIO
from tests.support.openapi import assert_valid

API_VERSION = "2024-10-21"


@pytest.fixture
def azure(live):
    return openai.AzureOpenAI(azure_endpoint=live.url, api_version=API_VERSION, api_key=MASTER_KEY, max_retries=0,
                              timeout=10)


@pytest.mark.parametrize("model", ["gpt-4o-mini", "demo"])
def test_chat_through_the_deployment_route(azure, upstream, model):
    raw = azure.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": "Hi"}])
    assert raw.http_request.url.path == f"/openai/deployments/{model}/chat/completions"
    assert raw.http_request.url.params["api-version"] == API_VERSION
    assert_valid("CreateChatCompletionResponse", raw.http_response.json())
    if model == "gpt-4o-mini":
        assert upstream.last.path == "/v1/chat/completions"


def test_a_streamed_chat_through_the_deployment_route(azure):
    text = "".join(c.choices[0].delta.content or "" for c in azure.chat.completions.create(
        model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "Hi"}]) if c.choices)
    assert text == "Hello from the stream."


def test_completions_embeddings_images_and_audio(azure, upstream):
    assert azure.completions.create(model="gpt-4o-mini", prompt="Hi").choices[0].text
    assert upstream.last.path == "/v1/completions"
    assert len(azure.embeddings.create(model="demo", input=["a", "b"]).data) == 2
    assert azure.images.generate(model="gpt-4o-mini", prompt="fox").data[0].b64_json
    assert upstream.last.path == "/v1/images/generations"
    assert azure.audio.speech.create(model="gpt-4o-mini", voice="alloy", input="Hi").content == b"".join(FAKE_AUDIO)
    text = azure.audio.transcriptions.create(model="gpt-4o-mini", file=("a.wav", b"RIFFdata"),
                                             response_format="text")
    assert "a.wav" in text
    assert upstream.last.path == "/v1/audio/transcriptions"


def test_a_fixed_deployment_client_like_llamaindex_engine(live):
    client = openai.AzureOpenAI(azure_endpoint=live.url, azure_deployment="demo", api_version=API_VERSION,
                                api_key=MASTER_KEY, max_retries=0)
    # The deployment in the URL decides, whatever the body's model says.
    response = client.chat.completions.create(model="ignored", messages=[{"role": "user", "content": "Hi"}])
    assert "mock model" in response.choices[0].message.content


def test_responses_on_azures_routes(azure, live):
    created = azure.responses.create(model="demo", input="Hi")
    assert azure.responses.retrieve(created.id).id == created.id
    v1 = openai.OpenAI(base_url=live.url + "/openai/v1", api_key=MASTER_KEY, max_retries=0)
    assert v1.responses.retrieve(created.id).output_text == created.output_text
    assert v1.embeddings.create(model="demo", input="x").data


def test_an_unknown_operation_is_a_404(client, auth):
    response = client.post("/openai/deployments/demo/fine_tunes?api-version=1", headers=auth, json={})
    assert response.status_code == 404
    assert response.json["error"]["type"] == "not_found_error"


def test_a_body_without_a_model_takes_the_deployment_from_the_path(client, auth):
    response = client.post("/openai/deployments/demo/completions?api-version=2024-10-21", headers=auth,
                           json={"prompt": "Hi"})
    assert response.status_code == 200
    assert response.json["model"] == "demo"
    upload = client.post("/openai/deployments/demo/audio/transcriptions?api-version=2024-10-21", headers=auth,
                         content_type="multipart/form-data", data={"file": (io.BytesIO(b"RIFF"), "a.wav")})
    assert upload.status_code == 200 and "a.wav" in upload.json["text"]
