"""The error tree: every failure the gateway or the SDK reports is one of these.

Each class carries the HTTP status and the OpenAI error `type` it renders as, so one handler
turns any of them into `{"error": {"message", "type", "param", "code"}}`. Names follow the
OpenAI SDK's exceptions, so code written against `openai` reads the same against `dheera_ai`.
"""

from __future__ import annotations

from dheera_ai.redact import redact


class DheeraAIError(Exception):
    """Base of every error the gateway renders; subclasses set `status` and `error_type`."""

    status = 500
    error_type = "api_error"
    # The `code` rendered when none is given: how a class that shares its status and type with
    # another (a context-window error is a 400 invalid_request_error) is told apart on the wire.
    default_code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 provider: str | None = None, headers: dict | None = None, status: int | None = None):
        # Every error text passes here, whoever raised it and wherever it goes (a client's answer,
        # a stream's error event, a log line): an upstream that echoes a key does not leak it.
        message = redact(message) if isinstance(message, str) else message
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.provider = provider
        # Response headers the client must see, e.g. Retry-After on a 429.
        self.headers = dict(headers or {})
        if status is not None:
            self.status = status

    @property
    def status_code(self) -> int:
        """The HTTP status, under the name the openai SDK's exceptions use."""
        return self.status

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

    default_code = "context_length_exceeded"  # OpenAI's code for it


class ContentPolicyViolationError(BadRequestError):
    """The provider refused the content; content-policy fallbacks act on this."""

    default_code = "content_policy_violation"


class UnsupportedParamsError(BadRequestError):
    """The provider cannot honour a parameter (see `drop_params`)."""


class BudgetExceededError(BadRequestError):
    """A key, user or team has spent its `max_budget` (for this `budget_duration`)."""

    error_type = "budget_exceeded"


class GuardrailViolationError(BadRequestError):
    """A guardrail refused the call: its name and what it found (entity types, never the text)."""

    default_code = "guardrail_violated"

    def __init__(self, message: str, *, guardrail: str | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.guardrail = guardrail

    def to_dict(self) -> dict:
        answer = super().to_dict()
        answer["error"]["guardrail"] = self.guardrail
        return answer


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
    "connection": APIConnectionError,
    "unavailable": ServiceUnavailableError,
    "server": InternalServerError,
}


def error_for_kind(kind: str, message: str, **kwargs) -> DheeraAIError:
    """The error for a provider-neutral kind ("rate_limit", "context_window", ...); its own status."""
    return _BY_KIND.get(kind, InternalServerError)(message, **kwargs)



# What an OpenAI-shaped error answer's code and type say beyond its status.
_BY_CODE = {"context_length_exceeded": ContextWindowExceededError,
            "content_policy_violation": ContentPolicyViolationError, "content_filter": ContentPolicyViolationError}
_BY_TYPE = {"invalid_request_error": BadRequestError, "authentication_error": AuthenticationError,
            "permission_error": PermissionDeniedError, "not_found_error": NotFoundError, "timeout_error": Timeout,
            "rate_limit_error": RateLimitError, "api_connection_error": APIConnectionError,
            "service_unavailable_error": ServiceUnavailableError, "api_error": InternalServerError}


def error_from_answer(error: dict, status: int | None = None, **kwargs) -> DheeraAIError:
    """The error a gateway's `{"error": {...}}` answer stands for: the class the gateway raised,
    read back from its code, type and status (None for an error event inside a stream), so an
    error keeps its type across a hop (SDK -> gateway -> gateway)."""
    code = error.get("code") if isinstance(error.get("code"), str) else None
    error_type = error.get("type")
    message = str(error.get("message") or "the gateway returned an error")
    param = error.get("param") if isinstance(error.get("param"), str) else None
    cls = _BY_CODE.get(code)
    # A 502 is an unreachable upstream only when the type says so; otherwise the status decides.
    if cls is None and (status is None or error_type == "api_connection_error"):
        cls = _BY_TYPE.get(error_type, InternalServerError)
    if cls is None:
        return error_for_status(status, message, code=code, param=param, **kwargs)
    return cls(message, code=code, param=param, status=status, **kwargs)
