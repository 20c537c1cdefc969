"""Dheera AI: an OpenAI-compatible LLM gateway, the engine behind it, and a Python SDK on that engine.

Importing this package is cheap and starts nothing: no sessions, no config, no Flask. The SDK's
functions (`dheera_ai.completion`, ...), result types and `hookimpl` are imported on first use
(module `__getattr__`), and the SDK builds its engine on its first call.
"""

from dheera_ai.errors import (
                              APIConnectionError,
                              APIError,
                              AuthenticationError,
                              BadRequestError,
                              ContentPolicyViolationError,
                              ContextWindowExceededError,
                              DheeraAIError,
                              InternalServerError,
                              NotFoundError,
                              PermissionDeniedError,
                              RateLimitError,
                              ServiceUnavailableError,
                              Timeout,
                              UnprocessableEntityError,
                              UnsupportedParamsError,
)

__version__ = "0.1.0"

# SDK settings, read at each call (see README, "SDK").
api_base: str | None = None  # a gateway's address, for dheera_ai_proxy/ models
api_key: str | None = None  # that gateway's key
use_dheera_ai_proxy: bool = False  # send every call, model string unchanged, to that gateway
drop_params: bool = False  # leave out parameters a provider is known to reject
callbacks: list = []  # ["otel"]: each call is a CLIENT span in the application's trace
# Plain callables `f(kwargs, completion_response, start_time, end_time)` run after each SDK call
# that succeeded / failed (LiteLLM's signature; see dheera_ai/sdk/callbacks.py).
success_callback: list = []
failure_callback: list = []

_SDK_FUNCTIONS = ("completion", "text_completion", "embedding", "image_generation", "image_edit", "transcription",
                  "translation", "speech", "rerank", "moderation", "responses", "get_responses", "delete_responses",
                  "list_input_items", "anthropic_messages", "create_file", "file_retrieve", "file_list",
                  "file_delete", "file_content", "create_batch", "retrieve_batch", "list_batches", "cancel_batch")
_SDK_TYPES = ("OpenAIObject", "ModelResponse", "ModelResponseStream", "TextCompletionResponse", "EmbeddingResponse",
              "ImageResponse", "TranscriptionResponse", "RerankResponse", "ModerationResponse", "ResponsesAPIResponse",
              "ResponsesAPIStreamEvent", "DeleteResponseResult", "ResponseInputItemsList",
              "AnthropicMessagesResponse", "AnthropicMessagesStreamEvent", "Stream", "AsyncStream", "BinaryResponse",
              "HttpxBinaryResponseContent", "FileObject", "FileDeleted", "FileList", "Batch", "BatchList")
_LAZY = {
    "hookimpl": "dheera_ai.plugin_manager",
    "completion_cost": "dheera_ai.sdk.api",
    "Router": "dheera_ai.sdk.router",
    "ConfigError": "dheera_ai.config",
    **{name: "dheera_ai.sdk.api" for name in _SDK_FUNCTIONS},
    **{"a" + name: "dheera_ai.sdk.api" for name in _SDK_FUNCTIONS},
    **{name: "dheera_ai.sdk.objects" for name in _SDK_TYPES},
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dheera_ai' has no attribute '{name}'")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "APIConnectionError", "APIError", "AuthenticationError", "BadRequestError", "ContentPolicyViolationError",
    "ContextWindowExceededError", "DheeraAIError", "InternalServerError", "NotFoundError",
    "PermissionDeniedError", "RateLimitError", "ServiceUnavailableError", "Timeout",
    "UnprocessableEntityError", "UnsupportedParamsError", "__version__", *_LAZY,
]
