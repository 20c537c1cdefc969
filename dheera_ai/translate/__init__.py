"""Pure translations between wire formats (no I/O): one module per foreign API.

Contract for every module: a request that cannot be expressed in the target format raises a
`ValueError`; when the fault is one request field, it is a `TranslationError` whose `param` names
it. Providers turn these into a 400 `BadRequestError`. Request translations are wrapped in
`client_input`, so a shape the client got wrong (a content block that is not an object, a
missing `type`) is such a ValueError too, never a TypeError that would surface as a 500.
"""

import functools


class TranslationError(ValueError):
    """The request cannot be translated; `param` names the field at fault."""

    def __init__(self, param: str, message: str | None = None):
        super().__init__(message or f"parameter {param!r} is not supported by the target API")
        self.param = param


class UnsupportedParamError(TranslationError):
    """A parameter the target API cannot honour (dropped instead when `drop_params` is on)."""


def client_input(translate):
    """Decorate a translation of what a client sent: malformed shapes become a `TranslationError`."""
    @functools.wraps(translate)
    def checked(body, *args, **kwargs):
        try:
            return translate(body, *args, **kwargs)
        except (KeyError, TypeError, AttributeError, IndexError) as exc:
            what = f"missing field {exc}" if isinstance(exc, KeyError) else "a field has the wrong type"
            raise TranslationError(None, f"the request body is malformed ({what})") from None
    return checked
