"""What the SDK's functions return: the OpenAI API's JSON as objects, streams, and audio bytes.

Every result is the JSON the API answered, readable both ways: `r.choices[0].message.content`
and `r["choices"][0]["message"]["content"]`. A field the answer left out reads as None (as the
openai SDK's optional fields do: a stream's last `delta.content`). Each result also carries what
the call cost, `r.response_cost` (US dollars from the price table; 0.0 when unpriced), and
`r._hidden_params` as LiteLLM users read it: `response_cost`, `model_id`, `custom_llm_provider`,
`api_base`, `call_id`.
"""

from __future__ import annotations

import json


def _wrap(value):
    if isinstance(value, dict) and not isinstance(value, OpenAIObject):
        return OpenAIObject(value)
    if isinstance(value, list):
        return [_wrap(item) for item in value]
    return value


class OpenAIObject(dict):
    """A JSON object of the API, with attribute access to its fields."""

    def __init__(self, data=None, **fields):
        super().__init__()
        for key, value in {**(data or {}), **fields}.items():
            self[key] = _wrap(value)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return self.get(name)

    def __setattr__(self, name, value):
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self[name] = _wrap(value)

    def __delattr__(self, name):
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({json.dumps(self, default=str)})"

    __str__ = __repr__

    def model_dump(self) -> dict:
        """A plain dict copy (the openai SDK's name for it)."""
        return json.loads(json.dumps(self))

    def model_dump_json(self) -> str:
        return json.dumps(self)


class Result(OpenAIObject):
    """A whole answer: the JSON plus what the call cost and where it went."""

    def __init__(self, data=None, hidden_params: dict | None = None):
        super().__init__(data)
        self._hidden_params = dict(hidden_params or {})

    @property
    def response_cost(self) -> float:
        return float(self._hidden_params.get("response_cost") or 0.0)


class ModelResponse(Result):
    """A chat completion (`choices`, `usage`, ...)."""


class ModelResponseStream(OpenAIObject):
    """One chunk of a streamed chat completion."""


class TextCompletionResponse(Result):
    """A legacy text completion; also each chunk of a streamed one."""


class EmbeddingResponse(Result):
    pass


class ImageResponse(Result):
    pass


class TranscriptionResponse(Result):
    pass


class RerankResponse(Result):
    pass


class ModerationResponse(Result):
    pass


class ResponsesAPIResponse(Result):
    """A Responses API response object; `output_text` joins its text output, as the openai SDK's does."""

    @property
    def output_text(self) -> str:
        return "".join(part.get("text") or "" for item in self.get("output") or [] if item.get("type") == "message"
                       for part in item.get("content") or [] if part.get("type") == "output_text")


class DeleteResponseResult(Result):
    pass


class ResponseInputItemsList(Result):
    """The input items of a stored response (`data`, `has_more`, `first_id`, `last_id`)."""


class FileObject(Result):
    """A file of the Files API (`id`, `bytes`, `filename`, `purpose`, `status`, `created_at`, ...)."""


class FileDeleted(Result):
    """What deleting a file answers: `id`, `deleted`."""


class Batch(Result):
    """A batch of the Batch API (`id`, `status`, `input_file_id`, `output_file_id`, `request_counts`, ...)."""


class _Page(Result):
    """A list page (`data`, `has_more`, `first_id`, `last_id`), its items of the page's item type."""

    item = Result

    def __init__(self, data=None, hidden_params: dict | None = None):
        super().__init__(data, hidden_params)
        self["data"] = [self.item(entry, hidden_params) for entry in self.get("data") or []]


class FileList(_Page):
    item = FileObject


class BatchList(_Page):
    item = Batch


class AnthropicMessagesResponse(Result):
    """An Anthropic Messages API message (`content`, `stop_reason`, `usage`), as the API wrote it."""


class AnthropicMessagesStreamEvent(OpenAIObject):
    """One event of a streamed `/v1/messages` call (`event.type`: `message_start`, `content_block_delta`, ...)."""


class ResponsesAPIStreamEvent(OpenAIObject):
    """One event of a streamed Responses API call (`event.type`: `response.output_text.delta`, ...)."""


class Stream:
    """A streamed answer: iterate it for the chunks. Once it has ended, `usage` and
    `response_cost` (and `_hidden_params`) say what the whole call used and cost."""

    def __init__(self, chunks, hidden_params: dict, on_end):
        self._chunks = chunks
        self._hidden_params = hidden_params
        self._on_end = on_end  # called once with this stream when the chunks run out
        self.usage = None

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return next(self._chunks)
        except StopIteration:
            if self._on_end is not None:
                on_end, self._on_end = self._on_end, None
                on_end(self)
            raise

    @property
    def response_cost(self) -> float:
        return float(self._hidden_params.get("response_cost") or 0.0)

    def close(self) -> None:
        """Stop early: the upstream connection is closed."""
        self._chunks.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_END = object()


class AsyncStream:
    """The async functions' stream: `async for` its chunks; each is read on the caller's event
    loop (`dheera_ai.sdk.aio`). `aclose()` (or leaving `async with`) closes the upstream connection,
    as cancelling the task that reads it does."""

    def __init__(self, stream: Stream):
        self._stream = stream

    def __aiter__(self):
        return self

    async def __anext__(self):
        from dheera_ai.sdk import aio

        chunk = await aio.run(next, self._stream, _END)
        if chunk is _END:
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        from dheera_ai.sdk import aio

        await aio.run(self._stream.close)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()

    @property
    def _hidden_params(self) -> dict:
        return self._stream._hidden_params

    @property
    def response_cost(self) -> float:
        return self._stream.response_cost

    @property
    def usage(self):
        return self._stream.usage


class BinaryResponse:
    """Audio (or any binary answer), read from the upstream as it arrives: `content`/`read()`
    hold it whole; `iter_bytes()` and `stream_to_file()` take it piece by piece."""

    def __init__(self, chunks, content_type: str, hidden_params: dict):
        self._chunks = iter(chunks)
        self._content: bytes | None = None
        self.content_type = content_type
        self._hidden_params = hidden_params

    @property
    def content(self) -> bytes:
        return self.read()

    @property
    def text(self) -> str:
        return self.read().decode("utf-8", "replace")

    def json(self):
        return json.loads(self.read())

    def read(self) -> bytes:
        if self._content is None:
            self._content = b"".join(self._chunks)
        return self._content

    def iter_bytes(self, chunk_size: int | None = None):
        """The bytes as they arrive (after `read()`, from memory); `chunk_size` is accepted for
        the openai SDK's signature and does not regroup them."""
        if self._content is not None:
            yield self._content
            return
        parts = []
        for piece in self._chunks:
            parts.append(piece)
            yield piece
        self._content = b"".join(parts)

    def write_to_file(self, file) -> None:
        with open(file, "wb") as f:
            for piece in self.iter_bytes():
                f.write(piece)

    stream_to_file = write_to_file

    @property
    def response_cost(self) -> float:
        return float(self._hidden_params.get("response_cost") or 0.0)


HttpxBinaryResponseContent = BinaryResponse  # the name LiteLLM and the openai SDK give it
