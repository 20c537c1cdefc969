"""The engine: config, plugins, providers, router and pipeline, assembled once."""

from __future__ import annotations

import dataclasses
import os

from dheera_ai import http, redact
from dheera_ai.config import Config, ConfigError, build_config
from dheera_ai.guardrails import GuardrailKinds
from dheera_ai.guardrails.config import build_guardrails
from dheera_ai.pipeline import Pipeline
from dheera_ai.plugin_manager import get_plugin_manager
from dheera_ai.providers import ProviderRegistry
from dheera_ai.router import Router
from dheera_ai.router.cooldowns import cooldown_store


class Engine:
    """Everything one gateway (or one SDK client) needs to carry out calls."""

    def __init__(self, config: Config, plugin_manager, providers: ProviderRegistry, guardrails=(),
                 guardrail_kinds: GuardrailKinds | None = None):
        self.config = config
        # Configured secrets are masked by value in every error and log line, whatever they look like.
        redact.remember_secrets(redact.secret_values(
            [d.params for d in config.deployments], config.general_settings,
            {name: value for name, value in os.environ.items() if redact.is_secret_name(name)}))
        self.plugin_manager = plugin_manager
        self.providers = providers
        self.router = Router(config.deployments, config.router_settings, cooldown_store(config),
                             provider_names=providers.names())
        # Every upstream the config names keeps its connections, however many there are.
        http.expect_hosts(len({d.params.get("api_base") for d in config.deployments}))
        self.pipeline = Pipeline(plugin_manager, config, self.router, providers)
        if guardrails:  # registered only when configured: a gateway without guardrails runs none of their hooks
            from dheera_ai.guardrails.plugin import GuardrailsPlugin

            phases = GuardrailsPlugin(guardrails, guardrail_kinds, self.pipeline)
            plugin_manager.register(phases, name="guardrail-phases")

    def keep_responses_in(self, store) -> None:
        """Where translated Responses wait for their follow-ups (`dheera_ai.response_store`'s
        interface); by default in this process, the gateway gives its shared state store."""
        self.plugin_manager.get_plugin("default-dispatch").bridges.store = store

    @classmethod
    def from_raw_config(cls, raw: dict, *, source: str | None = None, load_entrypoints: bool = True,
                        plugins=()) -> "Engine":
        """Build from a parsed config document: load plugins (including the config's
        `plugins:` modules), register providers, then validate the config against them."""
        modules = raw.get("plugins") or []
        if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
            raise ConfigError(["plugins: must be a list of module paths"], source)
        try:
            pm = get_plugin_manager(load_entrypoints=load_entrypoints, plugins=plugins, modules=modules)
        except ImportError as e:
            raise ConfigError([f"plugins: cannot import {e.name or e}"], source) from None
        providers = ProviderRegistry()
        pm.hook.dheera_ai_register_providers(register=providers.register)
        config = build_config(raw, providers.names(), source=source)
        kinds = GuardrailKinds()
        pm.hook.dheera_ai_register_guardrails(register=kinds.register)
        guardrails, problems = build_guardrails(raw.get("guardrails"), kinds)
        if problems:
            raise ConfigError(problems, source)
        config = dataclasses.replace(config, guardrails=tuple(g.name for g in guardrails))
        return cls(config, pm, providers, guardrails, kinds)
