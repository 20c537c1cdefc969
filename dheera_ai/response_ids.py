"""Response ids that remember their deployment, so a follow-up finds its way back.

A response id the gateway hands out is `resp_` + base64url of the deployment id (length-prefixed,
since a configured id may contain any character) and the upstream's own id: a
GET, DELETE, input_items or `previous_response_id` is routed to the deployment that created the
response, on any worker or instance, with no shared state. The client sees an opaque id.
"""

from __future__ import annotations

import base64
import binascii

PREFIX = "resp_"
_MARK = "dh1:"  # versions the encoding, and tells ours from an id made elsewhere


def encode(deployment_id: str, upstream_id: str) -> str:
    raw = f"{_MARK}{len(deployment_id)}:{deployment_id}{upstream_id}".encode()
    return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(response_id: str) -> tuple[str, str] | None:
    """(deployment id, upstream id) of an id `encode` made; None for any other string."""
    if not isinstance(response_id, str) or not response_id.startswith(PREFIX):
        return None
    payload = response_id[len(PREFIX):]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    except (binascii.Error, ValueError):
        return None
    if not raw.startswith(_MARK):
        return None
    length, sep, rest = raw[len(_MARK):].partition(":")
    if not sep or not (length.isascii() and length.isdigit()) or not 0 < int(length) < len(rest):
        return None
    return rest[:int(length)], rest[int(length):]
