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
from dataclasses import dataclass, field

import yaml
from marshmallow import INCLUDE, Schema, ValidationError, fields, pre_load, validate, validates_schema

from dheera_ai.types import Deployment

log = logging.getLogger("dheera_ai.config")

ENV_PREFIX = "os.environ/"
KNOWN_SECTIONS = ("model_list", "router_settings", "dheera_ai_settings", "litellm_settings",
                  "general_settings", "environment_variables", "plugins")
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


_positive = validate.Range(min=0, min_inclusive=False)
_non_negative = validate.Range(min=0)


def _existing_file(path: str) -> None:
    if not os.path.isfile(path):
        raise ValidationError(f"no such file: {path} (relative paths start from {os.getcwd()})")


class DeploymentParamsSchema(Schema):
    """`dheera_ai_params`; unknown keys are provider-specific and pass through."""

    class Meta:
        unknown = INCLUDE

    model = fields.String(required=True, validate=validate.Length(min=1))
    api_key = VersionString(allow_none=True)
    api_base = fields.String(allow_none=True)
    api_version = VersionString(allow_none=True)
    timeout = fields.Float(allow_none=True, validate=_positive)
    stream_timeout = fields.Float(allow_none=True, validate=_positive)
    max_retries = fields.Integer(allow_none=True, validate=_non_negative)
    rpm = fields.Integer(allow_none=True, validate=_non_negative)
    tpm = fields.Integer(allow_none=True, validate=_non_negative)
    weight = fields.Float(allow_none=True, validate=_non_negative)
    tags = fields.List(fields.String(), allow_none=True)
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
    model_info = fields.Dict(load_default=dict)
    rpm = fields.Integer(validate=_non_negative)
    tpm = fields.Integer(validate=_non_negative)

    @validates_schema
    def _one_params_block(self, data, **kwargs):
        given = [k for k in ("dheera_ai_params", "litellm_params") if k in data]
        if not given:
            raise ValidationError("required (or its LiteLLM name, litellm_params)", "dheera_ai_params")
        if len(given) == 2:
            raise ValidationError("give dheera_ai_params or litellm_params, not both", "litellm_params")


class GeneralSettingsSchema(Schema):
    class Meta:
        unknown = INCLUDE

    master_key = fields.String(allow_none=True, validate=validate.Length(min=8))
    database_url = fields.String(allow_none=True, validate=validate.Regexp(
        r"^(sqlite:///|postgres(ql)?://)", error="must start with sqlite:/// or postgresql://"))
    redis_url = fields.String(allow_none=True, validate=validate.Regexp(
        r"^(redis|rediss|unix)://", error="must start with redis://, rediss:// or unix://"))
    max_request_size_mb = fields.Float(load_default=32.0, validate=_positive)
    allow_client_side_credentials = fields.Boolean(load_default=False)
    # Hosts, addresses or networks (CIDR) a client-supplied api_base may reach although they are
    # loopback, private or link-local; nothing by default.
    allowed_client_api_base_hosts = fields.List(fields.String(), load_default=list)
    redis_key_prefix = fields.String(load_default="dheera_ai:")
    # Your own price table instead of the shipped one (dheera_ai/model_prices.yaml); checked here so
    # a wrong path stops start-up with the key's name, not each worker as it boots.
    model_prices_path = fields.String(allow_none=True, validate=_existing_file)


ROUTING_STRATEGIES = ("simple-shuffle", "least-busy", "latency-based-routing", "usage-based-routing",
                      "cost-based-routing")
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
    num_retries = fields.Integer(load_default=0, validate=_non_negative)
    # Base of the exponential backoff between retries, in seconds (LiteLLM's name).
    retry_after = fields.Float(load_default=0.5, validate=_non_negative)
    # No wait between retries is longer than this, whatever an upstream's Retry-After says.
    max_retry_wait = fields.Float(load_default=10.0, validate=_non_negative)
    retry_policy = fields.Dict(keys=fields.String(validate=validate.OneOf(RETRY_POLICY_KEYS)),
                               values=fields.Integer(validate=_non_negative), load_default=dict)
    fallbacks = FallbacksField(load_default=dict)
    context_window_fallbacks = FallbacksField(load_default=dict)
    content_policy_fallbacks = FallbacksField(load_default=dict)
    default_fallbacks = fields.List(fields.String(), load_default=list)
    allowed_fails = fields.Integer(load_default=3, validate=validate.Range(min=1))
    cooldown_time = fields.Float(load_default=5.0, validate=_non_negative)
    timeout = fields.Float(allow_none=True, validate=_positive)
    stream_timeout = fields.Float(allow_none=True, validate=_positive)
    enable_tag_filtering = fields.Boolean(load_default=False)
    # alias -> model group, or {model: group, hidden: bool} (hidden: not listed by /v1/models).
    model_group_alias = fields.Dict(keys=fields.String(), load_default=dict)
    # Share of calls the latency strategy sends to a random deployment, so it notices recoveries.
    latency_exploration = fields.Float(load_default=0.05, validate=validate.Range(min=0, max=1))

    @pre_load
    def _litellm_aliases(self, data, **kwargs):
        if isinstance(data, dict) and "request_timeout" in data and "timeout" not in data:
            data = {**data, "timeout": data["request_timeout"]}
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


class ConfigSchema(Schema):
    class Meta:
        unknown = INCLUDE

    model_list = fields.List(fields.Nested(DeploymentSchema), load_default=list)
    router_settings = fields.Dict(load_default=dict, allow_none=True)
    dheera_ai_settings = fields.Dict(load_default=dict, allow_none=True)
    litellm_settings = fields.Dict(allow_none=True)
    general_settings = fields.Nested(GeneralSettingsSchema, load_default=dict)
    environment_variables = fields.Dict(keys=fields.String(), load_default=dict, allow_none=True)
    plugins = fields.List(fields.String(), load_default=list)

    @pre_load
    def _sections_default_to_empty(self, data, **kwargs):
        # An absent or empty `general_settings:` still gets its defaults from the nested schema.
        if isinstance(data, dict) and data.get("general_settings") is None:
            data = {**data, "general_settings": {}}
        return data


@dataclass(frozen=True)
class Config:
    """The validated config; what every part of the gateway reads its settings from."""

    deployments: list
    general_settings: dict = field(default_factory=dict)
    router_settings: dict = field(default_factory=dict)
    dheera_ai_settings: dict = field(default_factory=dict)
    plugins: list = field(default_factory=list)
    source: str | None = None

    @property
    def master_key(self) -> str | None:
        return self.general_settings.get("master_key")

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

    problems = []
    for path, variable in missing.items():
        # Deployment params may wait for call time; anything else (a master key!) may not.
        if not (len(path) == 4 and path[0] == "model_list" and path[2] in ("dheera_ai_params", "litellm_params")):
            problems.append(f"{_path(path)}: environment variable {variable} is not set")
    for section in raw:
        if section not in KNOWN_SECTIONS:
            log.warning("config section %r is not used by Dheera AI; ignored", section)

    deployments = []
    for index, entry in enumerate(data["model_list"]):
        block = "dheera_ai_params" if "dheera_ai_params" in entry else "litellm_params"
        try:
            deployments.append(_deployment(index, entry, block, set(provider_names), missing))
        except ValueError as e:
            problems.append(f"model_list[{index}].{block}.model: {e}")
    if problems:
        raise ConfigError(problems, source)

    settings = dict(data.get("litellm_settings") or {})
    settings.update(data.get("dheera_ai_settings") or {})
    router_raw = {k: settings[k] for k in ROUTER_KEYS_IN_SETTINGS if k in settings}
    router_raw.update(data.get("router_settings") or {})
    try:
        router_settings = load_router_settings(router_raw, {d.model_name for d in deployments})
    except ValidationError as e:
        raise ConfigError(flatten_errors(e.messages, ("router_settings",)), source) from None
    return Config(deployments=deployments, general_settings=data["general_settings"],
                  router_settings=router_settings, dheera_ai_settings=settings,
                  plugins=data["plugins"], source=source)


def split_model(model: str, provider_names) -> tuple[str, str]:
    """`provider/name` -> (provider, name); a bare well-known name gets its provider inferred."""
    provider, sep, name = model.partition("/")
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
    model_info = dict(entry.get("model_info") or {})
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
