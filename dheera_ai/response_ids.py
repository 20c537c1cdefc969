"""Response ids that remember their deployment and their owner, so a follow-up finds its way back
and only its owner's follow-up does.

A response id the gateway hands out is `resp_` + base64url of the deployment id (length-prefixed,
since a configured id may contain any character), a seal, and the upstream's own id: a GET,
DELETE, input_items or `previous_response_id` is routed to the deployment that created the
response, on any worker or instance, with no shared state. The seal is an HMAC of the rest under
the owner's secret (`owner_secret`: derived from the gateway's master key and the caller's
identity, never shown), so an id only decodes for the caller it was made for: another key gets a
404 as for an id that never existed, and an id cannot be forged or re-sealed. The client sees an
opaque id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

PREFIX = "resp_"
_MARK = "dh2:"  # versions the encoding, and tells ours from an id made elsewhere
_SEAL_CHARS = 22  # base64url of 16 bytes, unpadded


def owner_secret(server_secret: str | None, owner: str) -> bytes:
    """The key that seals the response ids of `owner` (a user, a key); without a server secret
    (no master key, so every caller is the same) ids are still sealed, by the owner alone."""
    return hmac.new((server_secret or "").encode(), owner.encode(), hashlib.sha256).digest()


def _seal(secret: bytes, deployment_id: str, upstream_id: str) -> str:
    digest = hmac.new(secret, f"{len(deployment_id)}:{deployment_id}{upstream_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")


def encode(deployment_id: str, upstream_id: str, secret: bytes = b"") -> str:
    seal = _seal(secret, deployment_id, upstream_id)
    raw = f"{_MARK}{len(deployment_id)}:{deployment_id}{seal}{upstream_id}".encode()
    return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(response_id: str, secret: bytes = b"") -> tuple[str, str] | None:
    """(deployment id, upstream id) of an id `encode` made with `secret`; None for any other string,
    an id sealed for someone else included."""
    parts = _parts(response_id)
    if parts is None:
        return None
    deployment_id, seal, upstream_id = parts
    if not hmac.compare_digest(seal, _seal(secret, deployment_id, upstream_id)):
        return None
    return deployment_id, upstream_id


def is_ours(response_id) -> bool:
    """True for an id of the gateway's shape, whoever it was sealed for."""
    return _parts(response_id) is not None


def _parts(response_id) -> tuple[str, str, str] | None:
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
    if not sep or not (length.isascii() and length.isdigit()) or not 0 < int(length) < len(rest) - _SEAL_CHARS:
        return None
    end = int(length)
    return rest[:end], rest[end:end + _SEAL_CHARS], rest[end + _SEAL_CHARS:]
