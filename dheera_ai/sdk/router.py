"""`dheera_ai.Router`: the gateway's router inside an application, as LiteLLM's `Router` is.

A Router is a config's `model_list` and `router_settings` given in code: validated by the same
schemas (a bad entry raises `ConfigError` naming its path), `os.environ/NAME` resolved, and run by
the same router and pipeline as the gateway (strategies, retries, `retry_policy`, fallbacks,
cooldowns, timeouts). Its methods are the SDK's functions with `model` naming a model group.
"""

from __future__ import annotations

import copy

from dheera_ai.sdk import api, objects


class Router:
    """Model groups with retries, fallbacks and cooldowns, in this process.

    `model_list` is a config file's: `[{"model_name": ..., "litellm_params" (or "dheera_ai_params"):
    {"model": "provider/name", "api_base": ..., "api_key": "os.environ/KEY", ...}, "model_info": {}}]`;
    the keywords are `router_settings`' keys (`routing_strategy`, `num_retries`, `fallbacks`, ...).
    """

    def __init__(self, model_list: list | None = None, **settings):
        from dheera_ai.sdk import client

        self._model_list = copy.deepcopy(model_list or [])
        router_settings = {k: v for k, v in settings.items() if v is not None}
        self._engine = client.routed_engine(self._model_list, router_settings)
        self.model_list = self.get_model_list()

    # -- what it serves ---------------------------------------------------------------------------
    def get_model_list(self, model_name: str | None = None) -> list[dict]:
        """The deployments as `model_list` entries (`os.environ/` values resolved), optionally of one group."""
        entries = []
        for deployment in self._engine.config.deployments:
            if model_name is not None and deployment.model_name != model_name:
                continue
            params = dict(deployment.params)
            entries.append({"model_name": deployment.model_name, "litellm_params": params,
                            "model_info": {"id": deployment.id, **deployment.model_info}})
        return entries

    def get_model_names(self) -> list[str]:
        return self._engine.router.model_names()

    @property
    def settings(self) -> dict:
        """The validated router settings (defaults filled in)."""
        return self._engine.router.settings

    # -- calls ------------------------------------------------------------------------------------
    def _run(self, call_type, model, params, result=objects.Result, chunk=None, files=()):
        from dheera_ai.sdk import client

        return client.run(call_type, model, params, result, chunk, files=files, routed=self._engine)

    def completion(self, model: str, messages: list | None = None, *, stream: bool | None = None, **params):
        return self._run("chat_completions", model, {**params, "messages": messages, "stream": stream or None},
                         objects.ModelResponse, objects.ModelResponseStream)

    def text_completion(self, model: str, prompt=None, *, stream: bool | None = None, **params):
        return self._run("completions", model, {**params, "prompt": prompt, "stream": stream or None},
                         objects.TextCompletionResponse, objects.TextCompletionResponse)

    def embedding(self, model: str, input=None, **params):  # noqa: A002 - the API's name for it
        return self._run("embeddings", model, {**params, "input": input}, objects.EmbeddingResponse)

    def image_generation(self, prompt: str, model: str, **params):
        return self._run("image_generations", model, {**params, "prompt": prompt}, objects.ImageResponse)

    def transcription(self, model: str, file, **params):
        return self._run("audio_transcriptions", model, params, objects.TranscriptionResponse,
                         files=[("file", file)])

    def translation(self, model: str, file, **params):
        return self._run("audio_translations", model, params, objects.TranscriptionResponse,
                         files=[("file", file)])

    def anthropic_messages(self, model: str, messages: list, max_tokens: int | None = None, *,
                           stream: bool | None = None, **params):
        body = {**params, "messages": messages, "max_tokens": max_tokens, "stream": stream or None}
        return self._run("anthropic_messages", model, body, objects.AnthropicMessagesResponse,
                         objects.AnthropicMessagesStreamEvent)

    def speech(self, model: str, input: str, voice="alloy", **params):  # noqa: A002
        return self._run("audio_speech", model, {**params, "input": input, "voice": voice})

    def rerank(self, model: str, query: str, documents: list, **params):
        return self._run("rerank", model, {**params, "query": query, "documents": documents}, objects.RerankResponse)

    def moderation(self, model: str, input=None, **params):  # noqa: A002
        return self._run("moderations", model, {**params, "input": input}, objects.ModerationResponse)

    def responses(self, model: str, input=None, *, stream: bool | None = None, **params):  # noqa: A002
        return self._run("responses", model, {**params, "input": input, "stream": stream or None},
                         objects.ResponsesAPIResponse, objects.ResponsesAPIStreamEvent)


def _async_method(name: str):
    async def method(self, *args, **kwargs):
        return await api.awaited(getattr(self, name), args, kwargs)

    method.__name__ = method.__qualname__ = "a" + name
    method.__doc__ = f"`{name}`, awaited on the caller's event loop; a stream is an async iterator."
    return method


METHODS = ("completion", "text_completion", "embedding", "image_generation", "transcription", "translation",
           "speech", "rerank", "moderation", "responses", "anthropic_messages")
for _name in METHODS:
    setattr(Router, "a" + _name, _async_method(_name))
