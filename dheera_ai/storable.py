"""What a client says about a call (metadata, tags) in a shape every store can keep.

A spend row must be storable the moment it is made: PostgreSQL's text cannot hold U+0000, and
the spool's JSON encoder stops at 254 levels of nesting, so one such value used to lose its row
(and leak its budget hold) or stop every later batch. A request carrying one is refused (400,
`problem`); whatever reaches a row by another way is made storable there (`storable`,
`storable_json`).
"""

from __future__ import annotations

import orjson

NUL = "\x00"
REPLACEMENT = "\ufffd"  # what a NUL becomes in a stored value: visible, and storable everywhere
MAX_DEPTH = 32  # levels of objects/arrays a client's metadata may have
MAX_BYTES = 64 * 1024  # a client's metadata, as JSON
_CUT = "[nested too deep]"


def problem(value, what: str) -> str | None:
    """Why `value` (a request's metadata or tags) cannot be stored as it is; None when it can."""
    stack = [(value, 1)]
    while stack:  # not recursive: a 1,000-level value must not exhaust Python's stack
        item, depth = stack.pop()
        if isinstance(item, str):
            if NUL in item:
                return f"'{what}' contains a NUL character (\\u0000), which cannot be stored."
        elif isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                return f"'{what}' is nested more than {MAX_DEPTH} levels deep."
            if isinstance(item, dict):
                stack += [(key, depth) for key in item]
                stack += [(v, depth + 1) for v in item.values()]
            else:
                stack += [(v, depth + 1) for v in item]
    return None


def storable(value, levels: int = 2 * MAX_DEPTH):
    """`value` with every NUL replaced and nesting past `levels` cut off, so any store (and the
    spool's encoder) takes it."""
    if isinstance(value, str):
        return value.replace(NUL, REPLACEMENT) if NUL in value else value
    if isinstance(value, dict):
        if levels <= 0:
            return _CUT
        return {storable(str(k)): storable(v, levels - 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if levels <= 0:
            return _CUT
        return [storable(v, levels - 1) for v in value]
    return value


def storable_json(value) -> bytes:
    """`value` as JSON every store takes. Encoded once as it is, which almost every row is; only
    when that fails (nested past the encoder's limit) or shows a NUL is it made `storable` first.
    Raises TypeError (orjson's JSONEncodeError) for a value JSON cannot say."""
    try:
        line = orjson.dumps(value)
    except orjson.JSONEncodeError:
        return orjson.dumps(storable(value))
    # orjson writes a NUL as the escape \u0000 (a false alarm on a literal "\\u0000" only costs
    # the slow path).
    return orjson.dumps(storable(value)) if b"\\u0000" in line else line
