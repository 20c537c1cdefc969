"""Pure translations between wire formats (no I/O): one module per foreign API.

Contract for every module: a request that cannot be expressed in the target format raises a
`ValueError`; when the fault is one request field, it is a `TranslationError` whose `param` names
it. Providers turn these into a 400 `BadRequestError`.
"""


class TranslationError(ValueError):
    """The request cannot be translated; `param` names the field at fault."""

    def __init__(self, param: str, message: str | None = None):
        super().__init__(message or f"parameter {param!r} is not supported by the target API")
        self.param = param


class UnsupportedParamError(TranslationError):
    """A parameter the target API cannot honour (dropped instead when `drop_params` is on)."""
