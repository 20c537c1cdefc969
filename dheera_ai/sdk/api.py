"""The SDK's functions: one per endpoint family, and an `a`-prefixed async twin of each.

Every function takes `model="<provider>/<model>"` (or `dheera_ai_proxy/<model>` for a gateway)
and the OpenAI API's parameters for its family as keyword arguments (None means "not given"),
plus these options:

- `api_base`, `api_key`, `api_version` (Azure), `timeout` (seconds): where and how to call;
  without them, the provider's environment variables (`OPENAI_API_KEY`, `AZURE_API_BASE`, ...);
- `stream=True` (chat, text completions, Responses): an iterator of chunks;
- `extra_body`: merged into the request body as it is (e.g. `{"tags": [...]}` for a gateway);
- `metadata`, `tags`: what the call is about; a gateway (`dheera_ai_proxy/`) receives them;
- `use_dheera_ai_proxy=True`: send this call, model string unchanged, to the gateway at
  `api_base` / `dheera_ai.api_base` / `DHEERA_AI_PROXY_API_BASE`;
- `custom_llm_provider`: the provider, when `model` does not start with it;
- `drop_params=True`: leave out parameters the provider is known to reject, instead of failing;
- `mock_response` (with `mock/<name>` models): the answer, or an error class to raise.

The Files and Batch API functions (`create_file` ... `cancel_batch`) take no model: they go to
`custom_llm_provider` ("openai", "azure" or a "dheera_ai_proxy" gateway), see `dheera_ai.sdk.files`.

The async twins run the same call on the caller's event loop (`dheera_ai.sdk.aio`): the same
pipeline and providers, their HTTP sent with an async client (httpx, one pool per loop), no
thread per call; streams are async iterators, and cancelling the task closes the upstream connection.
"""

from __future__ import annotations

import functools

from dheera_ai.sdk import objects


def _run(*args, **kwargs):
    from dheera_ai.sdk import client  # the engine's modules load on the first call, not with `import dheera_ai`

    return client.run(*args, **kwargs)


def _follow_up(*args):
    from dheera_ai.sdk import client

    return client.follow_up(*args)


def completion(model: str, messages: list | None = None, *, stream: bool | None = None, **params):
    """A chat completion: a `ModelResponse`, or with `stream=True` a `Stream` of `ModelResponseStream` chunks."""
    return _run("chat_completions", model, {**params, "messages": messages, "stream": stream or None},
                      objects.ModelResponse, objects.ModelResponseStream)


def text_completion(*, model: str, prompt, stream: bool | None = None, **params):
    """A legacy text completion: a `TextCompletionResponse` (or a `Stream` of them)."""
    return _run("completions", model, {**params, "prompt": prompt, "stream": stream or None},
                      objects.TextCompletionResponse, objects.TextCompletionResponse)


def embedding(model: str, input=None, **params):  # noqa: A002 - the API's name for it
    """Embeddings of a string or a list of strings (or token arrays): an `EmbeddingResponse`."""
    return _run("embeddings", model, {**params, "input": input}, objects.EmbeddingResponse)


def image_generation(*, model: str, prompt: str, **params):
    """Images from a prompt: an `ImageResponse` (`data[i].b64_json` or `.url`)."""
    return _run("image_generations", model, {**params, "prompt": prompt}, objects.ImageResponse)


def image_edit(*, model: str, image, prompt: str, mask=None, **params):
    """An edited image: `image` is one file or a list of them (file objects, bytes, paths or
    `(filename, content)` tuples), `mask` optional. An `ImageResponse`."""
    images = image if isinstance(image, list) else [image]
    field = "image" if len(images) == 1 else "image[]"
    files = [(field, f) for f in images] + ([("mask", mask)] if mask is not None else [])
    return _run("image_edits", model, {**params, "prompt": prompt}, objects.ImageResponse, files=files)


def transcription(*, model: str, file, **params):
    """Speech to text: a `TranscriptionResponse`, or the text itself for `response_format` text, srt or vtt."""
    return _run("audio_transcriptions", model, params, objects.TranscriptionResponse, files=[("file", file)])


def translation(*, model: str, file, **params):
    """Speech in any language to English text (`/v1/audio/translations`): a `TranscriptionResponse`,
    or the text itself for `response_format` text, srt or vtt."""
    return _run("audio_translations", model, params, objects.TranscriptionResponse, files=[("file", file)])


def speech(*, model: str, input: str, voice="alloy", **params):  # noqa: A002
    """Text to speech: a `BinaryResponse` (`.content`, `.read()`, `.stream_to_file(path)`). `voice`
    defaults to `alloy`, the first of OpenAI's voices, since the API requires one."""
    return _run("audio_speech", model, {**params, "input": input, "voice": voice})


def rerank(*, model: str, query: str, documents: list, **params):
    """Documents ordered by relevance to `query` (Cohere's shape): a `RerankResponse`."""
    return _run("rerank", model, {**params, "query": query, "documents": documents}, objects.RerankResponse)


def moderation(input=None, model: str = "omni-moderation-latest", **params):  # noqa: A002
    """Whether text breaks a content policy: a `ModerationResponse`. The model defaults to OpenAI's current one."""
    return _run("moderations", model, {**params, "input": input}, objects.ModerationResponse)


def responses(*, model: str, input=None, stream: bool | None = None, **params):  # noqa: A002
    """A Responses API response: a `ResponsesAPIResponse`, or a `Stream` of `ResponsesAPIStreamEvent`s.
    Its id (and `previous_response_id`) lead back to the deployment that made it."""
    body = {**params, "input": input, "stream": stream or None}
    pin = "previous_response_id" if params.get("previous_response_id") else None
    return _run("responses", model, body, objects.ResponsesAPIResponse, objects.ResponsesAPIStreamEvent,
                      pin_response_id=pin)


def anthropic_messages(model: str, messages: list, max_tokens: int | None = None, *, stream: bool | None = None,
                       **params):
    """A call in Anthropic's Messages API shape (`/v1/messages`): an `AnthropicMessagesResponse`, or a
    `Stream` of `AnthropicMessagesStreamEvent`s. Anthropic models get it as it is; any other model
    is served through its chat completions and answers in Anthropic's shape, as the gateway does."""
    body = {**params, "messages": messages, "max_tokens": max_tokens, "stream": stream or None}
    return _run("anthropic_messages", model, body, objects.AnthropicMessagesResponse,
                objects.AnthropicMessagesStreamEvent)


def list_input_items(response_id: str, **params):
    """The input items of a stored response (found as `get_responses` finds it): a `ResponseInputItemsList`."""
    return _follow_up("responses_input_items", response_id, params, objects.ResponseInputItemsList)


def get_responses(response_id: str, **params):
    """A stored response, from where it was made: a response this process created needs nothing
    else; otherwise say where with `model=` (or `custom_llm_provider=`) and api_base/api_key."""
    return _follow_up("responses_get", response_id, params, objects.ResponsesAPIResponse)


def delete_responses(response_id: str, **params):
    """Delete a stored response (found as `get_responses` finds it): a `DeleteResponseResult`."""
    return _follow_up("responses_delete", response_id, params, objects.DeleteResponseResult)


def _files():
    from dheera_ai.sdk import files  # loads the engine's modules on the first call, as `_run` does

    return files


# The Files and Batch APIs (LiteLLM's names): resources at OpenAI, Azure or a gateway, not model calls;
# `custom_llm_provider` ("openai", "azure", "dheera_ai_proxy") and api_base/api_key say where.
def create_file(file, purpose: str = "batch", custom_llm_provider: str = "openai", **params):
    """Upload a file (a path, bytes, an open file or a `(filename, content)` tuple), streamed from where it
    lies: a `FileObject`. Other fields (`expires_after={"anchor": ..., "seconds": ...}`) go in the form."""
    return _files().create_file(file, purpose, {**params, "custom_llm_provider": custom_llm_provider})


def file_retrieve(file_id: str, custom_llm_provider: str = "openai", **params):
    """A file's metadata: a `FileObject`."""
    return _files().file_retrieve(file_id, {**params, "custom_llm_provider": custom_llm_provider})


def file_list(purpose: str | None = None, custom_llm_provider: str = "openai", **params):
    """Files (`after`, `limit`, `order` as the API takes them): a `FileList` (`data`, `has_more`)."""
    return _files().file_list({**params, "purpose": purpose, "custom_llm_provider": custom_llm_provider})


def file_delete(file_id: str, custom_llm_provider: str = "openai", **params):
    """Delete a file: a `FileDeleted` (`id`, `deleted`)."""
    return _files().file_delete(file_id, {**params, "custom_llm_provider": custom_llm_provider})


def file_content(file_id: str, custom_llm_provider: str = "openai", **params):
    """A file's bytes: a `BinaryResponse` (`.content`, `.text`, `.read()`, `.iter_bytes()`, `.write_to_file(path)`),
    read from the upstream as it is consumed."""
    return _files().file_content(file_id, {**params, "custom_llm_provider": custom_llm_provider})


def create_batch(input_file_id: str | None = None, endpoint: str | None = None, completion_window: str = "24h",
                 metadata: dict | None = None, custom_llm_provider: str = "openai", **params):
    """Start a batch over an uploaded `batch` file of request lines: a `Batch` (`status` "validating")."""
    return _files().create_batch({**params, "input_file_id": input_file_id, "endpoint": endpoint,
                                  "completion_window": completion_window, "metadata": metadata,
                                  "custom_llm_provider": custom_llm_provider})


def retrieve_batch(batch_id: str, custom_llm_provider: str = "openai", **params):
    """A batch as it stands now: a `Batch`."""
    return _files().retrieve_batch(batch_id, {**params, "custom_llm_provider": custom_llm_provider})


def list_batches(after: str | None = None, limit: int | None = None, custom_llm_provider: str = "openai", **params):
    """Batches, newest first: a `BatchList` (`data`, `has_more`)."""
    return _files().list_batches({**params, "after": after, "limit": limit,
                                  "custom_llm_provider": custom_llm_provider})


def cancel_batch(batch_id: str, custom_llm_provider: str = "openai", **params):
    """Cancel a validating or in-progress batch: a `Batch` ("cancelling"); a finished one is a `BadRequestError`."""
    return _files().cancel_batch(batch_id, {**params, "custom_llm_provider": custom_llm_provider})


def completion_cost(completion_response=None, **_ignored) -> float:
    """What a result cost in US dollars (LiteLLM's name for `response.response_cost`)."""
    return float(getattr(completion_response, "_hidden_params", {}).get("response_cost") or 0.0)


def _read_whole(function, args, kwargs):
    result = function(*args, **kwargs)
    if isinstance(result, objects.BinaryResponse):
        result.read()  # audio is read while the call is awaited, so `.content` needs no loop later
    return result


async def awaited(function, args, kwargs):
    """`function(*args, **kwargs)` run on this event loop; a stream as an `AsyncStream`."""
    from dheera_ai.sdk import aio

    result = await aio.run(_read_whole, function, args, kwargs)
    return objects.AsyncStream(result) if isinstance(result, objects.Stream) else result


def _async_twin(function):
    @functools.wraps(function)
    async def twin(*args, **kwargs):
        return await awaited(function, args, kwargs)

    twin.__name__ = twin.__qualname__ = "a" + function.__name__
    twin.__doc__ = f"`{function.__name__}`, awaited on the caller's event loop; a stream is an async iterator."
    return twin


FILE_FUNCTIONS = ("create_file", "file_retrieve", "file_list", "file_delete", "file_content", "create_batch",
                  "retrieve_batch", "list_batches", "cancel_batch")
FUNCTIONS = ("completion", "text_completion", "embedding", "image_generation", "image_edit", "transcription",
             "translation", "speech", "rerank", "moderation", "responses", "get_responses", "delete_responses",
             "list_input_items", "anthropic_messages", *FILE_FUNCTIONS)
# acompletion, atext_completion, aembedding, ... adelete_responses
for _name in FUNCTIONS:
    globals()["a" + _name] = _async_twin(globals()[_name])
ASYNC_FUNCTIONS = tuple("a" + name for name in FUNCTIONS)
