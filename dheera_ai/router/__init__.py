"""Turning a requested model name into the deployment that serves this attempt.

The router knows the model groups (deployments sharing a `model_name`), picks one with the
configured strategy (`strategies`), leaves out deployments that are cooling down (`cooldowns`)
and, with tag filtering on, those the request's tags do not select. What happens after a failure
(retry, fallback) is `policy`; the pipeline runs the attempts.
"""

from __future__ import annotations

import dataclasses
import math
import time

from dheera_ai.config import load_router_settings
from dheera_ai.errors import BadRequestError, DheeraAIError, NotFoundError, RateLimitError
from dheera_ai.router import policy
from dheera_ai.router.cooldowns import CooldownStore, MemoryCooldowns
from dheera_ai.router.strategies import STRATEGIES, DeploymentLimits, DeploymentStats
from dheera_ai.router.wildcards import RESOLVED_KEPT, Wildcards, aliases, is_pattern
from dheera_ai.types import Call, Deployment

DEFAULT_TAG = "default"
# A failure counts as at least this slow for latency-based routing, so a deployment that fails
# fast does not look fast; exploration measures it again later.
FAILURE_LATENCY = 5.0
_VIEW_CACHE = 256  # tag combinations remembered per group


class ModelGroup:
    """The deployments that share a `model_name`, and the strategy that chooses among them."""

    def __init__(self, name: str, deployments: list[Deployment], stats: DeploymentStats, settings: dict,
                 strategy: str | None = None):
        self.name = name
        self.deployments = deployments
        self._stats = stats
        self._settings = settings
        self.strategy = STRATEGIES[strategy or settings["routing_strategy"]](deployments, stats, settings)
        self._views: dict[frozenset, ModelGroup | None] = {}
        self._untagged = None
        self._known_tags = frozenset().union(*(_tags(d) for d in deployments))

    def for_tags(self, tags) -> ModelGroup | None:
        """The part of the group that may serve a request with these tags (tag filtering).

        Tagged requests go to deployments sharing a tag, else to the untagged/`default` ones; an
        untagged request goes to the untagged/`default` ones, else to any.
        """
        # Tags no deployment carries change nothing, so they do not make new views either.
        key = frozenset(tags or ()) & self._known_tags
        if key in self._views:
            return self._views[key]
        if self._untagged is None:
            fallback = [d for d in self.deployments if not _tags(d) or DEFAULT_TAG in _tags(d)]
            self._untagged = self._view(fallback, cached=True) if fallback else None
        if not key:
            view = self._untagged or self
        else:
            matching = [d for d in self.deployments if key & _tags(d)]
            view = self._view(matching, cached=len(self._views) < _VIEW_CACHE) if matching else self._untagged
        if len(self._views) < _VIEW_CACHE:
            self._views[key] = view
        return view

    def _view(self, members, cached: bool):
        if len(members) == len(self.deployments):
            return self
        # Past the cache, a one-off view must not subscribe to the stats: a stateless shuffle.
        return ModelGroup(self.name, members, self._stats, self._settings,
                          strategy=None if cached else "simple-shuffle")


def _has_limits(deployment: Deployment) -> bool:
    return bool(deployment.params.get("rpm") or deployment.params.get("tpm"))


def _tags(deployment: Deployment) -> frozenset:
    return frozenset(deployment.params.get("tags") or ())


class Router:
    """Model groups, the routing settings, and the state (stats, cooldowns) behind choosing."""

    def __init__(self, deployments: list[Deployment], settings: dict | None = None,
                 cooldowns: CooldownStore | None = None, provider_names=()):
        if settings is None:
            settings = load_router_settings({}, {d.model_name for d in deployments})
        self.settings = settings
        self.cooldowns = cooldowns or MemoryCooldowns()
        self.stats = DeploymentStats()
        self.limits = DeploymentLimits()
        self.provider_names = provider_names
        self.set_deployments(deployments)

    def set_deployments(self, deployments: list[Deployment]) -> None:
        """Serve this model list from now on (models added or removed at run time); stats and
        cooldowns stay. Calls already routed keep the group they were given."""
        by_name: dict[str, list[Deployment]] = {}
        for deployment in deployments:
            by_name.setdefault(deployment.model_name, []).append(self._with_defaults(deployment))
        # Configured names are the groups; patterned ones (`*`, `openai/*`) make groups on demand.
        self.groups = {name: ModelGroup(name, members, self.stats, self.settings)
                       for name, members in by_name.items() if not is_pattern(name)}
        self.wildcards = Wildcards({n: m for n, m in by_name.items() if is_pattern(n)}, self.provider_names)
        self.aliases = aliases(self.settings)
        self._resolved: dict[str, ModelGroup] = {}
        self._by_id = {d.id: d for group in self.groups.values() for d in group.deployments}

    def _with_defaults(self, deployment: Deployment) -> Deployment:
        """Router-wide `timeout`/`stream_timeout` become the deployment's own unless it has one."""
        missing = {k: self.settings[k] for k in ("timeout", "stream_timeout")
                   if self.settings.get(k) is not None and deployment.params.get(k) is None}
        return dataclasses.replace(deployment, params={**deployment.params, **missing}) if missing else deployment

    def count_limits_with(self, limits: DeploymentLimits) -> None:
        """Count deployments' rpm/tpm with `limits` (the gateway's counters, shared by its workers
        and instances) instead of not at all."""
        self.limits = limits

    def model_names(self) -> list[str]:
        """The configured model groups and the aliases that are not hidden (patterns aside)."""
        return list(self.groups) + [a for a, (_, hidden) in self.aliases.items() if not hidden and a not in self.groups]

    def find(self, deployment_id: str) -> Deployment:
        """The deployment with this id; a 404 once the config no longer has it."""
        deployment = self._by_id.get(deployment_id)
        if deployment is None:
            deployment = next((d for g in self._resolved.values() for d in g.deployments if d.id == deployment_id),
                              None)
        if deployment is None:
            raise NotFoundError("The deployment that created this object is no longer configured.",
                                code="deployment_not_found")
        return deployment

    def group(self, name: str) -> ModelGroup:
        """The group serving `name`: configured, else an alias's target, else a pattern's match."""
        group = self.groups.get(name) or self._resolved.get(name)
        if group is not None:
            return group
        if name in self.aliases:
            return self.group(self.aliases[name][0])
        members = self.wildcards.resolve(name)
        if members is None:
            valid = sorted(self.model_names() + self.wildcards.patterns)
            raise BadRequestError(
                f"Invalid model name '{name}'. Valid models: {', '.join(valid) or '(none configured)'}",
                param="model", code="model_not_found")
        if len(self._resolved) >= RESOLVED_KEPT:  # names a caller invents must not grow memory
            self._resolved.clear()
        group = self._resolved[name] = ModelGroup(name, [self._with_defaults(d) for d in members], self.stats,
                                                  self.settings)
        return group

    def choose(self, call: Call, group_name: str | None = None, exclude=frozenset()) -> Deployment:
        """The deployment for the next attempt of `call` in `group_name` (default: the call's model)."""
        if call.deployment_id and group_name in (None, call.model):
            # A follow-up (GET/DELETE of a stored response, previous_response_id) can only be
            # answered by the deployment that created the object: no choice, no fallback group.
            return self.find(call.deployment_id)
        group = self.group(group_name or call.model)
        if self.settings.get("enable_tag_filtering"):
            view = group.for_tags(call.tags)
            if view is None:
                raise BadRequestError(f"No deployment of model '{group.name}' serves the tags "
                                      f"{', '.join(call.tags)}.", param="tags", code="no_deployment_for_tags")
        else:
            view = group
        cooling = self.cooldowns.cooling() if len(group.deployments) > 1 else {}
        keeps_limits = view.strategy.keeps_limits
        full = self.stats.is_full if keeps_limits and self.stats.full else None
        usable = None
        if exclude or cooling or full:
            now = time.time()

            def usable(d):
                return d.id not in exclude and cooling.get(d.id, 0.0) <= now and not (full and full(d))

        chosen = view.strategy.pick(usable)
        if chosen is not None and keeps_limits:
            chosen = self._admitted(view, chosen, usable)
        if chosen is None:
            raise self._none_left(view, cooling, exclude)
        return chosen

    def _admitted(self, view: ModelGroup, chosen: Deployment, usable) -> Deployment | None:
        """The chosen deployment once its rpm/tpm counters took the call (exact across workers and
        instances), else the strategy's next choice; None when every one is full."""
        while chosen is not None:
            if not _has_limits(chosen) or self.limits.admit(chosen, self.stats.clock()):
                return chosen
            self.stats.mark_full(chosen)  # until its minute ends, on this worker too

            def usable(d, before=usable):
                return not self.stats.is_full(d) and (before is None or before(d))

            chosen = view.strategy.pick(usable)
        return None

    def _none_left(self, view: ModelGroup, cooling: dict, exclude) -> DheeraAIError:
        now = time.time()
        resting = [cooling[d.id] - now for d in view.deployments if cooling.get(d.id, 0.0) > now]
        if resting and len(resting) + len([d for d in view.deployments if d.id in exclude]) >= len(view.deployments):
            wait = max(1, math.ceil(min(resting)))
            return RateLimitError(
                f"Every deployment of model '{view.name}' is cooling down after repeated failures; "
                f"retry in {wait}s.", code="all_deployments_cooling_down", headers={"Retry-After": str(wait)})
        at_limit = [self.stats.utilisation(d) >= 1.0 for d in view.deployments]
        if view.strategy.keeps_limits and any(at_limit) and all(
                full or d.id in exclude for d, full in zip(view.deployments, at_limit, strict=True)):
            wait = max(1, 60 - int(self.stats.clock() % 60))
            return RateLimitError(f"Every deployment of model '{view.name}' is at its rpm/tpm limit this minute.",
                                  code="all_deployments_at_limit", headers={"Retry-After": str(wait)})
        return BadRequestError(f"No deployment of model '{view.name}' may serve this request.", param="model",
                               code="no_deployment_available")

    # -- what the pipeline reports --------------------------------------------------------------
    def started(self, deployment: Deployment) -> None:
        self.stats.started(deployment)

    def finished(self, deployment: Deployment, seconds: float | None, tokens: int = 0) -> None:
        self.stats.finished(deployment, seconds, tokens)
        if tokens and deployment.params.get("tpm") and self._keeps_limits(deployment):
            self.limits.used(deployment, tokens, self.stats.clock())

    def _keeps_limits(self, deployment: Deployment) -> bool:
        group = self.groups.get(deployment.model_name)
        return group is not None and group.strategy.keeps_limits

    def failed(self, deployment: Deployment, error: DheeraAIError, count: bool = True,
               seconds: float | None = None) -> bool:
        """Count a failure toward the deployment's cooldown; True if it now rests. A deployment
        alone in its group never rests (that would only turn its errors into 429s); `count` is
        False when the attempt used a client's credentials, which say nothing about the deployment."""
        against = count and policy.counts_against(error)
        self.stats.finished(deployment, max(seconds or 0.0, FAILURE_LATENCY) if against else None)
        group = self.groups.get(deployment.model_name)
        if not against or group is None or len(group.deployments) < 2:
            return False
        return self.cooldowns.record_failure(deployment.id, self.settings["allowed_fails"],
                                             self.settings["cooldown_time"])
