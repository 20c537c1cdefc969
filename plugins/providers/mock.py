"""A built-in model that answers without any upstream: deterministic, streams too.

The answer is `mock_response` from the request body, else from the deployment's params, else a
fixed sentence. A `mock_response` naming an error class (`dheera_ai.RateLimitError`) raises it,
so retries and fallbacks can be tried without a provider.
"""

from __future__ import annotations

import base64
import math
import time
import uuid

from dheera_ai import errors, hookimpl
from dheera_ai.errors import BadRequestError
from dheera_ai.providers import Provider
from dheera_ai.sse import DONE, event
from dheera_ai.translate.cohere import rerank_response_from_cohere
from dheera_ai.types import Call, Deployment, Reply, Usage
from plugins.providers import mock_media as media

DEFAULT_ANSWER = ("Hello! This is the Dheera AI mock model. Your request reached the gateway and was answered "
                  "without calling any provider.")


def count_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: about four characters a token."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


def _prompt_text(messages) -> str:
    parts = []
    for message in messages or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [p.get("text", "") for p in content if isinstance(p, dict)]
    return " ".join(parts)


class MockProvider(Provider):
    name = "mock"
    key_params = ()

    def _answer(self, call: Call, deployment: Deployment) -> str:
        answer = call.gateway_params.get("mock_response") or deployment.param("mock_response") or DEFAULT_ANSWER
        answer = str(answer)
        if answer.startswith("dheera_ai."):
            error_class = getattr(errors, answer.split(".", 1)[1], None)
            if isinstance(error_class, type) and issubclass(error_class, errors.DheeraAIError):
                raise error_class(f"mock: {error_class.__name__} raised on request", provider=self.name)
        return answer

    def chat_completions(self, call: Call, deployment: Deployment) -> Reply:
        answer = self._answer(call, deployment)
        prompt_tokens = count_tokens(_prompt_text(call.body.get("messages")))
        completion_tokens = count_tokens(answer)
        usage = Usage(prompt_tokens, completion_tokens, prompt_tokens + completion_tokens)
        ident = "chatcmpl-mock-" + uuid.uuid4().hex[:24]
        created = int(time.time())
        if not call.stream:
            return Reply(usage=usage, data={
                "id": ident, "object": "chat.completion", "created": created, "model": deployment.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer, "refusal": None},
                             "logprobs": None, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                          "total_tokens": usage.total_tokens},
            })
        include_usage = bool((call.body.get("stream_options") or {}).get("include_usage"))
        reply = Reply(content_type="text/event-stream", usage=usage)
        reply.stream = _stream(ident, created, deployment.model, answer, usage if include_usage else None)
        return reply

    def completions(self, call: Call, deployment: Deployment) -> Reply:
        answer = self._answer(call, deployment)
        prompt = call.body.get("prompt")
        prompt_tokens = count_tokens(prompt if isinstance(prompt, str) else " ".join(map(str, prompt or [])))
        usage = Usage(prompt_tokens, count_tokens(answer), prompt_tokens + count_tokens(answer))
        base = {"id": "cmpl-mock-" + uuid.uuid4().hex[:24], "object": "text_completion",
                "created": int(time.time()), "model": deployment.model}

        def completion(text, finish):
            return dict(base, choices=[{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}])
        if not call.stream:
            return Reply(usage=usage, data=dict(completion(answer, "stop"), usage=_usage_dict(usage)))

        def chunks():
            words = answer.split(" ")
            for i, word in enumerate(words):
                yield event(completion(word if i == len(words) - 1 else word + " ", None))
            yield event(completion("", "stop"))
            if (call.body.get("stream_options") or {}).get("include_usage"):
                yield event(dict(base, choices=[], usage=_usage_dict(usage)))
            yield DONE
        return Reply(content_type="text/event-stream", usage=usage, stream=chunks())

    def embeddings(self, call: Call, deployment: Deployment) -> Reply:
        self._answer(call, deployment)  # a mock_response naming an error raises it here too
        inputs = media.embedding_inputs(call.body.get("input"))
        dimensions = int(call.body.get("dimensions") or deployment.param("dimensions") or media.DEFAULT_DIMENSIONS)
        data = [{"object": "embedding", "index": i,
                 "embedding": media.encoded(media.embedding(item, dimensions), call.body.get("encoding_format"))}
                for i, item in enumerate(inputs)]
        tokens = sum(len(item) if isinstance(item, list) else count_tokens(item) for item in inputs)
        usage = Usage(tokens, 0, tokens)
        return Reply(usage=usage, data={"object": "list", "data": data, "model": deployment.model,
                                        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def image_generations(self, call: Call, deployment: Deployment) -> Reply:
        self._answer(call, deployment)
        count = int(call.body.get("n") or 1)
        prompt = str(call.body.get("prompt") or "")
        images = []
        for i in range(count):
            encoded = base64.b64encode(media.png(f"{prompt}:{i}")).decode()
            url_wanted = call.body.get("response_format") == "url"
            images.append({"url": "data:image/png;base64," + encoded} if url_wanted
                          else {"b64_json": encoded, "revised_prompt": prompt})
        return Reply(usage=Usage(details={"images": count}), data={"created": int(time.time()), "data": images})

    def image_edits(self, call: Call, deployment: Deployment) -> Reply:
        if not any(f.field in ("image", "image[]") for f in call.files):
            raise BadRequestError("images/edits needs at least one 'image' file.", param="image")
        return self.image_generations(call, deployment)

    def audio_speech(self, call: Call, deployment: Deployment) -> Reply:
        self._answer(call, deployment)
        text = str(call.body.get("input") or "")
        audio = media.wav(len(text))
        if call.body.get("response_format") == "pcm":
            audio, content_type = audio[44:], "audio/pcm"
        else:
            content_type = "audio/wav"
        half = len(audio) // 2
        # Sent in pieces, as a real upstream's audio arrives.
        return Reply(content_type=content_type, usage=Usage(details={"characters": len(text)}),
                     stream=iter([audio[:half], audio[half:]]))

    def audio_transcriptions(self, call: Call, deployment: Deployment) -> Reply:
        return self._transcribe(call, deployment, "transcribe")

    def audio_translations(self, call: Call, deployment: Deployment) -> Reply:
        return self._transcribe(call, deployment, "translate")

    def _transcribe(self, call: Call, deployment: Deployment, task: str) -> Reply:
        upload = next((f for f in call.files if f.field == "file"), None)
        if upload is None:
            raise BadRequestError("An audio 'file' is required.", param="file")
        answer = call.gateway_params.get("mock_response") or deployment.param("mock_response")
        text = str(answer or f"Mock transcription of {upload.filename} ({upload.size} bytes).")
        seconds = media.audio_seconds(upload.size)
        body, content_type = media.transcript(text, seconds, call.body.get("response_format"), task)
        return Reply(body=body, content_type=content_type, usage=Usage(details={"audio_seconds": seconds}))

    def moderations(self, call: Call, deployment: Deployment) -> Reply:
        self._answer(call, deployment)
        input_ = call.body.get("input")
        texts = [input_] if isinstance(input_, str) else [
            item if isinstance(item, str) else item.get("text", "") for item in input_ or []
            if isinstance(item, (str, dict))]
        return Reply(data={"id": "modr-mock-" + uuid.uuid4().hex[:24], "model": deployment.model,
                           "results": [media.moderation(t) for t in texts]})

    def rerank(self, call: Call, deployment: Deployment) -> Reply:
        self._answer(call, deployment)
        query = call.body["query"]
        documents = call.body["documents"]
        scored = [{"index": i, "relevance_score": media.relevance(query, d)} for i, d in enumerate(documents)]
        answer = {"id": str(uuid.uuid4()), "results": scored,
                  "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}}}
        return Reply(usage=Usage(details={"search_units": 1}), data=rerank_response_from_cohere(answer, call.body))


def _usage_dict(usage: Usage) -> dict:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


def _stream(ident, created, model, answer, usage):
    def chunk(delta, finish=None):
        return event({"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                      "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})

    yield chunk({"role": "assistant", "content": ""})
    words = answer.split(" ")
    for i, word in enumerate(words):
        yield chunk({"content": word if i == len(words) - 1 else word + " "})
    yield chunk({}, "stop")
    if usage is not None:
        yield event({"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                     "choices": [], "usage": {"prompt_tokens": usage.prompt_tokens,
                                              "completion_tokens": usage.completion_tokens,
                                              "total_tokens": usage.total_tokens}})
    yield DONE


@hookimpl
def dheera_ai_register_providers(register):
    register("mock", MockProvider())
