"""Secrets out of everything the gateway writes down: log lines, error texts, debug dumps.

Two rules, applied together: text is scanned for things shaped like credentials (provider keys,
Bearer tokens, `Authorization:` / `api-key:` header lines), and in structured data anything under
a key *named* like a secret is masked whatever it looks like. A masked key keeps a short prefix
(`sk-abcd****`) so an operator can still tell which key it was.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

MASK = "****"

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
    words = [w.lower() for w in _WORD_SPLIT.split(name) if w]
    if not words:
        return False
    return words[-1] == "key" or any(w in _SECRET_WORDS for w in words)


def redact(text: str) -> str:
    """Mask anything in `text` that looks like a credential, keeping a short prefix to recognise it."""
    if not text:
        return text
    return _TEXT_PATTERNS.sub(_keep_prefix, text)


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
