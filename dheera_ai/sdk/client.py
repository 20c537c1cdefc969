"""The SDK's side of the engine: each function call becomes a `Call` run on a deployment built
from the call's own arguments, through the same pipeline (hooks, providers, recording) as the gateway.

The engine is built on the first call, once per process, with every plugin of the `dheera_ai`
entry-point group (the built-in providers included), as the gateway builds its own; nothing
happens at import time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading

import dheera_ai
from dheera_ai import ids
from dheera_ai.errors import AuthenticationError, BadRequestError, DheeraAIError, error_from_answer
from dheera_ai.sdk import objects
from dheera_ai.sdk.uploads import uploads
from dheera_ai.types import Call, Deployment, Principal

GATEWAY = "dheera_ai_proxy"
# Per-call routing (LiteLLM's `completion(..., fallbacks=[...], num_retries=N)`): the call runs
# through a router made for it, so retries and fallbacks are the gateway's own.
ROUTING_OPTIONS = ("fallbacks", "num_retries", "context_window_fallbacks", "content_policy_fallbacks")
# Arguments that steer the call rather than go into the API request's body.
OPTIONS = ("api_base", "base_url", "api_key", "api_version", "timeout", "extra_body", "metadata", "tags",
           "mock_response", "use_dheera_ai_proxy", "custom_llm_provider", "drop_params", *ROUTING_OPTIONS)
# Fields the pipeline reads from `gateway_params` (the enrichment plugin, the mock provider).
_GATEWAY_PARAMS = ("metadata", "tags", "mock_response")
_PRINCIPAL = Principal(kind="sdk")
_KNOWN_LIMIT = 1024  # deployments remembered for response-id follow-ups

_log = logging.getLogger("dheera_ai.sdk")
_lock = threading.Lock()
_engine = None
_prices = None
_known: dict[str, Deployment] = {}


def engine():
    """The process's SDK engine, built on first use: every plugin of the `dheera_ai` entry-point
    group, as the gateway loads them (the built-in providers are registered that way too, so an
    installed third-party provider or hook plugin applies to SDK calls as well)."""
    global _engine
    if _engine is None:
        with _lock:
            if _engine is None:
                from dheera_ai.engine import Engine

                # A library logs to no one until its user configures logging (no stderr lines per failed call).
                logging.getLogger("dheera_ai").addHandler(logging.NullHandler())
                built = Engine.from_raw_config({"model_list": []}, source="dheera_ai SDK", load_entrypoints=True)
                if not built.providers.names():
                    raise RuntimeError("No providers registered: the dheera_ai entry-point group is empty. Install "
                                       "the package (pip install dheera-ai, or pip install -e . in a checkout).")
                _engine = built
    return _engine


_tracing = None  # the tracing plugin, while `dheera_ai.callbacks` names otel


def _follow_callbacks(sdk_engine) -> None:
    """Register or unregister the tracing plugin as `dheera_ai.callbacks` says, at each call."""
    global _tracing
    wanted = any(name in ("otel", "opentelemetry") for name in dheera_ai.callbacks or ())
    with _lock:
        registered = _tracing is not None and sdk_engine.plugin_manager.is_registered(_tracing)
        if wanted and not registered:
            if _tracing is None:
                from plugins.observability.tracing import Tracing

                _tracing = Tracing.for_sdk()
            sdk_engine.plugin_manager.register(_tracing, name="callback-otel")
        elif registered and not wanted:
            sdk_engine.plugin_manager.unregister(_tracing)


def prices():
    global _prices
    if _prices is None:
        from dheera_ai.cost import PriceTable

        _prices = PriceTable.load()
    return _prices


def _flag(value) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def deployment_for(model: str, options: dict) -> Deployment:
    """The deployment this call runs on: its provider and model from `model`, its address and
    credentials from the call's arguments (for a gateway, also from `dheera_ai.api_base`/`api_key`
    and `DHEERA_AI_PROXY_API_BASE`/`_KEY`)."""
    if options.get("custom_llm_provider"):
        model = f"{options['custom_llm_provider']}/{model or ''}"
    if not isinstance(model, str) or not model:
        raise BadRequestError("model is required, as '<provider>/<model>'.", param="model")
    api_base = options.get("api_base") or options.get("base_url")
    api_key = options.get("api_key")
    via_gateway = model.startswith(GATEWAY + "/") or bool(options.get("use_dheera_ai_proxy")) \
        or bool(dheera_ai.use_dheera_ai_proxy) or _flag(os.environ.get("USE_DHEERA_AI_PROXY", ""))
    if via_gateway:
        # The gateway gets the model string as given, less our own routing prefix.
        provider, name = GATEWAY, model.removeprefix(GATEWAY + "/")
        api_base = api_base or dheera_ai.api_base or os.environ.get("DHEERA_AI_PROXY_API_BASE")
        api_key = api_key or dheera_ai.api_key or os.environ.get("DHEERA_AI_PROXY_API_KEY")
        if not api_base:
            raise BadRequestError(f"No gateway address for '{model}': pass api_base=, set dheera_ai.api_base, or "
                                  "set DHEERA_AI_PROXY_API_BASE.", param="api_base", code="missing_api_base",
                                  provider=GATEWAY)
        if not api_key:
            raise AuthenticationError(f"No gateway key for '{model}': pass api_key=, set dheera_ai.api_key, or set "
                                      "DHEERA_AI_PROXY_API_KEY.", code="missing_api_key", provider=GATEWAY)
    else:
        from dheera_ai.config import split_model

        try:
            provider, name = split_model(model, engine().providers.names())
        except ValueError as e:
            raise BadRequestError(f"model '{model}': {e}", param="model", code="invalid_model") from None
    drop = options.get("drop_params")
    params = {"api_base": api_base, "api_key": api_key, "api_version": options.get("api_version"),
              "timeout": float(options["timeout"]) if options.get("timeout") is not None else None,
              "drop_params": drop if drop is not None else (True if dheera_ai.drop_params else None)}
    params = {k: v for k, v in params.items() if v is not None}
    # Same arguments, same id: a response id made on it finds its way back (see `follow_up`).
    key_hash = hashlib.sha256(str(api_key).encode()).hexdigest()
    seed = f"{provider}|{name}|{api_base}|{params.get('api_version')}|{key_hash}"
    deployment = Deployment(id="sdk-" + hashlib.sha256(seed.encode()).hexdigest()[:16], model_name=model,
                            provider=provider, model=name, params=params)
    with _lock:
        _known.pop(deployment.id, None)
        _known[deployment.id] = deployment
        while len(_known) > _KNOWN_LIMIT:
            _known.pop(next(iter(_known)))
    return deployment


def split_options(params: dict, names=OPTIONS) -> tuple[dict, dict]:
    """(the call's options, the API request's body): None means "not given" and is left out;
    `extra_body` is merged into the body as it is (its tags and metadata reach a gateway).
    `names`: what counts as an option (the files and batch calls have their own)."""
    options = {k: params.pop(k) for k in names if k in params}
    body = {k: v for k, v in params.items() if v is not None}
    extra = options.get("extra_body") or {}
    if not isinstance(extra, dict):
        raise BadRequestError("extra_body must be a dict.", param="extra_body")
    body.update(extra)
    return options, body


def routed_engine(model_list: list, router_settings: dict, source: str = "dheera_ai.Router"):
    """An engine for a `dheera_ai.Router`: the SDK engine's plugins and providers, with its own
    config (validated as a config file's `model_list` and `router_settings` are, `os.environ/`
    resolved), router and pipeline. Raises `ConfigError` naming each bad field."""
    from dheera_ai.config import build_config
    from dheera_ai.engine import Engine
    from dheera_ai.router.cooldowns import MemoryCooldowns

    base = engine()
    config = build_config({"model_list": model_list, "router_settings": router_settings},
                          base.providers.names(), source=source)
    for warning in config.warnings:  # keys nobody reads (LiteLLM's `set_verbose`, ...), to the host's logging
        _log.warning("%s: %s", source, warning)
    routed = Engine(config, base.plugin_manager, base.providers)
    # An in-process router's cooldowns are this process's, as its stats are (no file in the working directory).
    routed.router.cooldowns = MemoryCooldowns()
    return routed


class _Routed:
    """What `pipeline.run` needs for one call's own router (per-call fallbacks and retries)."""

    def __init__(self, deployments: list[Deployment], settings: dict):
        from dheera_ai.pipeline import Pipeline
        from dheera_ai.router import Router

        base = engine()
        self.router = Router(deployments, settings, provider_names=base.providers.names())
        self.pipeline = Pipeline(base.plugin_manager, base.config, self.router, base.providers)


def _per_call_router(model: str, options: dict) -> _Routed:
    """A router for one call: its model as the first group, each fallback (a model string, or a
    dict of its own `model` and options) a group of its own, tried in order."""
    from marshmallow import ValidationError

    from dheera_ai.config import flatten_errors, load_router_settings

    fallbacks = options.get("fallbacks") or []
    if not isinstance(fallbacks, list):
        raise BadRequestError("fallbacks must be a list of models (or of dicts with a 'model').", param="fallbacks")
    base_options = {k: v for k, v in options.items() if k not in ROUTING_OPTIONS}
    deployments = [deployment_for(model, base_options)]
    for item in fallbacks:
        if isinstance(item, str):
            deployments.append(deployment_for(item, base_options))
        elif isinstance(item, dict) and isinstance(item.get("model"), str):
            deployments.append(deployment_for(item["model"], {**base_options, **item}))
        elif isinstance(item, dict) and len(item) == 1:  # a Router-style {group: [groups]} entry
            raise BadRequestError("fallbacks of dheera_ai.completion are models (model strings or dicts with a "
                                  "'model'); {group: [groups]} is a Router's fallbacks.", param="fallbacks")
        else:
            raise BadRequestError(f"fallbacks: cannot use {item!r}: write a model string or a dict with a 'model'.",
                                  param="fallbacks")
    names = list(dict.fromkeys(d.model_name for d in deployments))
    deployments = list({d.model_name: d for d in reversed(deployments)}.values())[::-1]
    raw = {k: options[k] for k in ("num_retries",) if options.get(k) is not None}
    if names[1:]:
        raw["fallbacks"] = [{names[0]: names[1:]}]
    for key in ("context_window_fallbacks", "content_policy_fallbacks"):
        if options.get(key):
            raw[key] = options[key]
    try:
        settings = load_router_settings(raw, names)
    except ValidationError as e:
        problem = flatten_errors(e.messages)[0]
        raise BadRequestError(f"Invalid routing options: {problem}", param=problem.split(":")[0]) from None
    return _Routed(deployments, settings)


def run(call_type: str, model: str, params: dict, result=objects.Result, chunk=None, files=(),
        pin_response_id: str | None = None, deployment: Deployment | None = None, routed=None):
    """Carry out one call (on `deployment`, else through the `routed` engine's router, else on
    the one its arguments describe); its answer as `result`, or a `Stream` of `chunk` when streamed.
    `dheera_ai.success_callback` / `failure_callback` hear how it ended."""
    from dheera_ai.sdk import callbacks

    if not callbacks.wanted():
        return _carry_out(call_type, model, params, result, chunk, files, pin_response_id, deployment, routed)
    report = _Report(call_type, model, params)
    try:
        return _carry_out(call_type, model, params, result, chunk, files, pin_response_id, deployment, routed,
                          report)
    except DheeraAIError as error:
        report.ended(None, error)
        raise


class _Report:
    """Tells the SDK's callbacks, once, how one call ended."""

    def __init__(self, call_type: str, model: str, params: dict):
        from dheera_ai.sdk import callbacks

        self.call_type, self.model, self.params = call_type, model, params
        self.started = callbacks.now()
        self.hidden: dict = {}
        self.call_id = None
        self._done = False

    def ended(self, response, error=None) -> None:
        from dheera_ai.sdk import callbacks

        if self._done:
            return
        self._done = True
        kwargs = callbacks.call_kwargs(self.call_type, self.model, self.params, self.hidden, self.call_id)
        if error is None:
            callbacks.succeeded(kwargs, response, self.started, callbacks.now())
        else:
            callbacks.failed(kwargs, error, self.started, callbacks.now())


def _carry_out(call_type, model, params, result, chunk, files, pin_response_id, deployment, routed, report=None):
    options, body = split_options(dict(params))
    if routed is None and deployment is None and any(options.get(k) is not None for k in ROUTING_OPTIONS):
        routed = _per_call_router(model, options)
        model = _group_name(model, options)
    if routed is None:
        deployment = deployment or deployment_for(model, options)
    extra = options.get("extra_body") or {}
    gateway_params = {k: options.get(k, extra.get(k)) for k in _GATEWAY_PARAMS}
    if pin_response_id is not None and deployment is not None:
        body[pin_response_id] = _upstream_response_id(body[pin_response_id], deployment)
    body["model"] = deployment.model if deployment is not None else model
    call = Call(call_id=ids.call_id(), call_type=call_type, model=model, body=body,
                stream=bool(body.get("stream")) and chunk is not None, principal=_PRINCIPAL,
                gateway_params={k: v for k, v in gateway_params.items() if v is not None})
    if report is not None:
        report.call_id = call.call_id
    if dheera_ai.callbacks or _tracing is not None:
        _follow_callbacks(engine())
    with uploads(files) as call.files:
        try:
            if routed is not None:
                reply = routed.pipeline.run(call)
                deployment = call.deployment
            else:
                reply = engine().pipeline.run_on(call, deployment)
        except DheeraAIError as error:
            if call.deployment is not None:
                _attributed(error, call.deployment)
            raise
    hidden = {"model_id": deployment.id, "custom_llm_provider": deployment.provider, "call_id": call.call_id,
              "api_base": deployment.params.get("api_base"), "response_cost": 0.0}
    if report is not None:
        report.hidden = hidden

    def priced(usage):
        hidden["response_cost"] = prices().cost(deployment, usage, call.body).amount

    if call_type == "audio_speech":
        made = []  # the BinaryResponse, for the success callbacks once its bytes are all read
        answer = objects.BinaryResponse(_priced_at_end(reply, priced, report and (lambda: report.ended(made[0]))),
                                        reply.content_type, hidden)
        made.append(answer)
        return answer
    if reply.stream is not None and chunk is not None:
        def finished(stream):
            priced(reply.usage)
            stream.usage = _usage(reply.usage)
            if report is not None:
                report.ended(stream)
        chunks = _chunks(reply, chunk, deployment)
        return objects.Stream(_reported(chunks, report) if report is not None else chunks, hidden, finished)
    priced(reply.usage)
    if reply.data is not None:
        answer = result(reply.data, hidden)
    else:
        content = reply.body if reply.body is not None else b"".join(reply.stream or ())
        if not reply.content_type.startswith("application/json"):
            answer = content.decode("utf-8", "replace")  # a transcript asked for as text, srt or vtt
        else:
            import orjson

            answer = result(orjson.loads(content), hidden)
    if report is not None:
        report.ended(answer)
    return answer


def _group_name(model: str, options: dict) -> str:
    """The model group a per-call router gives the call's own model (its deployment's name)."""
    return f"{options['custom_llm_provider']}/{model or ''}" if options.get("custom_llm_provider") else model


def follow_up(call_type: str, response_id: str, params: dict, result=objects.Result):
    """GET or DELETE of a stored response, on the deployment that made it: the one its id names
    (made by this process), or the one `model` (or `custom_llm_provider`) and the options describe."""
    from dheera_ai import response_ids

    model = params.pop("model", None)
    deployment = None
    if model is None and params.get("custom_llm_provider"):
        model = ""  # the provider alone says where (`custom_llm_provider="azure"`, with api_base)
    if model is None:
        pinned = response_ids.decode(response_id)
        deployment = _known.get(pinned[0]) if pinned else None
        if deployment is None:
            raise BadRequestError(f"Response '{response_id}' was not made by this process: say where it lives with "
                                  "model= (or custom_llm_provider=) and its api_base/api_key.", param="model",
                                  code="unknown_response")
        model = deployment.model_name
    return run(call_type, model, {**params, "response_id": response_id}, result, pin_response_id="response_id",
               deployment=deployment)


def _upstream_response_id(response_id, deployment: Deployment):
    """A response id this process handed out names its deployment; the upstream knows its own part."""
    from dheera_ai import response_ids

    pinned = response_ids.decode(response_id)
    return pinned[1] if pinned and pinned[0] == deployment.id else response_id


def _attributed(error: DheeraAIError, deployment: Deployment) -> DheeraAIError:
    if error.provider is None:
        error.provider = deployment.provider
    return error


def _usage(usage):
    if usage is None:
        return None
    return objects.OpenAIObject({"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                                 "total_tokens": usage.total_tokens, **usage.details})


def _priced_at_end(reply, priced, ended=None):
    yield from reply.stream
    priced(reply.usage)
    if ended is not None:
        ended()


def _reported(chunks, report: _Report):
    """The chunks; an error that breaks the stream goes to the failure callbacks."""
    try:
        yield from chunks
    except DheeraAIError as error:
        report.ended(None, error)
        raise


def _chunks(reply, chunk, deployment: Deployment):
    """A streamed answer's events as chunk objects; an error event is raised as its error class."""
    import orjson

    from dheera_ai.sse import parse_events

    try:
        for name, data in parse_events(reply.stream):
            try:
                payload = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue  # [DONE] (read on, so the call is recorded as finished) or a keep-alive
            if not isinstance(payload, dict):
                continue
            if isinstance(payload.get("error"), dict) and "choices" not in payload:
                raise _attributed(error_from_answer(payload["error"]), deployment)
            if name == "error" or payload.get("type") == "error":  # the Responses API's error event
                raise _attributed(error_from_answer({**payload, "type": None}), deployment)
            yield chunk(payload)
    finally:
        close = getattr(reply.stream, "close", None)
        if close is not None:
            close()
