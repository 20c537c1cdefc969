"""What the post-call hook learns about every family's usage: tokens, and the unit each family
is billed by (images, characters of speech, seconds of audio, search units)."""

import pytest

from dheera_ai import hookimpl
from tests.support.servers import LiveServer


class Recorder:
    def __init__(self):
        self.outcomes = []

    @hookimpl
    def dheera_ai_post_call_success(self, call, outcome):
        self.outcomes.append((call.call_type, outcome.usage))


@pytest.fixture
def recorded(make_app, base_config):
    import openai

    recorder = Recorder()
    server = LiveServer(make_app(base_config, [recorder]))
    yield openai.OpenAI(base_url=server.url + "/v1", api_key="sk-test-master-key", max_retries=0), recorder
    server.close()


def _usage(recorder, call_type):
    return next(u for t, u in reversed(recorder.outcomes) if t == call_type)


@pytest.mark.parametrize("model", ["gpt-4o-mini", "demo"])
def test_every_family_reports_its_usage(recorded, model):
    client, recorder = recorded
    client.embeddings.create(model=model, input="hello")
    assert _usage(recorder, "embeddings").prompt_tokens > 0

    client.images.generate(model=model, prompt="fox", n=2)
    assert _usage(recorder, "image_generations").details["images"] == 2

    client.images.edit(model=model, prompt="hat", image=("a.png", b"\x89PNG"), n=3)
    assert _usage(recorder, "image_edits").details["images"] == 3

    client.audio.speech.create(model=model, voice="alloy", input="Twelve chars").read()
    assert _usage(recorder, "audio_speech").details["characters"] == 12

    client.audio.transcriptions.create(model=model, file=("a.wav", b"RIFF" * 8000))
    assert _usage(recorder, "audio_transcriptions").details["audio_seconds"] > 0

    client.completions.create(model=model, prompt="Hi")
    assert _usage(recorder, "completions").completion_tokens > 0

    client.responses.create(model=model, input="Hi")
    assert _usage(recorder, "responses").prompt_tokens > 0

    client.post("/rerank", cast_to=object, body={"model": model, "query": "q", "documents": ["q a", "b"]})
    rerank = _usage(recorder, "rerank")
    # The vLLM-style upstream counts tokens; the mock bills one Cohere search unit.
    assert rerank.total_tokens == 30 if model != "demo" else rerank.details["search_units"] == 1
