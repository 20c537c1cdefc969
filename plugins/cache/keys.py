"""Cache keys: a SHA-256 over what decides the answer, and nothing else.

Every body field counts except those known not to change the answer (a new OpenAI parameter
therefore splits the cache rather than returning the answer to a different question). Gateway
fields (`metadata`, `tags`, `cache`, ...) never reach the body, so they never count either.
"""

from __future__ import annotations

import hashlib

import orjson

# Fields that shape how an answer is delivered, who asked, or how hard to try, not what it says.
NOT_IN_KEY = frozenset({
    "model", "stream", "stream_options", "user", "store", "safety_identifier", "prompt_cache_key",
    "prompt_cache_retention", "timeout", "request_timeout", "num_retries", "fallbacks",
    "context_window_fallbacks", "caching", "drop_params",
})


def scope_of(deployment, key_scope: str) -> str:
    """What shares answers: the model group (default) or one deployment."""
    return f"deployment:{deployment.id}" if key_scope == "deployment" else f"group:{deployment.model_name}"


def cache_key(namespaces: tuple, scope: str, call_type: str, body: dict, leave_out=frozenset()) -> str:
    """The hex digest naming one answer; `leave_out` drops more fields (embeddings key each input)."""
    fields = {k: v for k, v in body.items() if k not in NOT_IN_KEY and k not in leave_out}
    return digest(namespaces, scope, call_type, fields)


def digest(*parts) -> str:
    # Sorted keys and no whitespace: the same request always gives the same bytes.
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()
