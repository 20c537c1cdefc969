"""Secrets out of everything the gateway writes down: log lines, error texts, debug dumps.

Three rules, applied together: every secret value the gateway was configured with (a deployment's
`api_key`, the master key, a secret-named environment variable) is masked wherever it appears,
whatever it looks like (an Azure key is 32 hex digits, which no pattern can tell from an id); text
is scanned for things shaped like credentials (provider keys, Bearer tokens, `Authorization:` /
`api-key:` header lines); and in structured data anything under a key *named* like a secret is
masked. A masked key keeps a short prefix (`sk-abcd****`) so an operator can still tell which it was.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

MASK = "****"
# Shorter configured values are not masked by value: "test" or "1234" would mask ordinary words.
MIN_KNOWN_SECRET = 8

# Each alternative holds a literal that `_may_hold_credential` looks for first: a new one needs its
# literal there too, and a text of its own in tests/test_logs.py's quick-scan test.
_TEXT_PATTERNS = re.compile(
    r"(?P<keep>\bsk-ant-[A-Za-z0-9]{3,6}-?)[A-Za-z0-9_\-]{8,}"          # Anthropic: sk-ant-api03-...
    r"|(?P<keep2>\bsk-[A-Za-z0-9_\-]{4})[A-Za-z0-9_\-]{4,}"              # OpenAI-style and ours
    r"|(?P<keep3>\bAIza[0-9A-Za-z_\-]{4})[0-9A-Za-z_\-]{8,}"             # Google
    r"|(?P<keep4>\b[Bb]earer\s+)[^\s\"',;]+"                            # any Bearer token
    r"|(?P<keep5>\b(?:authorization|api[-_]key|x-goog-api-key|x-dheera-ai-api-key)[\"']?\s*[:=]\s*[\"']?(?:bearer\s+)?)"
    r"(?!\*)[^\s\"',;]+",                                                 # header-like text (Azure's hex keys)
    re.IGNORECASE,
)

# Words that make a field name a secret's: `api_key`, `x-api-key`, `client_secret`, `access_token`,
# `password`, `Authorization`, `credentials`... but not `max_tokens` or `key_alias`.
_SECRET_WORDS = frozenset({"password", "passwd", "secret", "token", "credential", "credentials", "authorization",
                           "auth", "cookie", "apikey", "signature", "private", "bearer"})
_WORD_SPLIT = re.compile(r"[_\-\s.]+|(?<=[a-z])(?=[A-Z])")


def is_secret_name(name) -> bool:
    """True for a field or header name that holds a credential."""
    if not isinstance(name, str):
        return False
    # The same few dozen names come on every call's log line and span; a client's long ones
    # (metadata keys) are not kept.
    return _is_secret_short(name) if len(name) <= 64 else _is_secret_str(name)


def _is_secret_str(name: str) -> bool:
    words = [w.lower() for w in _WORD_SPLIT.split(name) if w]
    if not words:
        return False
    return words[-1] == "key" or any(w in _SECRET_WORDS for w in words)


_is_secret_short = functools.lru_cache(maxsize=4096)(_is_secret_str)


# The configured secret values of every engine built in this process, longest first.
_known_secrets: set = set()
_known_pattern: re.Pattern | None = None


def remember_secrets(values) -> None:
    """Mask these exact values wherever `redact` sees them from now on."""
    global _known_pattern
    new = {v for v in values if isinstance(v, str) and len(v) >= MIN_KNOWN_SECRET} - _known_secrets
    if new:
        _known_secrets.update(new)
        ordered = sorted(_known_secrets, key=len, reverse=True)  # a key that contains another masks whole
        _known_pattern = re.compile("|".join(re.escape(v) for v in ordered))


def secret_values(*sources):
    """The values in `sources` (dicts and lists, at any depth) that are secrets: anything under a
    secret-named field, and the password of a URL (`database_url`, `redis_url`)."""
    for source in sources:
        yield from _secret_values(source, False)


def _secret_values(data, named: bool):
    if isinstance(data, Mapping):
        for key, value in data.items():
            yield from _secret_values(value, named or is_secret_name(key))
    elif isinstance(data, (list, tuple)):
        for value in data:
            yield from _secret_values(value, named)
    elif isinstance(data, str):
        if named:
            yield data
        if "://" in data:
            try:
                password = urlsplit(data).password
            except ValueError:
                password = None
            if password:
                yield password


def redact(text: str) -> str:
    """Mask anything in `text` that looks like a credential, keeping a short prefix to recognise it."""
    if not text:
        return text
    if _known_pattern is not None:
        text = _known_pattern.sub(_mask_match, text)
    return _TEXT_PATTERNS.sub(_keep_prefix, text) if _may_hold_credential(text) else text


def _may_hold_credential(text: str) -> bool:
    """Whether `text` holds one of the literals every `_TEXT_PATTERNS` match contains, case aside.
    Looking for them is ~30 times cheaper than the patterns (~100 ns a character under IGNORECASE,
    tried at each position), and most text (messages, ids, log fields) holds none. Only for ASCII
    text: IGNORECASE also folds some other letters (the Kelvin sign is a `k`), `str.lower` not."""
    if not text.isascii():
        return True
    lowered = text.lower()
    return ("sk-" in lowered or "aiza" in lowered or "bearer" in lowered or "authorization" in lowered
            or "api-key" in lowered or "api_key" in lowered)


def _mask_match(match: re.Match) -> str:
    """A known secret, masked as its pattern would (the same prefix), or as a secret field is."""
    value = match.group()
    shaped = _TEXT_PATTERNS.sub(_keep_prefix, value)
    return shaped if shaped != value else mask_value(value)


def _keep_prefix(match: re.Match) -> str:
    kept = next(v for k, v in match.groupdict().items() if v is not None)
    return kept + MASK


def mask_value(value) -> str | None:
    """A secret field's value as it may be shown: its first characters only."""
    if value is None or value == "":
        return value
    text = str(value)
    return (text[:6] if len(text) > 12 else "") + MASK


def redact_data(data, max_string: int | None = None):
    """A copy of `data` (dicts, lists, strings) with secret-named fields masked and credential-shaped
    text redacted at any depth; strings longer than `max_string` are cut."""
    if isinstance(data, Mapping):
        return {k: _mask_all(v) if is_secret_name(k) else redact_data(v, max_string) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [redact_data(v, max_string) for v in data]
    if isinstance(data, str):
        text = redact(data)
        if max_string is not None and len(text) > max_string:
            return text[:max_string] + f"...({len(text) - max_string} more)"
        return text
    if isinstance(data, (bytes, bytearray)):
        return f"<{len(data)} bytes>"
    return data


def _mask_all(value):
    """Everything under a secret-named field, whatever its shape."""
    if isinstance(value, Mapping):
        return {k: _mask_all(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask_all(v) for v in value]
    return mask_value(value)


def redact_headers(headers: Mapping) -> dict:
    """Request or response headers, credentials masked (`Authorization`, `api-key`, `x-api-key`, cookies)."""
    return redact_data(dict(headers))
