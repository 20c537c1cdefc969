"""The app factory: config and engine built once per worker, blueprints registered."""

from __future__ import annotations

import logging
import os

from flask import Flask

from dheera_ai.config import read_config_file
from dheera_ai.engine import Engine
from plugins import observability
from proxy_app import body_deadline, calls, errors, metrics, openapi, ui
from proxy_app.batches.runner import BatchRunner
from proxy_app.blueprints import (
    audio,
    azure,
    batches,
    chat,
    completions,
    embeddings,
    files,
    health,
    images,
    keys,
    messages,
    model_admin,
    models,
    moderations,
    passthrough,
    rerank,
    responses,
    spend,
    teams,
    users,
)
from proxy_app.limits import SharedDeploymentLimits
from proxy_app.live_models import LiveModels
from proxy_app.logs import configure_logging
from proxy_app.state import State
from proxy_app.virtual_keys import access_groups

log = logging.getLogger("dheera_ai.config")
DEFAULT_CONFIG = os.path.join("conf", "config.yaml")


def quick_start_config(model: str) -> dict:
    """`dheera_ai --model openai/gpt-4o-mini`: that one model, callable by its full or short name."""
    names = [model] + ([model.split("/", 1)[1]] if "/" in model else [])
    return {"model_list": [{"model_name": name, "dheera_ai_params": {"model": model}} for name in names]}


def load_raw_config(test_config=None) -> tuple[dict, str | None]:
    """The config document: given, or from DHEERA_AI_MODEL / DHEERA_AI_CONFIG / conf/config.yaml."""
    if test_config is not None:
        if isinstance(test_config, str):
            return read_config_file(test_config), os.path.abspath(test_config)
        return dict(test_config), None
    if os.environ.get("DHEERA_AI_MODEL"):
        return quick_start_config(os.environ["DHEERA_AI_MODEL"]), None
    path = os.environ.get("DHEERA_AI_CONFIG") or DEFAULT_CONFIG
    return read_config_file(path), os.path.abspath(path)


def create_app(test_config=None, load_entrypoints=True, plugins=()) -> Flask:
    """Build the gateway. `test_config` is a config dict or a path; tests pass
    `load_entrypoints=False` and the plugins they want."""
    raw, source = load_raw_config(test_config)
    gateway_metrics = metrics.Metrics()
    engine = Engine.from_raw_config(raw, source=source, load_entrypoints=load_entrypoints,
                                    plugins=[*plugins, gateway_metrics])
    gateway_metrics.configured = {d.id: d.model_name for d in engine.config.deployments}
    # Built here, in the worker, after gunicorn forked: nothing connects before this point.
    state = State(engine.config)
    state.metrics = gateway_metrics
    state.try_ensure_schema()
    engine.plugin_manager.register(state.auth, name="virtual-keys")
    engine.plugin_manager.register(state.spend, name="spend")
    if engine.config.dheera_ai_settings.get("cache"):
        from plugins.cache import response_cache  # imported only by a gateway that caches

        state.response_cache = response_cache(engine.config, engine.pipeline)
        engine.plugin_manager.register(state.response_cache, name="response-cache")
    state.spend.on_row_dropped = gateway_metrics.spend_row_dropped
    state.spend.start()
    engine.keep_responses_in(state.responses)
    engine.router.count_limits_with(SharedDeploymentLimits(state.spend.limiter))
    state.models = LiveModels(engine, state.store)
    state.models.on_change = lambda deployments: models_changed(state, deployments)
    state.models.start()
    state.batch_runner = BatchRunner(engine, state, engine.config.general_settings)
    state.batch_runner.start()
    # Exporters too are built here, in the worker (their threads and connections are its own).
    observability.start(engine.plugin_manager, engine.config, on_dropped=gateway_metrics.callback_dropped_one)

    app = Flask(__name__, static_folder=None)  # no /static route: only the UI serves files, under /ui/static
    app.config["MAX_CONTENT_LENGTH"] = engine.config.max_request_bytes
    app.config["LITELLM_HEADERS"] = engine.config.general_settings["litellm_compatible_headers"]
    app.json.sort_keys = False
    app.extensions["dheera_ai"] = engine
    app.extensions["dheera_ai.metrics"] = gateway_metrics
    app.extensions["dheera_ai_state"] = state
    if body_deadline.gevent_running():
        settings = engine.config.general_settings
        app.wsgi_app = body_deadline.BodyDeadline(app.wsgi_app, settings["request_body_timeout"],
                                                  settings["max_slow_body_connections"])
    errors.register(app)
    app.before_request(calls.start_request)
    app.after_request(calls.add_call_headers)
    for blueprint in (chat.bp, completions.bp, embeddings.bp, images.bp, audio.bp, moderations.bp, rerank.bp,
                      responses.bp, messages.bp, files.bp, batches.bp, azure.bp, models.bp, health.bp, metrics.bp,
                      keys.bp, users.bp, teams.bp, spend.bp, model_admin.bp, openapi.bp, ui.bp):
        app.register_blueprint(blueprint)
    app.register_blueprint(passthrough.blueprint(engine.config))
    configure_logging(debug=bool(os.environ.get("DHEERA_AI_DEBUG")))
    level = logging.DEBUG if os.environ.get("DHEERA_AI_CONFIG_WARNED") else logging.WARNING
    for warning in engine.config.warnings:
        log.log(level, "config: %s", warning)
    return app


def models_changed(state, deployments) -> None:
    """A model was added, changed or removed: access groups and prices follow."""
    state.auth.groups = access_groups(deployments)
    state.auth.invalidate(broadcast=False)  # each worker learns of the change itself
    state.spend.prices.forget()
