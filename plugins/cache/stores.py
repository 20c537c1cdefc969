"""Where cached answers live: a bounded in-memory LRU per worker, or Redis shared by every instance.

Both take and give opaque bytes. A Redis that is down or slow costs a call at most one timeout
(`cache_params.timeout_ms`, 50 ms or less): after a failure Redis is left alone for a few seconds,
lookups are misses and the call goes upstream. Writes to Redis leave the call's path: a worker's
writer thread sends them, and drops them (they are only a cache) when it cannot keep up.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import OrderedDict

from dheera_ai.redact import redact

log = logging.getLogger("dheera_ai.cache")

DOWN_SECONDS = 5.0  # how long Redis is skipped after a failure
WARN_EVERY = 30.0
WRITE_QUEUE = 1000


class LocalStore:
    """Least recently used first out, within `max_bytes` (keys and values) for the worker."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.size = 0
        self._items: OrderedDict[str, tuple[bytes, float]] = OrderedDict()  # key -> (value, expires)
        self._lock = threading.Lock()

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        now = time.time()
        out = []
        with self._lock:
            for key in keys:
                item = self._items.get(key)
                if item is not None and item[1] <= now:
                    self._drop(key)
                    item = None
                if item is not None:
                    self._items.move_to_end(key)
                out.append(item[0] if item else None)
        return out

    def set_many(self, items: list[tuple[str, bytes, float]]) -> None:
        now = time.time()
        with self._lock:
            for key, value, ttl in items:
                if key in self._items:
                    self._drop(key)
                self._items[key] = (value, now + ttl)
                self.size += len(key) + len(value)
                while self.size > self.max_bytes and self._items:
                    self._drop(next(iter(self._items)))

    def _drop(self, key: str) -> None:
        value, _ = self._items.pop(key)
        self.size -= len(key) + len(value)

    def close(self) -> None:
        pass


class Outages:
    """A shared store's failures: after one, the store is left alone for DOWN_SECONDS (its lookups
    are misses, its writes dropped) and a warning is logged at most every WARN_EVERY seconds."""

    def __init__(self, name: str):
        self.name = name
        self._down_until = 0.0
        self._warned = 0.0

    def skipping(self) -> bool:
        return time.monotonic() < self._down_until

    def failed(self, exc: Exception) -> None:
        self._down_until = time.monotonic() + DOWN_SECONDS
        if time.monotonic() - self._warned > WARN_EVERY:
            self._warned = time.monotonic()
            log.warning("response cache: %s failed (%s: %s); calls go upstream, retrying in %.0f s",
                        self.name, type(exc).__name__, redact(str(exc).strip()), DOWN_SECONDS)


class RedisStore:
    """Redis, with every command bounded by `timeout` seconds; failures are misses and a warning."""

    def __init__(self, params: dict, timeout: float):
        self.params = params
        self.timeout = timeout
        self._client = None
        self._pid = None
        self.outages = Outages("Redis")
        self._queue: queue.Queue | None = None

    def _redis(self):
        # One client per process, made after gunicorn forked the worker.
        if self._client is None or self._pid != os.getpid():
            import redis

            options = {"socket_timeout": self.timeout, "socket_connect_timeout": self.timeout}
            if self.params.get("url"):
                self._client = redis.Redis.from_url(self.params["url"], password=self.params.get("password"),
                                                    **options)
            else:
                self._client = redis.Redis(host=self.params["host"], port=self.params.get("port") or 6379,
                                           password=self.params.get("password"), **options)
            self._pid = os.getpid()
            self._queue = queue.Queue(WRITE_QUEUE)
            threading.Thread(target=self._write_forever, args=(self._queue,), daemon=True,
                             name="dheera_ai-cache-writer").start()
        return self._client

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        if self.outages.skipping():
            return [None] * len(keys)
        try:
            return self._redis().mget(keys)
        except Exception as exc:  # noqa: BLE001 - a cache failure never fails a call
            self.outages.failed(exc)
            return [None] * len(keys)

    def set_many(self, items: list[tuple[str, bytes, float]]) -> None:
        if self.outages.skipping():
            return
        self._redis()
        try:
            self._queue.put_nowait(items)
        except queue.Full:
            log.debug("cache writes are behind; %d answers not stored", len(items))

    def _write_forever(self, pending: queue.Queue) -> None:
        while True:
            items = pending.get()
            if items is None:
                return
            try:
                pipe = self._client.pipeline(transaction=False)
                for key, value, ttl in items:
                    pipe.set(key, value, px=max(1, int(ttl * 1000)))
                pipe.execute()
            except Exception as exc:  # noqa: BLE001
                self.outages.failed(exc)

    def close(self) -> None:
        if self._queue is not None and self._pid == os.getpid():
            self._queue.put(None)
