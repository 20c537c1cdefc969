"""Prometheus metrics: a plugin that counts every call, and the `/metrics` route.

Under gunicorn every worker writes its samples to files in PROMETHEUS_MULTIPROC_DIR (set by the
master before forking, see gunicorn_settings), and `/metrics` adds them up across workers.
Labels use the deployment's model group, never the raw requested name: a client must not be
able to grow the label set by sending random model names.

A call adds to this worker's pending counts (one lock, a few dict updates); they are written to
prometheus_client's samples at most a second later (by a thread of the worker, and before this
worker answers a scrape). Writing a sample costs a lock, a pid check and an mmap write (~1.2 us),
and a call touched a dozen: 8 % of a cache hit's instructions. So another worker's scrape sees counts up to
a second old, and a worker killed outright (SIGKILL) loses its last second of counts, never a
spend row: those have their own spool.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from bisect import bisect_left

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from dheera_ai import hookimpl
from dheera_ai.errors import PermissionDeniedError
from proxy_app import calls

log = logging.getLogger("dheera_ai.metrics")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
FLUSH_SECONDS = 1.0

bp = Blueprint("metrics", __name__)


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class Metrics:
    """The gateway's metrics, registered as a plugin; one instance per app."""

    def __init__(self):
        # Deployment id -> model group, of the config's deployments: the only names labels take.
        self.configured: dict[str, str] = {}
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("dheera_ai_requests", "Model calls answered, by outcome",
                                ["model_group", "deployment", "status"], registry=r)
        self.errors = Counter("dheera_ai_request_errors", "Model calls that failed, by error class",
                              ["model_group", "error_type"], registry=r)
        self.latency = Histogram("dheera_ai_request_latency_seconds", "Whole call, as the client saw it",
                                 ["model_group"], buckets=LATENCY_BUCKETS, registry=r)
        self.overhead = Histogram("dheera_ai_overhead_seconds", "Time in the gateway, the upstream's excluded "
                                  "(plain answers)", ["model_group"], buckets=OVERHEAD_BUCKETS, registry=r)
        self.tokens = Counter("dheera_ai_tokens", "Tokens the upstream reported", ["model_group", "kind"], registry=r)
        self.in_flight = Gauge("dheera_ai_in_flight_requests", "Model calls under way",
                               registry=r, multiprocess_mode="livesum")
        self.streams_cut = Counter("dheera_ai_streams_cut", "Streams the client left before the end",
                                   ["model_group"], registry=r)
        self.spend = Counter("dheera_ai_spend_usd", "What calls cost in USD, as spend logging priced them",
                             ["model_group"], registry=r)
        self.cache_requests = Counter("dheera_ai_cache_requests", "Calls the response cache looked up, by result "
                                      "(hit, miss, partial: some embedding inputs)", ["result"], registry=r)
        self.cache_saved = Counter("dheera_ai_cache_saved_usd", "What cache hits would have cost upstream, in USD",
                                   ["model_group"], registry=r)
        self.spend_rows_dropped = Counter("dheera_ai_spend_rows_dropped", "Spend rows lost because the spool "
                                          "was full (the store unreachable for too long)", ["model_group"], registry=r)
        self.callback_dropped = Counter("dheera_ai_callback_dropped", "Spans and call records an exporter "
                                        "dropped because its queue was full (its destination slow or down)",
                                        ["callback"], registry=r)
        # (metric, label values) -> its child: `labels()` checks and locks on every use (~3 us).
        # Label values are bounded (see above), so this is too.
        self._children: dict = {}
        self._lock = threading.Lock()
        self._counts: dict[tuple, float] = {}  # (metric, label values) -> amount not yet written
        self._observations: dict[tuple, list] = {}  # (histogram, label values) -> [sum, bucket counts...]
        self._flusher_pid = None
        self._stop = threading.Event()

    def _child(self, metric, *labels):
        if not labels:
            return metric
        child = self._children.get((metric, labels))
        if child is None:
            child = self._children[metric, labels] = metric.labels(*labels)
        return child

    @hookimpl(wrapper=True)
    def dheera_ai_pre_call(self, call):
        # A wrapper runs before every pre-call implementation, so a call another plugin
        # refuses was still counted in, and the post-call hook's decrement balances it.
        with self._lock:
            self._count(self.in_flight, (), 1)
        self._ensure_flusher()
        return (yield)

    # The post-call hooks run after spend logging's (trylast), so the call's cost is known.
    @hookimpl(trylast=True)
    def dheera_ai_post_call_success(self, call, outcome):
        group, deployment = self._labels(call)
        group_only = (group,)
        self._ensure_flusher()
        with self._lock:
            self._count(self.in_flight, (), -1)
            self._count(self.requests, (group, deployment, outcome.status))
            self._spent(group_only, call)
            self._observe(self.latency, group_only, outcome.latency_seconds)
            if not call.stream:
                self._observe(self.overhead, group_only, max(outcome.latency_seconds - call.upstream_seconds, 0.0))
            if outcome.usage is not None:
                self._count(self.tokens, (group, "prompt"), outcome.usage.prompt_tokens)
                self._count(self.tokens, (group, "completion"), outcome.usage.completion_tokens)
            if outcome.stream_cut:
                self._count(self.streams_cut, group_only)
            if call.cache is not None:
                self._count(self.cache_requests, (call.cache.result,))
                if call.cache.saved_cost:
                    self._count(self.cache_saved, group_only, call.cache.saved_cost)

    @hookimpl(trylast=True)
    def dheera_ai_post_call_failure(self, call, outcome):
        group, deployment = self._labels(call)
        self._ensure_flusher()
        with self._lock:
            self._count(self.in_flight, (), -1)
            self._count(self.requests, (group, deployment, outcome.status))
            self._count(self.errors, (group, type(outcome.error).__name__))
            self._observe(self.latency, (group,), outcome.latency_seconds)
            self._spent((group,), call)  # a stream that failed part-way is billed for what it delivered

    def _spent(self, group_only: tuple, call) -> None:
        if call.cost:  # None when unpriced (or spend logging is not loaded)
            self._count(self.spend, group_only, call.cost)

    # -- pending counts, and writing them ----------------------------------------------------------

    def _count(self, metric, labels: tuple, amount: float = 1) -> None:
        """Add to a counter's (or the in-flight gauge's) pending amount; the caller holds the lock."""
        key = (metric, labels)
        self._counts[key] = self._counts.get(key, 0) + amount

    def _observe(self, histogram, labels: tuple, value: float) -> None:
        """Count one observation in its bucket (the first whose bound is >= value, as
        prometheus_client does); the caller holds the lock."""
        key = (histogram, labels)
        pending = self._observations.get(key)
        if pending is None:
            pending = self._observations[key] = [0.0] * (len(histogram._upper_bounds) + 1)
        pending[0] += value
        pending[1 + bisect_left(histogram._upper_bounds, value)] += 1

    def flush(self) -> None:
        """Write what calls counted since the last flush into the samples a scrape reads."""
        with self._lock:
            counts, self._counts = self._counts, {}
            observations, self._observations = self._observations, {}
        for (metric, labels), amount in counts.items():
            if amount:  # the in-flight gauge's +1 and -1 of calls that began and ended since
                self._child(metric, *labels).inc(amount)
        for (histogram, labels), (total, *buckets) in observations.items():
            _add_observations(self._child(histogram, *labels), total, buckets)

    def _ensure_flusher(self) -> None:
        """The thread that flushes every second, started in the worker that counts (after fork)."""
        if self._flusher_pid == os.getpid():
            return
        self._flusher_pid = os.getpid()
        threading.Thread(target=self._flush_forever, daemon=True, name="dheera_ai-metrics").start()

    def _flush_forever(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the next round writes what this one could not
                log.exception("writing metrics samples failed")

    def close(self) -> None:
        """Write what is pending and stop the thread (a worker's exit, `State.close`)."""
        self._stop.set()
        self.flush()

    def _labels(self, call) -> tuple[str, str]:
        """(model group, deployment) as configured; a deployment a client built (`user_config`)
        is one `user_config` label whatever it named itself, so clients cannot add series."""
        deployment = call.deployment
        if deployment is None:
            return "unknown", "none"
        group = self.configured.get(deployment.id)
        if group is None:
            return "user_config", "user_config"
        return group, deployment.id

    def spend_row_dropped(self, call) -> None:
        """Spend logging's report of a row the full spool refused."""
        self.spend_rows_dropped.labels(self._labels(call)[0]).inc()

    def callback_dropped_one(self, callback: str, count: int = 1) -> None:
        """An exporter's report of what its full queue refused."""
        self.callback_dropped.labels(callback).inc(count)

    def exposition(self, engine, spool) -> bytes:
        self.flush()  # this worker's own counts are never behind its answer
        if multiprocess():
            from prometheus_client import multiprocess as mp

            registry = CollectorRegistry()
            mp.MultiProcessCollector(registry)
            counted = generate_latest(registry)
        else:
            counted = generate_latest(self.registry)
        # Shared state read at scrape time: the same for every worker, so not per-process samples.
        now = CollectorRegistry()
        now.register(SharedStateCollector(engine, spool))
        return counted + generate_latest(now)


def _add_observations(child, total: float, buckets: list) -> None:
    """Add a batch of observations to a histogram's samples: its sum, and each bucket's count.
    prometheus_client offers only `observe(value)`, a sample write per value, so this writes its
    per-bucket values (`_sum`, `_buckets`, in the order of `_upper_bounds`, as in 0.26: not a
    public API, so `test_metrics` compares the exposition with `observe`'s)."""
    child._sum.inc(total)
    for value, count in zip(child._buckets, buckets, strict=True):
        if count:
            value.inc(count)


class SharedStateCollector:
    """Gauges read when scraped: deployments resting in a cooldown, spend rows waiting in the spool."""

    def __init__(self, engine, spool):
        self.engine = engine
        self.spool = spool

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        router = self.engine.router
        cooling = router.cooldowns.cooling()
        wall = time.time()
        resting = GaugeMetricFamily("dheera_ai_deployments_cooling_down", "Deployments resting after repeated failures",
                                    labels=["model_group"])
        for name, group in router.groups.items():
            resting.add_metric([name], sum(1 for d in group.deployments if cooling.get(d.id, 0.0) > wall))
        yield resting
        yield GaugeMetricFamily("dheera_ai_spool_pending_bytes", "Spend rows written locally, not yet in the store",
                                value=self.spool.pending_bytes())
        yield GaugeMetricFamily("dheera_ai_spend_rows_quarantined", "Spend rows the store refused, kept in the "
                                "spool's dead-letter file", value=self.spool.quarantined_rows())




@bp.get("/metrics")
def metrics():
    engine = calls.engine()
    settings = {**engine.config.dheera_ai_settings, **engine.config.general_settings}
    if settings.get("require_auth_for_metrics_endpoint", True):
        principal = calls.authenticate()
        if principal.kind not in ("master", "anonymous"):
            raise PermissionDeniedError("/metrics needs the master key.", code="admin_only")
    spool = current_app.extensions["dheera_ai_state"].spend.spool  # where spend logging writes it
    body = current_app.extensions["dheera_ai.metrics"].exposition(engine, spool)
    return Response(body, content_type=CONTENT_TYPE_LATEST)
