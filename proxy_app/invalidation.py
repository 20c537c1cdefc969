"""Telling every gateway instance that cached keys are stale, through Redis pub/sub.

Each worker publishes what it changed and listens (in a background thread, a greenlet under
gevent) for what others changed, on the channel `<redis_key_prefix>key_invalidation`, so
deployments (or test runs) that share one Redis under different prefixes never drop each other's
caches. Messages are key hashes, or `*` for "drop everything". A listener that loses Redis drops
its whole cache when it reconnects, since it may have missed messages; meanwhile the store's
version counter (polled by `KeyCache`) still catches changes.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger("dheera_ai.invalidation")

CHANNEL = "key_invalidation"  # after general_settings.redis_key_prefix
SOCKET_TIMEOUT_S = 1.0
RETRY_S = 1.0
EVERYTHING = "*"


class RedisInvalidation:
    def __init__(self, url: str, prefix: str = "dheera_ai:"):
        self.url = url
        self.channel = prefix + CHANNEL
        self._client = None
        self._pid = None
        self._stop = threading.Event()
        self._thread = None

    def _redis(self):
        if self._client is None or self._pid != os.getpid():
            import redis

            self._client = redis.Redis.from_url(self.url, socket_timeout=SOCKET_TIMEOUT_S,
                                                socket_connect_timeout=SOCKET_TIMEOUT_S)
            self._pid = os.getpid()
        return self._client

    def publish(self, key_hashes=None) -> None:
        """Tell the other instances; a Redis outage is logged, never fails the admin change."""
        try:
            client = self._redis()
            for message in (key_hashes if key_hashes is not None else [EVERYTHING]):
                client.publish(self.channel, message)
        except Exception as exc:  # noqa: BLE001 - the version counter still carries the change
            log.warning("could not publish a key invalidation to Redis: %s", exc)

    def listen(self, on_message) -> None:
        """Call `on_message(key_hash or None)` for each invalidation, in a background thread."""
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        self._thread = threading.Thread(target=self._listen_forever, args=(on_message,), daemon=True,
                                        name="dheera_ai-invalidation")
        self._thread.start()

    def _listen_forever(self, on_message) -> None:
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self._redis().pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                on_message(None)  # whatever happened while we were not listening
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=SOCKET_TIMEOUT_S / 2)
                    if message and message.get("type") == "message":
                        data = message["data"].decode()
                        on_message(None if data == EVERYTHING else data)
            except Exception as exc:  # noqa: BLE001 - keep listening across Redis restarts
                log.warning("Redis invalidation listener lost its connection: %s", exc)
                self._stop.wait(RETRY_S)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # noqa: BLE001
                        pass

    def health(self) -> dict:
        try:
            self._redis().ping()
            return {"status": "connected"}
        except Exception as exc:  # noqa: BLE001
            log.warning("Redis health check failed: %s", exc)
            return {"status": "unreachable"}

    def close(self) -> None:
        self._stop.set()
