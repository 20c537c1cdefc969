"""The gateway's state, assembled by `create_app`: the store, the key cache, spend and limits, Redis,
translated Responses."""

from __future__ import annotations

import logging
import os

from proxy_app.batches.store import BatchStore
from proxy_app.files import Files
from proxy_app.invalidation import RedisInvalidation
from proxy_app.spend import SpendTracker
from proxy_app.store import StoreUnavailableError, open_store
from proxy_app.store.responses import StoredResponses
from proxy_app.virtual_keys import VirtualKeyAuth

log = logging.getLogger("dheera_ai.state")


class State:
    def __init__(self, config):
        self.store = open_store(config)
        settings = config.general_settings
        redis_url = settings.get("redis_url")
        self.invalidation = RedisInvalidation(redis_url, settings.get("redis_key_prefix", "dheera_ai:")) \
            if redis_url else None
        self.auth = VirtualKeyAuth(self.store, config, self.invalidation, ready=self.ensure_schema)
        self.spend = SpendTracker(self.store, config, local_files_dir(config, self.store))
        self.responses = StoredResponses(self.store, ready=self.ensure_schema)
        self.files = Files(self.store, files_dir(config, self.store),
                           int(settings["max_file_size_mb"] * 1024 * 1024), ready=self.ensure_schema)
        self.batches = BatchStore(self.store, ready=self.ensure_schema)
        self.batch_runner = None  # needs the engine: create_app sets it
        self.schema_ready = False
        self.models = None  # LiveModels, which needs the engine: create_app sets it
        self.response_cache = None  # the cache plugin, when the config turns caching on: create_app sets it
        self.metrics = None  # the Prometheus metrics plugin: create_app sets it

    def ensure_schema(self) -> None:
        """Migrate once; an unreachable store is reported (503), and retried on the next use."""
        if self.schema_ready:
            return
        applied = self.store.migrate()
        if applied:
            log.info("state store %s: applied migrations %s", self.store.describe(), applied)
        self.schema_ready = True

    def try_ensure_schema(self) -> None:
        try:
            self.ensure_schema()
        except StoreUnavailableError as exc:
            log.error("%s; keys will be checked once it answers", exc.message)

    def health(self) -> dict:
        # No location: readiness answers without a key, and where the database lives is no one's business.
        report = {"backend": self.store.backend}
        try:
            self.ensure_schema()
            report.update(status="connected", schema_version=self.store.schema_version())
        except StoreUnavailableError:
            report.update(status="unreachable", error="the state store does not answer")
        out = {"state_store": report, "spend": self.spend.health()}
        if self.invalidation is not None:
            out["redis"] = self.invalidation.health()
        return out

    def close(self) -> None:
        if self.batch_runner is not None:
            self.batch_runner.close()
        if self.models is not None:
            self.models.close()
        if self.response_cache is not None:
            self.response_cache.store.close()  # its writer thread, and a semantic store's pool
        if self.metrics is not None:
            self.metrics.close()  # its last counts written, its thread stopped
        self.spend.close()
        self.auth.close()
        self.store.close()


def local_files_dir(config, store) -> str:
    """Where this instance keeps its spend spool and rate-limit counters: beside a SQLite store,
    else `general_settings.local_state_dir`, else beside the config."""
    configured = config.general_settings.get("local_state_dir")
    if configured:
        return configured
    path = getattr(store, "path", None)
    return os.path.dirname(os.path.abspath(path)) if path else config.state_dir


def files_dir(config, store) -> str:
    """Where uploaded files and batch outputs live (`proxy_app.files`)."""
    return config.general_settings.get("files_dir") or os.path.join(local_files_dir(config, store), "files")
