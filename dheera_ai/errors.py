"""The error tree: every failure the gateway or the SDK reports is one of these.

Each class carries the HTTP status and the OpenAI error `type` it renders as, so one handler
turns any of them into `{"error": {"message", "type", "param", "code"}}`. Names follow the
OpenAI SDK's exceptions, so code written against `openai` reads the same against `dheera_ai`.
"""

from __future__ import annotations


class DheeraAIError(Exception):
    """Base of every error the gateway renders; subclasses set `status` and `error_type`."""

    status = 500
    error_type = "api_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 provider: str | None = None, headers: dict | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.provider = provider
        # Response headers the client must see, e.g. Retry-After on a 429.
        self.headers = dict(headers or {})
        if status is not None:
            self.status = status

    def to_dict(self) -> dict:
        return {"error": {"message": self.message, "type": self.error_type,
                          "param": self.param, "code": self.code}}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.message!r})"


class BadRequestError(DheeraAIError):
    status = 400
    error_type = "invalid_request_error"


class ContextWindowExceededError(BadRequestError):
    """The prompt does not fit the model; context-window fallbacks act on this."""


class ContentPolicyViolationError(BadRequestError):
    """The provider refused the content; content-policy fallbacks act on this."""


class UnsupportedParamsError(BadRequestError):
    """The provider cannot honour a parameter (see `drop_params`)."""


class BudgetExceededError(BadRequestError):
    """A key, user or team has spent its `max_budget` (for this `budget_duration`)."""

    error_type = "budget_exceeded"


class AuthenticationError(DheeraAIError):
    status = 401
    error_type = "authentication_error"


class PermissionDeniedError(DheeraAIError):
    status = 403
    error_type = "permission_error"


class NotFoundError(DheeraAIError):
    status = 404
    error_type = "not_found_error"


class Timeout(DheeraAIError):
    status = 408
    error_type = "timeout_error"


APITimeoutError = Timeout


class RequestTooLargeError(DheeraAIError):
    status = 413
    error_type = "invalid_request_error"


class UnprocessableEntityError(DheeraAIError):
    status = 422
    error_type = "invalid_request_error"


class RateLimitError(DheeraAIError):
    status = 429
    error_type = "rate_limit_error"


class InternalServerError(DheeraAIError):
    status = 500
    error_type = "api_error"


class APIConnectionError(DheeraAIError):
    """The upstream could not be reached (refused, reset, DNS)."""

    status = 502
    error_type = "api_connection_error"


class ServiceUnavailableError(DheeraAIError):
    status = 503
    error_type = "service_unavailable_error"


APIError = DheeraAIError

# An upstream's HTTP status decides which of our errors it becomes.
_BY_STATUS = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: Timeout,
    413: RequestTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def error_for_status(status: int, message: str, **kwargs) -> DheeraAIError:
    """The error an upstream answer with this status becomes; the status itself is kept."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = InternalServerError if status >= 500 else BadRequestError
    return cls(message, status=status, **kwargs)


# What a provider's own error vocabulary maps onto (translate/*: "context_window", "rate_limit", ...).
_BY_KIND = {
    "bad_request": BadRequestError,
    "authentication": AuthenticationError,
    "permission": PermissionDeniedError,
    "not_found": NotFoundError,
    "rate_limit": RateLimitError,
    "context_window": ContextWindowExceededError,
    "content_policy": ContentPolicyViolationError,
    "timeout": Timeout,
    "unavailable": ServiceUnavailableError,
    "server": InternalServerError,
}


def error_for_kind(kind: str, message: str, **kwargs) -> DheeraAIError:
    """The error for a provider-neutral kind ("rate_limit", "context_window", ...); its own status."""
    return _BY_KIND.get(kind, InternalServerError)(message, **kwargs)
