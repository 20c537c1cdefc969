"""Callbacks: where traces and call records go (`dheera_ai_settings.callbacks`).

`otel` and `langfuse` share one tracing plugin (`tracing.Tracing`): real OpenTelemetry spans, one
OTLP/HTTP exporter per destination (`exporters`). `webhook` posts batches of call records. Each is
a plugin object on the ordinary hooks, built in the worker after fork (`start`), sending from a
background thread (a greenlet under gevent) through a bounded queue: a slow or dead destination
drops what does not fit, counted, and never holds a call. With no callback configured nothing
here is imported.
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("dheera_ai.callbacks")

DROP_LOG_SECONDS = 60.0
_started: list = []  # what `start` built in this process, for `shutdown`


class Drops:
    """Counts what a full queue refused: reported to `on_dropped(callback, n)` (the gateway's
    `dheera_ai_callback_dropped_total`) at once, and logged at most once a minute."""

    def __init__(self, on_dropped=None):
        self.on_dropped = on_dropped
        self.pending: dict = {}
        self.logged_at = 0.0
        self.lock = threading.Lock()

    def dropped(self, callback: str, count: int = 1) -> None:
        if self.on_dropped is not None:
            try:
                self.on_dropped(callback, count)
            except Exception:  # noqa: BLE001 - counting must not fail a call
                log.debug("counting a dropped record failed", exc_info=True)
        with self.lock:
            self.pending[callback] = self.pending.get(callback, 0) + count
            now = time.monotonic()
            if now - self.logged_at < DROP_LOG_SECONDS:
                return
            pending, self.pending, self.logged_at = self.pending, {}, now
        log.warning("callback queues full (destination slow or down); dropped since the last report: %s",
                    ", ".join(f"{name} {n}" for name, n in sorted(pending.items())))


def start(plugin_manager, config, on_dropped=None) -> list:
    """Build and register the exporters `config.callbacks` asks for, in this process (call it in
    each gunicorn worker, never in the master). Returns the plugin objects."""
    callbacks = config.callbacks
    if not callbacks:
        return []
    drops = Drops(on_dropped)
    plugins = []
    if "otel" in callbacks or "langfuse" in callbacks:
        from plugins.observability.tracing import Tracing

        plugins.append(Tracing.for_gateway(callbacks, drops))
    if "webhook" in callbacks:
        from plugins.observability.webhook import Webhook

        plugins.append(Webhook(callbacks["webhook"], drops))
    for plugin in plugins:
        plugin_manager.register(plugin, name=f"callback-{type(plugin).__name__.lower()}")
    _started.extend(plugins)
    return plugins


def shutdown(timeout: float = 10.0) -> None:
    """Send what is queued and stop (a worker's exit: gunicorn's `worker_exit`, on SIGTERM too)."""
    while _started:
        plugin = _started.pop()
        try:
            plugin.shutdown(timeout)
        except Exception:  # noqa: BLE001 - one exporter's failure must not keep the others' data
            log.exception("shutting down callback %s failed", type(plugin).__name__)
