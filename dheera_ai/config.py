"""The gateway's config: YAML read once at start-up, validated with marshmallow.

LiteLLM files load unchanged (`litellm_params`, `litellm_settings`). A value `os.environ/NAME`
is read from the environment here and nowhere else: never from anything a client sends.
Every problem is reported with the path of the key it is about, e.g.
`model_list[2].dheera_ai_params.model: unknown provider 'opnai'`.
"""

from __future__ import annotations

import datetime
import difflib
import hashlib
import logging
import os
import re
from dataclasses import dataclass, field

import yaml
from marshmallow import INCLUDE, Schema, ValidationError, fields, post_load, pre_load, validate, validates_schema

from dheera_ai import config_keys
from dheera_ai.providers import UNBUILT_PROVIDERS
from dheera_ai.types import Deployment

log = logging.getLogger("dheera_ai.config")

ENV_PREFIX = "os.environ/"
# LiteLLM's prefixes for a provider we serve under another name.
PROVIDER_ALIASES = {"text-completion-openai": "openai"}
# Bare model names (no `provider/`) that LiteLLM files use and whose provider is unambiguous.
INFERRED_PROVIDERS = (
    (("gpt-", "o1", "o3", "o4", "chatgpt-", "text-embedding-", "dall-e", "whisper-", "tts-",
      "davinci", "babbage", "omni-moderation", "text-moderation", "gpt-image-"), "openai"),
    (("claude-",), "anthropic"),
    (("command", "rerank-", "embed-english", "embed-multilingual"), "cohere"),
    (("gemini-",), "gemini"),
)


class ConfigError(Exception):
    """The config cannot be used; `problems` are `path: what is wrong` lines."""

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = problems
        where = f"{source}: " if source else ""
        super().__init__(f"{where}invalid config:\n  " + "\n  ".join(problems))


class VersionString(fields.String):
    """A string that YAML may have read as a date or a number (`api_version: 2024-02-01`)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, (datetime.date, int, float)) and not isinstance(value, bool):
            value = value.isoformat() if isinstance(value, datetime.date) else str(value)
        return super()._deserialize(value, attr, data, **kwargs)


class Number(fields.Float):
    """A number in any YAML spelling: `1e-06` (which a YAML 1.1 loader reads as a string),
    `1.0e-6`, `"0.000001"`, `5`. Anything else, booleans included, is `not a number: 'abc'`."""

    def __init__(self, **kwargs):
        super().__init__(allow_nan=False, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValidationError(f"not a number: {value!r}")
        try:
            number = float(value.strip() if isinstance(value, str) else value)
        except ValueError:
            raise ValidationError(f"not a number: {value!r}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValidationError(f"not a finite number: {value!r}")
        return number


class Whole(fields.Integer):
    """An integer, also when written `"10"` or `1e3`; `2.5` or `abc` are `not a whole number`."""

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            number = Number()._deserialize(value, attr, data)
        except ValidationError:
            number = None
        if number is None or number != int(number):
            raise ValidationError(f"not a whole number: {value!r}")
        return int(number)


_positive = validate.Range(min=0, min_inclusive=False)
_non_negative = validate.Range(min=0)
REDIS_URL = re.compile(r"^(redis|rediss|unix)://")
POSTGRES_URL = re.compile(r"^postgres(ql)?://")


def _existing_file(path: str) -> None:
    if not os.path.isfile(path):
        raise ValidationError(f"no such file: {path} (relative paths start from {os.getcwd()})")


# Per-unit prices: model_info (or, as LiteLLM also allows, the deployment's params) may set any.
PRICE_KEYS = ("input_cost_per_token", "output_cost_per_token", "cache_read_input_token_cost",
              "cache_creation_input_token_cost", "input_cost_per_character", "output_cost_per_character",
              "input_cost_per_second", "output_cost_per_second", "input_cost_per_query",
              "input_cost_per_token_batches", "output_cost_per_token_batches", "input_cost_per_audio_token",
              "output_cost_per_audio_token", "output_cost_per_reasoning_token")


def _price_fields() -> dict:
    return {name: Number(allow_none=True, validate=_non_negative) for name in PRICE_KEYS}


class _CostKeysAreNumbers:
    """Any other `*cost*` key is a price too: a number, or (image prices) a mapping of numbers."""

    @post_load
    def _other_costs_as_floats(self, data, **kwargs):
        price = Number(validate=_non_negative)
        for key, value in list(data.items()):
            if "cost" in str(key) and key not in self.fields and value is not None:
                try:
                    data[key] = ({k: price.deserialize(v) for k, v in value.items()} if isinstance(value, dict)
                                 else price.deserialize(value))
                except ValidationError as e:
                    raise ValidationError(e.messages, str(key)) from None
        return data


class ModelInfoSchema(_CostKeysAreNumbers, Schema):
    """`model_info`: prices and limits typed (they are summed and compared); other keys pass."""

    class Meta:
        unknown = INCLUDE

    locals().update(_price_fields())
    id = VersionString(allow_none=True, validate=validate.Length(min=1))
    base_model = fields.String(allow_none=True)
    mode = fields.String(allow_none=True)
    access_groups = fields.List(fields.String(), allow_none=True)
    max_tokens = Whole(allow_none=True, validate=_non_negative)
    max_input_tokens = Whole(allow_none=True, validate=_non_negative)
    max_output_tokens = Whole(allow_none=True, validate=_non_negative)
    health_check_timeout = Number(allow_none=True, validate=_positive)
    output_cost_per_image = fields.Raw(allow_none=True)


class DeploymentParamsSchema(_CostKeysAreNumbers, Schema):
    """`dheera_ai_params`; unknown keys are provider-specific and pass through."""

    class Meta:
        unknown = INCLUDE

    model = fields.String(required=True, validate=validate.Length(min=1))
    api_key = VersionString(allow_none=True)
    api_base = fields.String(allow_none=True)
    api_version = VersionString(allow_none=True)
    timeout = Number(allow_none=True, validate=_positive)
    stream_timeout = Number(allow_none=True, validate=_positive)
    max_retries = Whole(allow_none=True, validate=_non_negative)
    rpm = Whole(allow_none=True, validate=_non_negative)
    tpm = Whole(allow_none=True, validate=_non_negative)
    weight = Number(allow_none=True, validate=_non_negative)
    tags = fields.List(fields.String(), allow_none=True)
    locals().update(_price_fields())
    configurable_clientside_auth_params = fields.List(fields.Raw(), allow_none=True)

    @validates_schema
    def _clientside_params(self, data, **kwargs):
        for index, item in enumerate(data.get("configurable_clientside_auth_params") or []):
            problem = clientside_param_problem(item)
            if problem:
                raise ValidationError({index: [problem]}, "configurable_clientside_auth_params")


CLIENTSIDE_PARAMS = ("api_key", "api_base", "base_url", "api_version")


def clientside_param_problem(item) -> str | None:
    """What is wrong with one `configurable_clientside_auth_params` entry: a name, or
    `{api_base: <regex>}` naming the bases a client may send."""
    import re

    if isinstance(item, str):
        return None if item in CLIENTSIDE_PARAMS else f"must be one of {', '.join(CLIENTSIDE_PARAMS)}"
    if isinstance(item, dict) and len(item) == 1 and next(iter(item)) in ("api_base", "base_url"):
        pattern = next(iter(item.values()))
        try:
            re.compile(str(pattern))
        except re.error as e:
            return f"not a valid regular expression: {e}"
        return None
    return "must be a parameter name or {api_base: <regular expression>}"


class DeploymentSchema(Schema):
    class Meta:
        unknown = INCLUDE

    model_name = VersionString(required=True, validate=validate.Length(min=1))
    dheera_ai_params = fields.Nested(DeploymentParamsSchema)
    litellm_params = fields.Nested(DeploymentParamsSchema)
    model_info = fields.Nested(ModelInfoSchema, load_default=dict)
    rpm = Whole(validate=_non_negative)
    tpm = Whole(validate=_non_negative)

    @validates_schema
    def _prices(self, data, **kwargs):
        from dheera_ai.cost import PRICE_FIELDS, price_problem

        info = data.get("model_info") or {}
        for name in PRICE_FIELDS:
            problem = price_problem(name, info[name]) if name in info else None
            if problem:
                raise ValidationError({name: [problem]}, "model_info")

    @validates_schema
    def _one_params_block(self, data, **kwargs):
        given = [k for k in ("dheera_ai_params", "litellm_params") if k in data]
        if not given:
            raise ValidationError("required (or its LiteLLM name, litellm_params)", "dheera_ai_params")
        if len(given) == 2:
            raise ValidationError("give dheera_ai_params or litellm_params, not both", "litellm_params")


def _pass_through_target(url: str) -> None:
    from dheera_ai.passthrough import check_target

    problem = check_target(url)
    if problem:
        raise ValidationError(f"{url!r} {problem}")


class PassThroughEndpointSchema(Schema):
    """One `general_settings.pass_through_endpoints` entry (LiteLLM's names): requests to `path`
    (and below it) go to `target` (and below it) with `headers` added."""

    path = fields.String(required=True, validate=validate.Regexp(
        r"^/[A-Za-z0-9._~/-]*$", error="must start with / and hold only letters, digits and ._~/-"))
    target = fields.String(required=True, validate=_pass_through_target)
    headers = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    # LiteLLM's default is no gateway auth (an enterprise feature there); ours is auth, secure by
    # default: `auth: false` must be written to open a route to anyone.
    auth = fields.Boolean(load_default=True)
    forward_headers = fields.Boolean(load_default=False)
    # LiteLLM's: `path` alone unless set, then everything below it too.
    include_subpath = fields.Boolean(load_default=False)
    timeout = fields.Float(load_default=600.0, validate=_positive)
    # LiteLLM's: what one call to this endpoint costs, in dollars (its spend row's cost).
    cost_per_request = Number(load_default=None, allow_none=True, validate=validate.Range(min=0))


class GeneralSettingsSchema(Schema):
    class Meta:
        unknown = INCLUDE

    # LiteLLM's docs and tests use `sk-1234`: a short key only warns, and `dheera_ai` refuses it
    # when the gateway listens beyond loopback (see SHORT_MASTER_KEY).
    master_key = fields.String(allow_none=True, validate=validate.Length(min=1))
    # Signs the admin UI's session cookies; without it, a secret derived from the master key does.
    ui_session_secret = fields.String(allow_none=True, validate=validate.Length(min=16))
    database_url = fields.String(allow_none=True, validate=validate.Regexp(
        r"^(sqlite:///|postgres(ql)?://)", error="must start with sqlite:/// or postgresql://"))
    redis_url = fields.String(allow_none=True, validate=validate.Regexp(
        REDIS_URL, error="must start with redis://, rediss:// or unix://"))
    max_request_size_mb = Number(load_default=32.0, validate=_positive)
    allow_client_side_credentials = fields.Boolean(load_default=False)
    # Hosts, addresses or networks (CIDR) a client-supplied api_base may reach although they are
    # loopback, private or link-local; nothing by default.
    allowed_client_api_base_hosts = fields.List(fields.String(), load_default=list)
    redis_key_prefix = fields.String(load_default="dheera_ai:")
    # Your own price table instead of the shipped one (dheera_ai/model_prices.yaml); checked here so
    # a wrong path stops start-up with the key's name, not each worker as it boots.
    model_prices_path = fields.String(allow_none=True, validate=_existing_file)
    # Slow request bodies (gevent workers, proxy_app/body_deadline.py): the longest a body may take
    # to arrive, and how many connections of a worker may still be sending theirs after a second.
    request_body_timeout = fields.Float(load_default=60.0, validate=_positive)
    max_slow_body_connections = fields.Integer(load_default=100, validate=validate.Range(min=1))
    # Refuse a call under a budget whose cost cannot be priced, rather than count what can be.
    budget_fail_closed = fields.Boolean(load_default=False)
    # Every x-dheera-ai-* response header also as LiteLLM's x-litellm-* (dashboards and clients read
    # x-litellm-model-id, -response-cost, -call-id). Off by default: the hot path pays nothing.
    litellm_compatible_headers = fields.Boolean(load_default=False)
    pass_through_endpoints = fields.List(fields.Nested(PassThroughEndpointSchema), load_default=list)
    # /v1/files: where uploaded files and batch outputs live (unset: a `files` directory beside the
    # SQLite file or local_state_dir; several instances on PostgreSQL point this at one shared
    # directory), and the largest upload.
    files_dir = fields.String(allow_none=True, validate=validate.Length(min=1))
    max_file_size_mb = Number(load_default=200.0, validate=_positive)
    # /v1/batches that the gateway runs itself: what a line costs against the list price, how many
    # lines a batch has in flight at once (per batch), the most lines a batch may hold, how often a
    # worker looks for batches to run, and how long a runner's lease lasts without renewal.
    batch_discount = Number(load_default=0.5, validate=validate.Range(min=0, max=1))
    batch_concurrency = fields.Integer(load_default=8, validate=validate.Range(min=1, max=1000))
    batch_max_requests = fields.Integer(load_default=100_000, validate=validate.Range(min=1))
    batch_poll_interval = Number(load_default=5.0, validate=_positive)
    batch_lease_seconds = Number(load_default=60.0, validate=validate.Range(min=1))
    # Batches on OpenAI/Azure deployments go to their Batch API (false: the gateway runs them too).
    batch_forwarding = fields.Boolean(load_default=True)
    batch_forward_poll_interval = Number(load_default=60.0, validate=_positive)  # how often their provider is asked


SHORT_MASTER_KEY = 8

# Call types the response cache can keep, under our names; LiteLLM's names map onto them.
CACHE_CALL_TYPES = ("chat_completions", "completions", "embeddings", "anthropic_messages")
LITELLM_CACHE_CALL_TYPES = {"completion": "chat_completions", "acompletion": "chat_completions",
                            "text_completion": "completions", "atext_completion": "completions",
                            "embedding": "embeddings", "aembedding": "embeddings",
                            "anthropic_messages": "anthropic_messages"}
# LiteLLM call types it caches and we do not (yet): accepted with a warning, so its files still load.
UNCACHED_CALL_TYPES = ("transcription", "atranscription", "responses", "aresponses", "rerank", "arerank",
                       "image_generation", "aimage_generation", "speech", "aspeech", "moderation", "amoderation")


class CacheCallTypesField(fields.Field):
    """`supported_call_types`: our names or LiteLLM's; what we cannot cache is left out, with a warning."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValidationError("must be a list of call types")
        out = []
        for name in value:
            mapped = name if name in CACHE_CALL_TYPES else LITELLM_CACHE_CALL_TYPES.get(name)
            if mapped is None and name not in UNCACHED_CALL_TYPES:
                raise ValidationError(f"unknown call type '{name}'; known: {', '.join(CACHE_CALL_TYPES)}")
            if mapped is None:
                log.warning("cache_params.supported_call_types: %s answers are not cached by Dheera AI", name)
            elif mapped not in out:
                out.append(mapped)
        return tuple(out)


CACHE_TYPES = ("local", "redis", "postgres-semantic")
# LiteLLM's other semantic caches need services this gateway does not speak to.
OTHER_SEMANTIC_CACHES = {"redis-semantic": "Redis Search", "qdrant-semantic": "Qdrant"}


def _cache_type(value: str) -> None:
    if value in OTHER_SEMANTIC_CACHES:
        raise ValidationError(f"{value} ({OTHER_SEMANTIC_CACHES[value]}) is not supported; use postgres-semantic "
                              "(PostgreSQL with pgvector)")
    if value not in CACHE_TYPES:
        raise ValidationError(f"must be one of: {', '.join(CACHE_TYPES)}")


class CacheParamsSchema(Schema):
    """`dheera_ai_settings.cache_params` (LiteLLM's names); other LiteLLM keys are accepted and unused."""

    class Meta:
        unknown = INCLUDE

    # Unset: redis when general_settings.redis_url is set (shared by every instance), else local.
    type = fields.String(allow_none=True, validate=_cache_type)
    host = fields.String(allow_none=True)
    port = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=65535))
    password = fields.String(allow_none=True)
    url = fields.String(allow_none=True)  # checked against the type by _resolve_cache_backend
    namespace = fields.String(allow_none=True, validate=validate.Length(max=200))
    ttl = fields.Float(load_default=3600.0, validate=_positive)
    # The longest `ttl` a request may ask for.
    max_ttl = fields.Float(load_default=7 * 86400.0, validate=_positive)
    # The local cache's size (per worker), and the largest answer either cache keeps.
    max_bytes = fields.Integer(load_default=64 * 1024 * 1024, validate=_positive)
    max_item_bytes = fields.Integer(load_default=1024 * 1024, validate=_positive)
    supported_call_types = CacheCallTypesField(load_default=lambda: ("chat_completions", "completions", "embeddings",
                                                                     "anthropic_messages"))
    # default_off: only requests that send `cache: {"use-cache": true}` use the cache (LiteLLM's modes).
    mode = fields.String(load_default="default_on", validate=validate.OneOf(("default_on", "default_off")))
    # What an answer is shared by: every deployment of the model group, or one deployment.
    key_scope = fields.String(load_default="model_group", validate=validate.OneOf(("model_group", "deployment")))
    # Every Redis command (or PostgreSQL lookup) gives up after this long (the call then goes upstream).
    timeout_ms = fields.Float(load_default=50.0, validate=validate.Range(min=1, max=50))
    # postgres-semantic: how alike two prompts' embeddings must be (cosine similarity) to share an
    # answer, the model group that embeds them (LiteLLM's redis_/qdrant_semantic_cache_embedding_model
    # are read too), and the longest a call waits for its prompt's embedding.
    similarity_threshold = fields.Float(allow_none=True, validate=validate.Range(min=0, max=1, min_inclusive=False))
    semantic_cache_embedding_model = fields.String(allow_none=True)
    embedding_timeout_ms = fields.Float(load_default=1000.0, validate=validate.Range(min=1, max=10000))


ROUTING_STRATEGIES = ("simple-shuffle", "least-busy", "latency-based-routing", "usage-based-routing",
                      "cost-based-routing")
# LiteLLM's names for strategies we serve under one name: its v2 is its Redis-backed usage
# routing; ours counts usage the same way in either case.
ROUTING_ALIASES = {"usage-based-routing-v2": "usage-based-routing"}
# LiteLLM's names for per-error-class retry counts (its `RetryPolicy`).
RETRY_POLICY_KEYS = ("BadRequestErrorRetries", "AuthenticationErrorRetries", "TimeoutErrorRetries",
                     "RateLimitErrorRetries", "ContentPolicyViolationErrorRetries", "InternalServerErrorRetries")
# Router keys LiteLLM files may also put in `litellm_settings`; `router_settings` wins.
ROUTER_KEYS_IN_SETTINGS = ("num_retries", "fallbacks", "context_window_fallbacks", "content_policy_fallbacks",
                           "default_fallbacks", "allowed_fails", "cooldown_time", "retry_policy", "timeout",
                           "stream_timeout", "request_timeout", "retry_after")


class FallbacksField(fields.Field):
    """`[{group: [other groups]}]`: each entry maps one model group to the groups tried after it."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, list):
            raise ValidationError("must be a list of {model group: [fallback groups]}")
        merged = {}
        for item in value:
            if not isinstance(item, dict) or not all(
                    isinstance(k, str) and isinstance(v, list) and all(isinstance(g, str) for g in v)
                    for k, v in item.items()):
                raise ValidationError("each entry must map a model group to a list of group names")
            merged.update(item)
        return merged


class RouterSettingsSchema(Schema):
    """`router_settings` (and a per-request `user_config`); other LiteLLM keys are accepted and unused."""

    class Meta:
        unknown = INCLUDE

    routing_strategy = fields.String(load_default="simple-shuffle", validate=validate.OneOf(ROUTING_STRATEGIES))
    num_retries = Whole(load_default=0, validate=_non_negative)
    # Base of the exponential backoff between retries, in seconds (LiteLLM's name).
    retry_after = Number(load_default=0.5, validate=_non_negative)
    # No wait between retries is longer than this, whatever an upstream's Retry-After says.
    max_retry_wait = Number(load_default=10.0, validate=_non_negative)
    retry_policy = fields.Dict(keys=fields.String(validate=validate.OneOf(RETRY_POLICY_KEYS)),
                               values=Whole(validate=_non_negative), load_default=dict)
    fallbacks = FallbacksField(load_default=dict)
    context_window_fallbacks = FallbacksField(load_default=dict)
    content_policy_fallbacks = FallbacksField(load_default=dict)
    default_fallbacks = fields.List(fields.String(), load_default=list)
    allowed_fails = Whole(load_default=3, validate=validate.Range(min=1))
    cooldown_time = Number(load_default=5.0, validate=_non_negative)
    timeout = Number(allow_none=True, validate=_positive)
    stream_timeout = Number(allow_none=True, validate=_positive)
    enable_tag_filtering = fields.Boolean(load_default=False)
    # LiteLLM's aliases: a name clients may send -> the model group that answers it (or
    # {model: group, hidden: true} to keep the alias out of /models).
    model_group_alias = fields.Dict(keys=fields.String(), values=fields.Raw(), load_default=dict)
    # Share of calls the latency strategy sends to a random deployment, so it notices recoveries.
    latency_exploration = Number(load_default=0.05, validate=validate.Range(min=0, max=1))

    @pre_load
    def _litellm_aliases(self, data, **kwargs):
        if isinstance(data, dict) and "request_timeout" in data and "timeout" not in data:
            data = {**data, "timeout": data["request_timeout"]}
        if isinstance(data, dict) and data.get("routing_strategy") in ROUTING_ALIASES:
            data = {**data, "routing_strategy": ROUTING_ALIASES[data["routing_strategy"]]}
        return data


def load_router_settings(raw: dict, group_names) -> dict:
    """Validated router settings; fallbacks must name configured groups. Raises ValidationError."""
    settings = RouterSettingsSchema().load(raw or {})
    known = set(group_names)
    from dheera_ai.router.wildcards import model_allowed  # the router imports this module

    for alias, target in settings["model_group_alias"].items():
        target = target.get("model") if isinstance(target, dict) else target
        if not isinstance(target, str) or not model_allowed(target, known):
            raise ValidationError({"model_group_alias": {alias: [f"names no configured model group ({target!r}); "
                                                                 "write a model_name or {model, hidden}"]}})
    for key in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks"):
        for group, targets in settings[key].items():
            unknown = [g for g in [group, *targets] if g not in known and g != "*"]
            if unknown:
                raise ValidationError({key: [f"unknown model group '{unknown[0]}'"]})
    unknown = [g for g in settings["default_fallbacks"] if g not in known]
    if unknown:
        raise ValidationError({"default_fallbacks": [f"unknown model group '{unknown[0]}'"]})
    return settings


class SettingsSchema(Schema):
    """`dheera_ai_settings` / `litellm_settings`: the keys read here typed; router keys that LiteLLM
    files keep here are checked by `RouterSettingsSchema`; the rest pass (with a warning)."""

    class Meta:
        unknown = INCLUDE

    drop_params = fields.Boolean(allow_none=True)
    require_auth_for_metrics_endpoint = fields.Boolean(allow_none=True)


class ConfigSchema(Schema):
    class Meta:
        unknown = INCLUDE

    model_list = fields.List(fields.Nested(DeploymentSchema), load_default=list)
    router_settings = fields.Dict(load_default=dict, allow_none=True)
    dheera_ai_settings = fields.Nested(SettingsSchema, load_default=dict, allow_none=True)
    litellm_settings = fields.Nested(SettingsSchema, allow_none=True)
    general_settings = fields.Nested(GeneralSettingsSchema, load_default=dict)
    environment_variables = fields.Dict(keys=fields.String(), load_default=dict, allow_none=True)
    plugins = fields.List(fields.String(), load_default=list)

    @pre_load
    def _sections_default_to_empty(self, data, **kwargs):
        # An absent or empty `general_settings:` still gets its defaults from the nested schema.
        if isinstance(data, dict) and data.get("general_settings") is None:
            data = {**data, "general_settings": {}}
        return data


# --- Callbacks: where call records and traces go (plugins/observability) -------------------------

CALLBACKS = ("otel", "langfuse", "webhook")
# LiteLLM's names for the same destinations.
CALLBACK_ALIASES = {"opentelemetry": "otel", "langfuse_otel": "langfuse"}
# LiteLLM callbacks the gateway has built in: accepted, and the log says where to look.
CALLBACKS_BUILT_IN = {"prometheus": "GET /metrics"}


class OtelSettingsSchema(Schema):
    """`callback_settings.otel`; unset values come from the standard OTEL_* environment."""

    endpoint = fields.String(allow_none=True)  # OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT
    headers = fields.Raw(allow_none=True)  # a mapping, or "k=v,k2=v2" as OTEL_EXPORTER_OTLP_HEADERS
    service_name = fields.String(allow_none=True)  # OTEL_SERVICE_NAME, else dheera-ai
    capture_content = fields.Boolean(allow_none=True)  # else OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT
    message_logging = fields.Boolean(allow_none=True)  # LiteLLM's name for capture_content
    timeout = fields.Float(allow_none=True, validate=_positive)  # seconds per export


class LangfuseSettingsSchema(Schema):
    public_key = fields.String(allow_none=True)  # LANGFUSE_PUBLIC_KEY
    secret_key = fields.String(allow_none=True)  # LANGFUSE_SECRET_KEY
    host = fields.String(allow_none=True)  # LANGFUSE_HOST, else https://cloud.langfuse.com
    capture_content = fields.Boolean(load_default=True)
    timeout = fields.Float(allow_none=True, validate=_positive)


class WebhookSettingsSchema(Schema):
    url = fields.Url(required=True, require_tld=False, schemes={"http", "https"})
    headers = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    batch_size = fields.Integer(load_default=100, validate=validate.Range(min=1, max=10_000))
    flush_interval = fields.Float(load_default=1.0, validate=_positive)  # seconds
    timeout = fields.Float(load_default=5.0, validate=_positive)  # seconds per POST
    max_queue_size = fields.Integer(load_default=10_000, validate=validate.Range(min=1))


CALLBACK_SCHEMAS = {"otel": OtelSettingsSchema, "langfuse": LangfuseSettingsSchema, "webhook": WebhookSettingsSchema}


def load_callbacks(settings: dict, callback_settings) -> dict:
    """`{name: {"success": bool, "failure": bool, **settings}}` for each destination the config
    turns on: `callbacks` (both directions), `success_callback`, `failure_callback` (LiteLLM's
    names), with `callback_settings.<name>`. Raises ValidationError naming the key."""
    directions: dict = {}
    for key, wanted in (("callbacks", ("success", "failure")), ("success_callback", ("success",)),
                        ("failure_callback", ("failure",))):
        names = settings.get(key)
        if names is None:
            continue
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValidationError({key: ["must be a list of callback names"]})
        for name in names:
            name = CALLBACK_ALIASES.get(name, name)
            if name in CALLBACKS_BUILT_IN:
                log.info("callback %r is built in: %s", name, CALLBACKS_BUILT_IN[name])
                continue
            if name not in CALLBACKS:
                raise ValidationError({key: [f"unknown callback '{name}'; known: {', '.join(CALLBACKS)}"]})
            for direction in wanted:
                directions.setdefault(name, {"success": False, "failure": False})[direction] = True
    if callback_settings is not None and not isinstance(callback_settings, dict):
        raise ValidationError({"callback_settings": ["must be a mapping of callback name to its settings"]})
    given = callback_settings or {}
    callbacks = {}
    for name, on in directions.items():
        try:
            values = CALLBACK_SCHEMAS[name]().load(given.get(name) or {})
        except ValidationError as e:
            raise ValidationError({"callback_settings": {name: e.messages}}) from None
        callbacks[name] = {**on, **values}
    langfuse = callbacks.get("langfuse")
    if langfuse is not None:
        for key, variable in (("public_key", "LANGFUSE_PUBLIC_KEY"), ("secret_key", "LANGFUSE_SECRET_KEY")):
            if not (langfuse.get(key) or os.environ.get(variable)):
                raise ValidationError({"callback_settings": {"langfuse": {key: [
                    f"required for the langfuse callback (or set {variable})"]}}})
    return callbacks


@dataclass(frozen=True)
class Config:
    """The validated config; what every part of the gateway reads its settings from."""

    deployments: list
    general_settings: dict = field(default_factory=dict)
    router_settings: dict = field(default_factory=dict)
    dheera_ai_settings: dict = field(default_factory=dict)
    plugins: list = field(default_factory=list)
    source: str | None = None
    # The names of the configured guardrails (the instances are the engine's).
    guardrails: tuple = ()
    # What start-up should tell the user: keys nobody reads, unset variables in them, a short key.
    warnings: tuple = ()
    # Destinations of traces and call records (load_callbacks); empty: none, and no cost.
    callbacks: dict = field(default_factory=dict)

    @property
    def master_key(self) -> str | None:
        return self.general_settings.get("master_key")

    @property
    def short_master_key(self) -> bool:
        return bool(self.master_key) and len(self.master_key) < SHORT_MASTER_KEY

    @property
    def max_request_bytes(self) -> int:
        return int(self.general_settings["max_request_size_mb"] * 1024 * 1024)

    @property
    def state_dir(self) -> str:
        """Where local state lives: beside the config file, else the working directory."""
        return os.path.dirname(os.path.abspath(self.source)) if self.source else os.getcwd()


def read_config_file(path: str) -> dict:
    """The YAML document at `path` as a dict; a missing or unreadable file is a `ConfigError`."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError([f"cannot read the config file: {e.strerror}"], path) from None
    except yaml.YAMLError as e:
        raise ConfigError([f"not valid YAML: {e}"], path) from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(["the top level must be a mapping of sections (model_list, ...)"], path)
    return raw


def build_config(raw: dict, provider_names, source: str | None = None) -> Config:
    """Validate `raw` (a parsed config document) against the registered provider names."""
    environment = raw.get("environment_variables")
    if isinstance(environment, dict):
        # Set before `os.environ/` values are read, so the config can feed itself.
        for name, value in environment.items():
            os.environ[str(name)] = "" if value is None else str(value)
    missing: dict = {}
    resolved = _resolve_env(raw, (), missing)
    try:
        data = ConfigSchema().load(resolved)
    except ValidationError as e:
        raise ConfigError(flatten_errors(e.messages), source) from None

    problems, warnings = [], config_keys.key_warnings(raw, _declared_keys())
    for path, variable in missing.items():
        if len(path) == 4 and path[0] == "model_list" and path[2] in ("dheera_ai_params", "litellm_params"):
            continue  # deployment params may wait for call time
        if _is_read(path):  # anything else we read (a master key!) may not
            problems.append(f"{_path(path)}: environment variable {variable} is not set")
        else:
            warnings.append(f"{_path(path)}: environment variable {variable} is not set "
                            f"(Dheera AI does not use this setting, so start-up goes on)")
    if data["general_settings"].get("master_key") and len(data["general_settings"]["master_key"]) < SHORT_MASTER_KEY:
        warnings.append(f"general_settings.master_key: shorter than {SHORT_MASTER_KEY} characters, so easy to "
                        f"guess; `dheera_ai` serves it on 127.0.0.1 only and refuses to listen beyond loopback "
                        f"with it. Use a long random key (e.g. sk- and 32 random characters) in production")

    deployments = []
    for index, entry in enumerate(data["model_list"]):
        block = "dheera_ai_params" if "dheera_ai_params" in entry else "litellm_params"
        try:
            deployments.append(_deployment(index, entry, block, set(provider_names), missing))
        except ValueError as e:
            problems.append(f"model_list[{index}].{block}.model: {e}")
    if problems:
        raise ConfigError(problems, source)
    for index, deployment in enumerate(deployments):
        if deployment.provider in UNBUILT_PROVIDERS:
            warnings.append(f"model_list[{index}]: Dheera AI has no {UNBUILT_PROVIDERS[deployment.provider]} "
                            f"provider yet; calls to '{deployment.model_name}' are answered 501")

    settings = dict(data.get("litellm_settings") or {})
    settings.update(data.get("dheera_ai_settings") or {})
    if settings.get("cache") or settings.get("cache_params"):
        try:
            settings["cache"] = fields.Boolean().deserialize(settings.get("cache", False))
            settings["cache_params"] = CacheParamsSchema().load(settings.get("cache_params") or {})
            _resolve_cache_backend(settings["cache_params"], data["general_settings"],
                                   {d.model_name for d in deployments})
        except ValidationError as e:
            raise ConfigError(flatten_errors(e.messages, ("dheera_ai_settings", "cache_params")
                                             if isinstance(e.messages, dict) else ("dheera_ai_settings", "cache")),
                              source) from None
    router_raw = {k: settings[k] for k in ROUTER_KEYS_IN_SETTINGS if k in settings}
    router_raw.update(data.get("router_settings") or {})
    try:
        router_settings = load_router_settings(router_raw, {d.model_name for d in deployments})
    except ValidationError as e:
        raise ConfigError(flatten_errors(e.messages, ("router_settings",)), source) from None
    try:
        callbacks = load_callbacks(settings, data.get("callback_settings"))
    except ValidationError as e:
        section = "callback_settings" if "callback_settings" in e.messages else "dheera_ai_settings"
        messages = e.messages.get("callback_settings", e.messages) if section == "callback_settings" else e.messages
        raise ConfigError(flatten_errors(messages, (section,)), source) from None
    return Config(deployments=deployments, general_settings=data["general_settings"],
                  router_settings=router_settings, dheera_ai_settings=settings,
                  plugins=data["plugins"], source=source, warnings=tuple(warnings),
                  callbacks=callbacks)


def _declared_keys() -> dict:
    """Section -> the fields its schema declares (and so reads)."""
    settings = tuple(SettingsSchema().fields) + ROUTER_KEYS_IN_SETTINGS
    return {"general_settings": tuple(GeneralSettingsSchema().fields),
            "router_settings": tuple(RouterSettingsSchema().fields) + ("request_timeout",),
            "litellm_settings": settings, "dheera_ai_settings": settings}


def _is_read(path) -> bool:
    section = path[0]
    if section in ("model_list", "environment_variables", "plugins"):
        return True
    if len(path) < 2 or not config_keys.is_read("", section):
        return False
    return path[1] in _declared_keys().get(section, ()) or config_keys.is_read(section, path[1])


def _resolve_cache_backend(params: dict, general: dict, groups: set) -> None:
    """Which cache: redis reuses general_settings.redis_url when cache_params names no server,
    postgres-semantic general_settings.database_url when it is PostgreSQL."""
    own = params.get("url") or params.get("host")
    if params.get("type") is None:
        params["type"] = "redis" if own or general.get("redis_url") else "local"
    if params["type"] == "postgres-semantic":
        _resolve_semantic_cache(params, general, groups)
        return
    if params.get("url") and not REDIS_URL.match(params["url"]):
        raise ValidationError({"url": ["must start with redis://, rediss:// or unix://"]})
    if params["type"] == "redis" and not own:
        if not general.get("redis_url"):
            raise ValidationError({"type": ["redis needs cache_params.url or host, or general_settings.redis_url"]})
        params["url"] = general["redis_url"]


def _resolve_semantic_cache(params: dict, general: dict, groups: set) -> None:
    database = general.get("database_url") or ""
    params["url"] = params.get("url") or (database if POSTGRES_URL.match(database) else None)
    if not params["url"] or not POSTGRES_URL.match(params["url"]):
        raise ValidationError({"url": ["postgres-semantic needs a postgresql:// url here, or a PostgreSQL "
                                       "general_settings.database_url"]})
    if params.get("similarity_threshold") is None:
        raise ValidationError({"similarity_threshold": ["postgres-semantic needs a similarity from 0 to 1 "
                                                        "(e.g. 0.9)"]})
    model = (params.get("semantic_cache_embedding_model") or params.get("redis_semantic_cache_embedding_model")
             or params.get("qdrant_semantic_cache_embedding_model"))
    if not isinstance(model, str) or not model:
        raise ValidationError({"semantic_cache_embedding_model": [
            "postgres-semantic needs the model group that embeds prompts"]})
    if model not in groups:
        raise ValidationError({"semantic_cache_embedding_model": [f"no model group '{model}' in model_list"]})
    params["semantic_cache_embedding_model"] = model


def split_model(model: str, provider_names) -> tuple[str, str]:
    """`provider/name` -> (provider, name); a bare well-known name gets its provider inferred."""
    provider, sep, name = model.partition("/")
    provider = PROVIDER_ALIASES.get(provider, provider) if sep else provider
    if sep and provider in provider_names:
        return provider, name
    if sep:
        close = difflib.get_close_matches(provider, list(provider_names), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"unknown provider '{provider}'{hint}; known: {', '.join(sorted(provider_names))}")
    for prefixes, inferred in INFERRED_PROVIDERS:
        if model.startswith(prefixes) and inferred in provider_names:
            return inferred, model
    raise ValueError(f"'{model}' names no provider; write it as provider/model, e.g. openai/{model}")


def parse_deployment(index: int, raw: dict, provider_names) -> Deployment:
    """One `model_list` entry given at run time (a `user_config`): validated, nothing resolved.
    Raises ValidationError or ValueError (unknown provider)."""
    entry = DeploymentSchema().load(raw)
    block = "dheera_ai_params" if "dheera_ai_params" in entry else "litellm_params"
    return _deployment(index, entry, block, set(provider_names), {})


def _deployment(index, entry, block, provider_names, missing) -> Deployment:
    params = dict(entry[block])
    # `model: "*"`: the caller's `provider/model` decides, per call (dheera_ai.router.wildcards).
    provider, model = ("*", "*") if params["model"] == "*" else split_model(params["model"], provider_names)
    for key in ("rpm", "tpm"):  # LiteLLM allows these beside the params block too
        if key in entry and params.get(key) is None:
            params[key] = entry[key]
    unresolved = {path[3]: var for path, var in missing.items()
                  if path[:3] == ("model_list", index, block)}
    # Prices LiteLLM lets the params carry count as model_info's (model_info wins).
    model_info = {**{k: params[k] for k in PRICE_KEYS if params.get(k) is not None}, **(entry.get("model_info") or {})}
    deployment_id = str(model_info.get("id") or _deployment_id(index, entry["model_name"], params))
    return Deployment(id=deployment_id, model_name=entry["model_name"], provider=provider, model=model,
                      params=params, model_info=model_info, unresolved=unresolved)


def _deployment_id(index: int, model_name: str, params: dict) -> str:
    """Stable across restarts and instances with the same config, so shared state lines up."""
    seed = f"{index}|{model_name}|{params.get('model')}|{params.get('api_base')}|{params.get('api_version')}"
    return hashlib.sha256(seed.encode()).hexdigest()[:16]


def _resolve_env(value, path, missing):
    if isinstance(value, dict):
        return {k: _resolve_env(v, path + (k,), missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_env(v, path + (i,), missing) for i, v in enumerate(value)]
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX):]
        if name in os.environ:
            return os.environ[name]
        missing[path] = name
        return None
    return value


def _path(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def flatten_errors(messages, prefix=()) -> list[str]:
    """marshmallow's nested error dict -> sorted `path: message` lines."""
    if isinstance(messages, dict):
        lines = []
        for key, value in messages.items():
            part = key if key != "_schema" else None
            lines += flatten_errors(value, prefix + ((part,) if part is not None else ()))
        return sorted(lines)
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        text = "; ".join(m.rstrip(".").replace("Unknown field", "unknown key") for m in messages)
        return [f"{_path(prefix) or '(top level)'}: {text}"]
    return [f"{_path(prefix)}: {messages}"]
