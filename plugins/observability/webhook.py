"""The webhook callback: batches of call records POSTed as a JSON array to any log store.

`callback_settings.webhook: {url, headers, batch_size, flush_interval, timeout, max_queue_size}`.
A record is the call log's line (call id, caller, model, usage, cost, status, latency, tags,
retries, errors) with the requester's metadata and the call's start and end, all redacted as
the logs are. Records queue in memory (bounded: a full queue drops the oldest, counted) and a
background thread sends a batch when `batch_size` are waiting or every `flush_interval` seconds.
A failed POST is retried once on the next round, then dropped and counted.
"""

from __future__ import annotations

import collections
import logging
import threading
import time

import orjson

from dheera_ai import hookimpl
from dheera_ai.redact import redact_data
from plugins import call_log

log = logging.getLogger("dheera_ai.callbacks")
NAME = "webhook"


def call_record(call, outcome) -> dict:
    record = call_log.record(call, outcome)
    record["metadata"] = redact_data(call.metadata) if isinstance(call.metadata, dict) else {}
    record["start_time"] = call.start_time
    record["end_time"] = time.time()
    return record


class Webhook:
    def __init__(self, settings: dict, drops):
        self.url = settings["url"]
        self.headers = {"Content-Type": "application/json", **settings.get("headers", {})}
        self.batch_size = settings.get("batch_size", 100)
        self.flush_interval = settings.get("flush_interval", 1.0)
        self.timeout = settings.get("timeout", 5.0)
        self.success, self.failure = settings.get("success", True), settings.get("failure", True)
        self.drops = drops
        self.queue: collections.deque = collections.deque(maxlen=settings.get("max_queue_size", 10_000))
        self.wake = threading.Event()
        self.stopping = False
        self.retry: list = []
        self.thread = None

    @hookimpl(trylast=True)  # after spend logging: the call's cost is known
    def dheera_ai_post_call_success(self, call, outcome):
        if self.success:
            self._add(call_record(call, outcome))

    @hookimpl(trylast=True)
    def dheera_ai_post_call_failure(self, call, outcome):
        if self.failure:
            self._add(call_record(call, outcome))

    def _add(self, record: dict) -> None:
        if len(self.queue) >= self.queue.maxlen:
            self.drops.dropped(NAME)  # the deque drops its oldest record to take this one
        self.queue.append(record)
        if self.thread is None:
            self._start()
        if len(self.queue) >= self.batch_size:
            self.wake.set()

    def _start(self) -> None:
        # Started on first use, so it is always the worker's own (after fork, after gevent patched).
        self.thread = threading.Thread(target=self._run, name="dheera-ai-webhook", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            self.wake.wait(self.flush_interval)
            self.wake.clear()
            stopping = self.stopping
            self._send_all()
            if stopping:
                return

    def _send_all(self) -> None:
        while self.retry or self.queue:
            batch, retried = (self.retry, True) if self.retry else (self._take(), False)
            self.retry = []
            if not self._post(batch):
                if retried or self.stopping:
                    self.drops.dropped(NAME, len(batch))
                else:
                    self.retry = batch
                return  # the destination is failing: wait for the next round

    def _take(self) -> list:
        batch = []
        while self.queue and len(batch) < self.batch_size:
            batch.append(self.queue.popleft())
        return batch

    def _post(self, batch: list) -> bool:
        from dheera_ai import http

        try:
            response = http.session().post(self.url, data=orjson.dumps(batch, default=str), headers=self.headers,
                                           timeout=(min(self.timeout, 5.0), self.timeout), allow_redirects=False)
            response.close()
        except Exception as exc:  # noqa: BLE001 - a failing destination is logged, never raised
            log.warning("webhook callback: POST of %d records failed: %s", len(batch), type(exc).__name__)
            return False
        if response.status_code >= 300:
            log.warning("webhook callback: POST of %d records answered %d", len(batch), response.status_code)
            return False
        return True

    def shutdown(self, timeout: float = 10.0) -> None:
        """Send what is queued (a worker's exit)."""
        self.stopping = True
        self.wake.set()
        if self.thread is not None:
            self.thread.join(timeout)
        elif self.queue:
            self._send_all()
