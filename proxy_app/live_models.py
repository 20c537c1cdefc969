"""Models added at run time (/model/new), served beside the config's by every worker and instance.

The config's `model_list` is fixed at start-up; models added through the API live in the state
store. Each worker loads them when it starts and, in a background thread (a greenlet under
gevent) started after fork, polls the store's models version once a second: a change made by
any worker of any instance reaches all of them within about a second, as key changes do
without Redis. The worker that made a change applies it at once.
"""

from __future__ import annotations

import logging
import os
import threading

from dheera_ai.config import parse_deployment
from proxy_app.store import StoreUnavailableError

log = logging.getLogger("dheera_ai.models")
POLL_SECONDS = 1.0


class LiveModels:
    def __init__(self, engine, store, poll_seconds: float = POLL_SECONDS):
        self.engine = engine
        self.store = store
        self.poll_seconds = poll_seconds
        self.config_ids = frozenset(d.id for d in engine.config.deployments)
        self.stored: list = []  # the stored models as deployments, oldest first
        self.on_change = lambda deployments: None  # access groups follow (create_app connects it)
        self._version = None
        self._pid = None
        self._stop = threading.Event()

    def deployments(self) -> list:
        return [*self.engine.config.deployments, *self.stored]

    def reload(self) -> None:
        """Read the stored models and serve them with the config's."""
        version = self.store.models_version()
        rows = self.store.stored_models()
        stored = []
        for index, row in enumerate(rows):
            try:
                stored.append(to_deployment(row, self.engine.providers.names(), index))
            except Exception as exc:  # noqa: BLE001 - one bad row (a provider plugin removed) spares the rest
                log.error("stored model %s (%s) cannot be served: %s", row["model_id"], row["model_name"], exc)
        self.stored = stored
        self._version = version
        everything = self.deployments()
        self.engine.router.set_deployments(everything)
        self.on_change(everything)

    def start(self) -> None:
        """In each worker, after fork: load now, then follow changes made elsewhere."""
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._stop = threading.Event()
        try:
            self.reload()
        except StoreUnavailableError as exc:
            log.error("%s; models added through the API are served once it answers", exc.message)
        threading.Thread(target=self._poll_forever, daemon=True, name="dheera_ai-models").start()

    def _poll_forever(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                if self.store.models_version() != self._version:
                    self.reload()
            except Exception as exc:  # noqa: BLE001 - an outage keeps serving what we have
                log.debug("models version poll failed: %s", exc)

    def close(self) -> None:
        self._stop.set()


def to_deployment(row: dict, provider_names, index: int = 0):
    """A stored model -> a Deployment with its stored id."""
    model_info = {**row["model_info"], "id": row["model_id"]}
    entry = {"model_name": row["model_name"], "dheera_ai_params": row["params"], "model_info": model_info}
    return parse_deployment(index, entry, provider_names)
