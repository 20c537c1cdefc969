"""Pass-through routes: a caller's native request forwarded to a provider's (or any operator-named
service's) own API byte for byte, with the server's credentials in place of the caller's.

What is decided here: where a route's requests go (never chosen by a client header), which
request and response headers cross (hop-by-hop ones and the caller's credentials never do), how
the server's credentials are put on (api key header or query, SigV4 through botocore, a Google
token through google-auth), and the usage a native answer reports. The blueprint
(`proxy_app.blueprints.passthrough`) builds the call; the pass_through provider sends it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import orjson

from dheera_ai.types import Usage

# RFC 9110 7.6.1, and the ones a proxy must set itself.
HOP_BY_HOP = frozenset(("connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
                        "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length"))
# Where a caller puts its gateway key (all SDKs): never sent on.
CALLER_CREDENTIALS = frozenset(("authorization", "x-api-key", "x-goog-api-key", "api-key", "cookie",
                                "x-amz-security-token", "x-amz-date", "x-amz-content-sha256"))
# Response headers requests has already acted on (it decodes gzip; the WSGI server frames the body).
RESPONSE_SKIP = HOP_BY_HOP | {"content-encoding", "set-cookie"}


@dataclass(frozen=True)
class NativeAPI:
    """One provider's pass-through route: its default address, key and how the key is sent."""

    name: str
    default_base: str
    key_env: str
    base_env: str
    auth: str  # "x-api-key", "bearer", "goog", "sigv4", "google_token"


NATIVE_APIS = {api.name: api for api in (
    NativeAPI("anthropic", "https://api.anthropic.com", "ANTHROPIC_API_KEY", "ANTHROPIC_API_BASE", "x-api-key"),
    NativeAPI("gemini", "https://generativelanguage.googleapis.com", "GEMINI_API_KEY", "GEMINI_API_BASE", "goog"),
    NativeAPI("cohere", "https://api.cohere.com", "COHERE_API_KEY", "COHERE_API_BASE", "bearer"),
    NativeAPI("mistral", "https://api.mistral.ai", "MISTRAL_API_KEY", "MISTRAL_API_BASE", "bearer"),
    NativeAPI("vertex_ai", "", "", "", "google_token"),
    NativeAPI("bedrock", "", "", "", "sigv4"),
)}


@dataclass
class Forward:
    """One request to send upstream, credentials not yet on it (the provider puts them on last)."""

    method: str
    url: str
    # Never in a repr (a log line, a traceback's locals): the operator's headers and the params hold secrets.
    headers: dict = field(repr=False)
    data: bytes = field(repr=False)
    auth: str  # as NativeAPI.auth, or "none" for a pass_through_endpoints entry
    params: dict = field(default_factory=dict, repr=False)  # the deployment's params the credentials come from
    route: str = ""


def provider_params(config, provider: str) -> dict:
    """The credentials of `provider`'s pass-through route, as LiteLLM picks them: the model_list
    deployment of that provider marked `use_in_pass_through: true`, else its first deployment
    (api_key, api_base, aws_*, vertex_*); {} when there is none (the environment then serves)."""
    mine = [d for d in config.deployments if d.provider == provider and not d.model.endswith("*")]
    marked = [d for d in mine if d.params.get("use_in_pass_through")]
    chosen = (marked or mine or [None])[0]
    return dict(chosen.params) if chosen is not None else {}


def native_base(api: NativeAPI, params: dict) -> str:
    if params.get("api_base"):
        return str(params["api_base"]).rstrip("/")
    if api.name == "bedrock":
        from dheera_ai import aws
        return params.get("aws_bedrock_runtime_endpoint") or f"https://bedrock-runtime.{aws.region(params)}.amazonaws.com"
    if api.name == "vertex_ai":
        location = params.get("vertex_location") or os.environ.get("VERTEXAI_LOCATION") or "us-central1"
        host = "aiplatform.googleapis.com" if location == "global" else f"{location}-aiplatform.googleapis.com"
        return f"https://{host}"
    return (os.environ.get(api.base_env) or api.default_base).rstrip("/")


def api_key(api: NativeAPI, params: dict) -> str | None:
    return params.get("api_key") or (os.environ.get(api.key_env) if api.key_env else None)


def forwarded_headers(headers, keep_all: bool = True) -> dict:
    """The client's headers that may go upstream: never hop-by-hop, credentials or ours."""
    out = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in CALLER_CREDENTIALS or lower.startswith("x-dheera-ai-"):
            continue
        if keep_all or lower in ("content-type", "accept"):
            out[name] = value
    return out


def relayed_headers(headers) -> dict:
    return {k: v for k, v in headers.items() if k.lower() not in RESPONSE_SKIP}


def check_target(url: str) -> str | None:
    """What is wrong with a pass_through_endpoints target, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host"
    if parts.query or parts.fragment:
        return "must not carry a query or fragment"
    return None


# -- usage in native answers ------------------------------------------------------------------------

def usage_of(body: dict) -> Usage | None:
    """Usage from a whole native answer: Anthropic messages, Gemini usageMetadata, Bedrock Converse."""
    if not isinstance(body, dict):
        return None
    model = body.get("model") or body.get("modelVersion")
    found = body.get("usage")
    if isinstance(found, dict) and ("input_tokens" in found or "output_tokens" in found):  # Anthropic
        prompt = _int(found.get("input_tokens")) + _int(found.get("cache_read_input_tokens")) + \
            _int(found.get("cache_creation_input_tokens"))
        return _usage(prompt, _int(found.get("output_tokens")), model)
    if isinstance(found, dict) and "inputTokens" in found:  # Bedrock Converse
        return _usage(_int(found.get("inputTokens")), _int(found.get("outputTokens")), model)
    meta = body.get("usageMetadata")
    if isinstance(meta, dict):  # Gemini, Vertex
        return _usage(_int(meta.get("promptTokenCount")),
                      _int(meta.get("candidatesTokenCount")) + _int(meta.get("thoughtsTokenCount")), model)
    return None


class StreamUsage:
    """Usage read from an SSE stream as it is relayed (Anthropic message_start/message_delta,
    Gemini's usageMetadata per chunk); the bytes themselves pass unchanged."""

    MAX_LINE = 1 << 20

    def __init__(self):
        self._pending = b""
        self.prompt = self.completion = 0
        self.model = None
        self.seen = False

    def feed(self, chunk: bytes) -> None:
        data = self._pending + chunk
        lines = data.split(b"\n")
        self._pending = lines.pop()
        if len(self._pending) > self.MAX_LINE:
            self._pending = b""  # a line this long carries no usage worth the memory
        for line in lines:
            if line.startswith(b"data:"):
                self._event(line[5:].strip())

    def _event(self, payload: bytes) -> None:
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if not isinstance(event, dict):
            return
        message = event.get("message") if event.get("type") == "message_start" else None
        if isinstance(message, dict):
            found = usage_of(message)
            if found:
                self.seen, self.prompt, self.model = True, found.prompt_tokens, message.get("model")
                self.completion = found.completion_tokens
            return
        if event.get("type") == "message_delta" and isinstance(event.get("usage"), dict):
            self.seen = True
            self.completion = _int(event["usage"].get("output_tokens"))
            return
        found = usage_of(event)  # Gemini: each chunk carries the running totals
        if found:
            self.seen, self.prompt, self.completion = True, found.prompt_tokens, found.completion_tokens
            self.model = found.model or self.model

    def usage(self) -> Usage | None:
        return _usage(self.prompt, self.completion, self.model) if self.seen else None


def _usage(prompt: int, completion: int, model) -> Usage:
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                 model=model if isinstance(model, str) else None)


def _int(value) -> int:
    return value if isinstance(value, int) and value >= 0 else 0
