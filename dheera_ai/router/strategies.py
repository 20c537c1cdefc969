"""Routing strategies: which deployment of a group serves the next attempt.

Every strategy answers `pick(usable)` in O(1) or O(log n) in the common case (nothing cooling
down, nothing excluded), so choosing stays flat as a group grows; `usable` is None then. When
some deployments are unusable a few random probes come first and a linear scan is the last resort.
State (in-flight calls, latency, usage) lives in one `DeploymentStats` per router, keyed by
deployment id, and is per worker process: it steers load, it is not a quota. The quota, a
deployment's `rpm`/`tpm` under usage- and latency-based routing, is counted where every worker
and instance sees it (`DeploymentLimits`, given by the gateway); a deployment those counters
found full is marked here until its minute ends, so this worker steers around it too.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
import threading
import time

from dheera_ai.types import Deployment

PROBES = 3  # random tries before scanning for a usable deployment
SMALL_GROUP = 16  # up to this size a strategy may simply look at every deployment


class DeploymentStats:
    """What the router has seen of each deployment in this process."""

    def __init__(self, clock=time.time):
        self.clock = clock  # wall-clock seconds; usage is counted per calendar minute
        self.lock = threading.Lock()
        self.in_flight: dict[str, int] = {}
        self.latency: dict[str, float] = {}  # exponentially weighted seconds
        self.usage: dict[str, list] = {}  # id -> [minute, requests, tokens]
        self.full: dict[str, int] = {}  # id -> the minute the shared counters found it at its limit
        self._listeners: dict[str, list] = {}

    def listen(self, deployment_id: str, listener) -> None:
        self._listeners.setdefault(deployment_id, []).append(listener)

    def started(self, deployment: Deployment) -> None:
        with self.lock:
            count = self.in_flight.get(deployment.id, 0)
            self.in_flight[deployment.id] = count + 1
            window = self._window(deployment.id)
            window[1] += 1
            for listener in self._listeners.get(deployment.id, ()):
                listener.moved(deployment, count, count + 1)

    def finished(self, deployment: Deployment, seconds: float | None, tokens: int = 0) -> None:
        with self.lock:
            count = self.in_flight.get(deployment.id, 0)
            if count > 0:
                self.in_flight[deployment.id] = count - 1
                for listener in self._listeners.get(deployment.id, ()):
                    listener.moved(deployment, count, count - 1)
            if tokens:
                self._window(deployment.id)[2] += tokens
            if seconds is not None:
                previous = self.latency.get(deployment.id)
                self.latency[deployment.id] = seconds if previous is None else 0.7 * previous + 0.3 * seconds
                for listener in self._listeners.get(deployment.id, ()):
                    listener.measured()

    def _window(self, deployment_id: str) -> list:
        minute = int(self.clock() // 60)
        window = self.usage.get(deployment_id)
        if window is None or window[0] != minute:
            window = self.usage[deployment_id] = [minute, 0, 0]
        return window

    def mark_full(self, deployment: Deployment) -> None:
        self.full[deployment.id] = int(self.clock() // 60)

    def is_full(self, deployment: Deployment) -> bool:
        return bool(self.full) and self.full.get(deployment.id) == int(self.clock() // 60)

    def utilisation(self, deployment: Deployment) -> float:
        """The larger of requests/rpm and tokens/tpm this minute; 0 without limits."""
        if self.is_full(deployment):
            return 1.0
        window = self.usage.get(deployment.id)
        if window is None or window[0] != int(self.clock() // 60):
            return 0.0
        rpm, tpm = deployment.params.get("rpm"), deployment.params.get("tpm")
        return max(window[1] / rpm if rpm else 0.0, window[2] / tpm if tpm else 0.0)


class DeploymentLimits:
    """Where deployments' `rpm`/`tpm` are counted for the strategies that keep to them. This
    default counts nothing (the per-worker stats alone steer, as in the SDK); the gateway gives
    counters shared by its workers and instances (`proxy_app.limits.SharedDeploymentLimits`)."""

    def admit(self, deployment: Deployment, now: float) -> bool:
        """Count one request to `deployment` this minute if it has room (rpm and tpm); False if not."""
        return True

    def used(self, deployment: Deployment, tokens: int, now: float) -> None:
        """Add the tokens a finished call used to the deployment's minute."""


class Strategy:
    # Whether a deployment's rpm/tpm is a limit this strategy keeps to (else just a weight).
    keeps_limits = False

    def __init__(self, deployments: list[Deployment], stats: DeploymentStats, settings: dict):
        self.deployments = deployments
        self.stats = stats
        self.settings = settings

    def pick(self, usable) -> Deployment | None:
        raise NotImplementedError

    def _scan(self, usable, key=None) -> Deployment | None:
        pool = [d for d in self.deployments if usable is None or usable(d)]
        if not pool:
            return None
        return min(pool, key=key) if key else random.choice(pool)

    def moved(self, deployment, old, new):
        """An in-flight count changed (strategies that track it override this)."""

    def measured(self):
        """A latency was recorded."""


class SimpleShuffle(Strategy):
    """Weighted random: `weight`, else `rpm`, else `tpm`, else equal shares."""

    def __init__(self, deployments, stats, settings):
        super().__init__(deployments, stats, settings)
        weights = [_weight(d) for d in deployments]
        if not any(weights):
            weights = [1.0] * len(deployments)
        self._weights = weights
        self._cumulative = list(itertools.accumulate(weights))

    def _draw(self) -> Deployment:
        point = random.random() * self._cumulative[-1]
        return self.deployments[min(bisect.bisect_right(self._cumulative, point), len(self.deployments) - 1)]

    def pick(self, usable):
        if len(self.deployments) == 1:
            only = self.deployments[0]
            return only if usable is None or usable(only) else None
        for _ in range(PROBES if usable is not None else 1):
            chosen = self._draw()
            if usable is None or usable(chosen):
                return chosen
        pool = [(d, w) for d, w in zip(self.deployments, self._weights, strict=True) if usable(d) and w > 0]
        if not pool:
            return None
        return random.choices([d for d, _ in pool], weights=[w for _, w in pool])[0]


class LeastBusy(Strategy):
    """Fewest in-flight calls; ties broken at random. Buckets by count keep picking O(1)."""

    def __init__(self, deployments, stats, settings):
        super().__init__(deployments, stats, settings)
        self._buckets: dict[int, _IndexedSet] = {}
        for d in deployments:
            self._bucket(stats.in_flight.get(d.id, 0)).add(d)
            stats.listen(d.id, self)

    def _bucket(self, count: int) -> _IndexedSet:
        bucket = self._buckets.get(count)
        if bucket is None:
            bucket = self._buckets[count] = _IndexedSet()
        return bucket

    def moved(self, deployment, old, new):
        self._bucket(old).remove(deployment)
        if not self._buckets[old]:
            del self._buckets[old]
        self._bucket(new).add(deployment)

    def pick(self, usable):
        for count in sorted(self._buckets):  # distinct counts: a handful, not n
            bucket = self._buckets.get(count)
            if not bucket:  # emptied by another thread since
                continue
            for _ in range(PROBES):
                chosen = bucket.random()
                if chosen is not None and (usable is None or usable(chosen)):
                    return chosen
            found = [d for d in bucket.items if usable is None or usable(d)]
            if found:
                return random.choice(found)
        return None


class LatencyBased(Strategy):
    """Lowest recent latency (time to answer, or to the first chunk of a stream); a deployment
    never measured goes first, and a small share of calls explores at random. Keeps to each
    deployment's `rpm`/`tpm`, as LiteLLM's latency routing does."""

    keeps_limits = True
    REFRESH = 0.1  # seconds between re-rankings of a large group

    def __init__(self, deployments, stats, settings):
        super().__init__(deployments, stats, settings)
        self.exploration = settings.get("latency_exploration", 0.05)
        self._ranking = list(deployments)
        random.shuffle(self._ranking)
        self._ranked_at = 0.0
        self._dirty = False
        for d in deployments:
            stats.listen(d.id, self)

    def measured(self):
        self._dirty = True

    def pick(self, usable):
        if self.exploration and random.random() < self.exploration:
            for _ in range(PROBES):
                chosen = random.choice(self.deployments)
                if usable is None or usable(chosen):
                    return chosen
        now = time.monotonic()
        if self._dirty and (len(self.deployments) <= SMALL_GROUP or now - self._ranked_at > self.REFRESH):
            latency = self.stats.latency
            self._ranking = sorted(self.deployments, key=lambda d: (latency.get(d.id, 0.0), random.random()))
            self._ranked_at, self._dirty = now, False
        for chosen in self._ranking:
            if usable is None or usable(chosen):
                return chosen
        return None


class UsageBased(Strategy):
    """Stay under each deployment's `rpm`/`tpm` this minute: the least used of two random
    deployments (all of them in a small group); one at its limit is never chosen."""

    keeps_limits = True

    def pick(self, usable):
        stats = self.stats

        def open_(d):
            return (usable is None or usable(d)) and stats.utilisation(d) < 1.0

        if len(self.deployments) <= SMALL_GROUP:
            pool = [d for d in self.deployments if open_(d)]
            return min(pool, key=lambda d: (stats.utilisation(d), random.random())) if pool else None
        for _ in range(PROBES):
            a, b = random.sample(self.deployments, 2)
            candidates = [d for d in (a, b) if open_(d)]
            if candidates:
                return min(candidates, key=stats.utilisation)
        return self._scan(open_, key=stats.utilisation)


class CostBased(Strategy):
    """Cheapest first, by `input_cost_per_token + output_cost_per_token` in `model_info` (or the
    params); equal prices share the load; a deployment with no price goes last."""

    def __init__(self, deployments, stats, settings):
        super().__init__(deployments, stats, settings)
        by_cost: dict[float, list] = {}
        for d in deployments:
            by_cost.setdefault(cost_per_token(d), []).append(d)
        self._tiers = [by_cost[c] for c in sorted(by_cost)]

    def pick(self, usable):
        for tier in self._tiers:
            for _ in range(PROBES):
                chosen = random.choice(tier)
                if usable is None or usable(chosen):
                    return chosen
            found = [d for d in tier if usable(d)]
            if found:
                return random.choice(found)
        return None


STRATEGIES = {
    "simple-shuffle": SimpleShuffle,
    "least-busy": LeastBusy,
    "latency-based-routing": LatencyBased,
    "usage-based-routing": UsageBased,
    "cost-based-routing": CostBased,
}


def cost_per_token(deployment: Deployment) -> float:
    total = 0.0
    for key in ("input_cost_per_token", "output_cost_per_token"):
        value = deployment.model_info.get(key, deployment.params.get(key))
        if value is None:
            return math.inf
        total += float(value)
    return total


def _weight(deployment: Deployment) -> float:
    for key in ("weight", "rpm", "tpm"):
        value = deployment.params.get(key)
        if value:
            return float(value)
    return 0.0


class _IndexedSet:
    """A set with O(1) add, remove and random element."""

    def __init__(self):
        self.items: list = []
        self._index: dict[str, int] = {}

    def __bool__(self):
        return bool(self.items)

    def add(self, d):
        if d.id not in self._index:
            self._index[d.id] = len(self.items)
            self.items.append(d)

    def remove(self, d):
        i = self._index.pop(d.id, None)
        if i is None:
            return
        last = self.items.pop()
        if i < len(self.items):
            self.items[i] = last
            self._index[last.id] = i

    def random(self):
        return random.choice(self.items) if self.items else None
