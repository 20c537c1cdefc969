"""The small dataclasses that hooks and providers pass around.

A hook never sees `flask.request`: the HTTP layer turns a request into a `Call`, and everything
after that (plugins, router, providers) works on these objects only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

# Request fields that belong to the gateway, not to the model: they are taken out of the body
# before it goes upstream and kept on `Call.gateway_params` for the plugins to interpret.
GATEWAY_FIELDS = frozenset({
    "metadata", "tags", "user_config", "mock_response", "cache",
    "api_key", "api_base", "base_url", "api_version", "guardrails",
})


@dataclass
class Usage:
    """Token counts as the upstream reported them (OpenAI names)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    # Anything else the upstream said (cached tokens, reasoning tokens, ...), kept as given.
    details: dict = field(default_factory=dict)
    # What the answer says about itself, read where its usage is read (no second parse): the model
    # it names (priced when the deployment's own name has no price, as an Azure deployment
    # without base_model; LiteLLM does the same) and its `id` (LiteLLM's spend-log request_id).
    model: str | None = None
    response_id: str | None = None

    @classmethod
    def from_openai(cls, usage: dict | None, model=None, response_id=None) -> "Usage | None":
        if not isinstance(usage, dict):
            return None
        prompt = _count(usage.get("prompt_tokens") or usage.get("input_tokens"))
        completion = _count(usage.get("completion_tokens") or usage.get("output_tokens"))
        total = _count(usage.get("total_tokens")) or prompt + completion
        details = {k: v for k, v in usage.items()
                   if k not in ("prompt_tokens", "completion_tokens", "total_tokens")}
        return cls(prompt, completion, total, details, model if isinstance(model, str) else None,
                   response_id if isinstance(response_id, str) else None)


def _count(value) -> int:
    """A token count an upstream reported; never negative (that would refund spend and tokens):
    anything but a non-negative number counts as 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
        return 0
    return int(value)


@dataclass(frozen=True)
class Deployment:
    """One entry of `model_list`: a model group name and how to reach one upstream for it."""

    id: str
    model_name: str
    provider: str
    model: str
    # Everything under `dheera_ai_params` (api_key, api_base, timeout, provider extras), resolved.
    params: dict
    model_info: dict = field(default_factory=dict)
    # Params whose `os.environ/NAME` was unset at load: name -> variable, reported at call time.
    unresolved: dict = field(default_factory=dict)
    # Built from what a client sent (user_config, or a client api_base): such a deployment never
    # gets a server-side secret (no environment fallbacks) and its address is checked before use.
    from_client: bool = False
    # For such a deployment: the hosts/networks it may reach although not public (netguard.parse_allowed).
    allowed_hosts: tuple = ()

    def param(self, name: str, default: Any = None) -> Any:
        value = self.params.get(name)
        return default if value is None else value


@dataclass
class Credentials:
    """What a caller presented: the key from whichever header carried it."""

    api_key: str | None
    header: str | None
    headers: dict
    path: str


@dataclass
class Principal:
    """Who is calling, as decided by the authenticate hook."""

    kind: str  # "master", "virtual_key", "anonymous", or a plugin's own
    key_hash: str | None = None
    key_alias: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    # Model names or groups this caller may use; None means every model.
    models: frozenset | None = None
    metadata: dict = field(default_factory=dict)
    # The key's team's metadata (a team's `guardrails` apply to all its keys).
    team_metadata: dict = field(default_factory=dict)
    tags: tuple = ()
    # The key's user's role ("proxy_admin" may manage keys, users and teams).
    user_role: str | None = None
    # What bounds this caller's use: max_budget, budget_duration, rpm_limit, tpm_limit,
    # max_parallel_requests (a virtual key's, already bounded by its team's); absent = unbounded.
    limits: dict = field(default_factory=dict)
    # Each owner's own limits, counted separately: {"key": {...}, "user": {...}, "team": {...}}
    # (a team's rpm_limit bounds all its keys together; `limits` bounds the one key).
    scoped_limits: dict = field(default_factory=dict)

    @classmethod
    def acting_for(cls, caller: "Principal | None", kind: str) -> "Principal":
        """The gateway making a call of its own for `caller` (a guardrail's check, the cache's
        embedding): billed as the caller's key, user and team, with none of its limits."""
        return cls(kind=kind, key_hash=getattr(caller, "key_hash", None),
                   key_alias=getattr(caller, "key_alias", None), user_id=getattr(caller, "user_id", None),
                   team_id=getattr(caller, "team_id", None))

    @property
    def owner(self) -> str:
        """Who owns what this caller makes (stored responses, files, batches): the key's user, so
        all their keys share it, else the key; the master key's are its own."""
        if self.user_id:
            return f"user:{self.user_id}"
        if self.key_hash:
            return f"key:{self.key_hash}"
        return self.kind


@dataclass
class Upload:
    """One file of a multipart request (`image`, `mask`, `file`); `stream` is seekable, so a retry can send it again."""

    field: str
    filename: str
    content_type: str
    stream: Any  # a binary file object, positioned at the start
    size: int


@dataclass
class CacheOutcome:
    """What the response cache did for a call (`Call.cache`; None when it was not consulted)."""

    # "hit" (answered from the cache), "miss" (went upstream), "partial" (embeddings: some inputs
    # came from the cache, the rest went upstream).
    result: str
    key: str
    # What the cache answered, priced by spend logging as what the call saved.
    saved_usage: Usage | None = None
    saved_cost: float | None = None
    # A semantic cache's hit: how alike the prompts were (cosine similarity of their embeddings).
    similarity: float | None = None


@dataclass
class Call:
    """One API call as it moves through the pipeline."""

    call_id: str
    call_type: str  # "chat_completions", "embeddings", ...
    model: str
    body: dict  # what goes upstream: the request less the gateway's own fields
    # The id the client sent in `x-dheera-ai-call-id` (validated), for tracing; `call_id` is ours.
    client_call_id: str | None = None
    stream: bool = False
    headers: dict = field(default_factory=dict)  # request headers, lower-cased names
    gateway_params: dict = field(default_factory=dict)
    principal: Principal | None = None
    metadata: dict = field(default_factory=dict)
    tags: list = field(default_factory=list)
    deployment: Deployment | None = None
    started: float = field(default_factory=time.perf_counter)
    start_time: float = field(default_factory=time.time)
    # Time spent waiting on the upstream, so overhead = elapsed - upstream_seconds.
    upstream_seconds: float = 0.0
    usage: Usage | None = None
    # What the call cost in USD, once the spend plugin has priced it; None while unknown or unpriced.
    cost: float | None = None
    # Files of a multipart request; `body` then holds its text fields.
    files: list[Upload] = field(default_factory=list)
    # Set for a follow-up that must reach one deployment (a stored response's GET, DELETE, ...).
    deployment_id: str | None = None
    # Seals the response ids this call hands out to its caller (`response_ids.owner_secret`).
    response_secret: bytes = b""
    # `time.monotonic()` by which the current attempt must have its answer (the `timeout`); None: no bound.
    deadline: float | None = None
    # Attempts beyond the first within a model group, and fallback groups tried (response headers).
    attempted_retries: int = 0
    attempted_fallbacks: int = 0
    # Headers plugins add to the answer (rate-limit state, the call's cost), errors included.
    response_headers: dict = field(default_factory=dict)
    # The SSE chunks relayed to the client so far: a stream cut short without a usage chunk is
    # billed for what it delivered.
    delivered: list = field(default_factory=list)
    # What each guardrail did ({"guardrail", "phase", "result", "items", "entities"}), for the
    # spend row and the log line; the guardrails plugin's own state for this call.
    guardrails: list = field(default_factory=list)
    guardrail_state: Any = None
    # Set by the response cache plugin when it was consulted.
    cache: CacheOutcome | None = None
    # Headers every upstream request of the current attempt carries (a tracing plugin's
    # `traceparent`), set by `dheera_ai_attempt_started`; None: none.
    upstream_headers: dict | None = None
    # What exporters keep about this call while it runs (its spans); None when none is on.
    telemetry: Any = None
    # What this call pays of the list price: a batch line's is `1 - batch_discount`.
    price_factor: float = 1.0


@dataclass
class Reply:
    """A provider's answer, in the wire format of the route that was called.

    Exactly one of `body` (bytes to send as they are), `data` (an object to serialize) or
    `stream` (an iterator of bytes: SSE events, or binary such as speech audio) is set.
    """

    status: int = 200
    body: bytes | None = None
    data: Any = None
    stream: Iterator[bytes] | None = None
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)
    usage: Usage | None = None
    # How an error after the stream has started is written into it (the wire format's error
    # event); None means OpenAI's `data: {"error": ...}`.
    error_event: Callable[[Exception], bytes] | None = None
    # False when a plugin answered without calling the deployment (a cache hit): the router then
    # counts neither its time as the deployment's latency nor its tokens toward the deployment's tpm.
    from_deployment: bool = True


@dataclass
class Outcome:
    """How a call ended, for the post-call hooks."""

    status: int
    latency_seconds: float
    usage: Usage | None = None
    error: Exception | None = None
    # The client went away before the stream ended.
    stream_cut: bool = False
    # The answer (a `Reply`; for a stream, the chunks are in `Call.delivered`), for plugins that
    # record what was said; None for a failure.
    reply: Any = None
