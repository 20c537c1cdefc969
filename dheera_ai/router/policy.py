"""What to do after a failed attempt: retry (how often, after how long), fall back, cool down."""

from __future__ import annotations

import random

from dheera_ai.errors import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    ContentPolicyViolationError,
    ContextWindowExceededError,
    DheeraAIError,
    InternalServerError,
    RateLimitError,
    ServiceUnavailableError,
    Timeout,
)
from dheera_ai.types import Deployment

# `retry_policy` keys (LiteLLM's names) and the errors each one counts for; the first match wins.
POLICY_KEYS = (
    (ContentPolicyViolationError, "ContentPolicyViolationErrorRetries"),
    (BadRequestError, "BadRequestErrorRetries"),
    (AuthenticationError, "AuthenticationErrorRetries"),
    (Timeout, "TimeoutErrorRetries"),
    (RateLimitError, "RateLimitErrorRetries"),
    ((InternalServerError, ServiceUnavailableError), "InternalServerErrorRetries"),
)
# Without a policy entry, only failures that may pass are retried (`num_retries` times).
TRANSIENT = (Timeout, RateLimitError, APIConnectionError, InternalServerError, ServiceUnavailableError)


def retries_for(settings: dict, error: DheeraAIError, deployment: Deployment | None) -> int:
    """How many retries an error of this kind gets within its model group."""
    policy = settings.get("retry_policy") or {}
    for classes, key in POLICY_KEYS:
        if isinstance(error, classes) and key in policy:
            return policy[key]
    if not isinstance(error, TRANSIENT):
        return 0
    own = deployment.params.get("max_retries") if deployment is not None else None
    return own if own is not None else settings.get("num_retries", 0)


def wait_before_retry(settings: dict, retry: int, error: DheeraAIError, same_deployment: bool) -> float:
    """Exponential backoff from `retry_after` (with jitter); an upstream's Retry-After is honoured
    when the retry goes back to the deployment that sent it. Never more than `max_retry_wait`."""
    wait = settings.get("retry_after", 0.5) * (2 ** retry) * random.uniform(0.5, 1.0)
    if same_deployment:
        wait = max(wait, retry_after_seconds(error))
    return min(wait, settings.get("max_retry_wait", 10.0))


def retry_after_seconds(error: DheeraAIError) -> float:
    value = error.headers.get("Retry-After") or error.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else 0.0
    except ValueError:  # an HTTP date: not worth parsing for a wait we cap at seconds anyway
        return 0.0


def fallbacks_for(settings: dict, group: str, error: DheeraAIError) -> list[str]:
    """The groups to try after `group` failed with `error`, in order."""
    if isinstance(error, ContextWindowExceededError):
        return _lookup(settings.get("context_window_fallbacks"), group)
    if isinstance(error, ContentPolicyViolationError):
        return _lookup(settings.get("content_policy_fallbacks"), group)
    if isinstance(error, BadRequestError):
        return []  # the request itself is wrong: another model would refuse it too
    return _lookup(settings.get("fallbacks"), group) or [
        g for g in settings.get("default_fallbacks") or () if g != group]


def _lookup(table, group) -> list[str]:
    table = table or {}
    return list(table.get(group) or table.get("*") or ())


def counts_against(error: DheeraAIError) -> bool:
    """Whether this failure says something about the deployment (not about the request)."""
    return not isinstance(error, BadRequestError) and (error.status in (401, 403, 404, 408, 429) or error.status >= 500)
