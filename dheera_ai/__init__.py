"""Dheera AI: an OpenAI-compatible LLM gateway and the engine behind it.

Importing this package is cheap and starts nothing: no sessions, no config, no Flask.
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
)
from dheera_ai.plugin_manager import hookimpl

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError", "APIError", "AuthenticationError", "BadRequestError", "ContentPolicyViolationError",
    "ContextWindowExceededError", "DheeraAIError", "InternalServerError", "NotFoundError",
    "PermissionDeniedError", "RateLimitError", "ServiceUnavailableError", "Timeout",
    "UnprocessableEntityError", "hookimpl", "__version__",
]
