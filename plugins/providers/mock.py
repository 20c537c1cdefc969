"""A built-in model that answers without any upstream: deterministic, streams too.

The answer is `mock_response` from the request body, else from the deployment's params, else a
fixed sentence. A `mock_response` naming an error class (`dheera_ai.RateLimitError`) raises it,
so retries and fallbacks can be tried without a provider.
"""

from __future__ import annotations

import math
import time
import uuid

from dheera_ai import errors, hookimpl
from dheera_ai.providers import Provider
from dheera_ai.sse import DONE, event
from dheera_ai.types import Call, Deployment, Reply, Usage

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
