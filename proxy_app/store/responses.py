"""Translated Responses in the state store, so their follow-ups work on any worker or instance.

A response a chat-only deployment answered (`dheera_ai.bridges`) is kept with what its
follow-ups need (the response, its input items, the conversation so far) and its owner, the key
that made it: GET, DELETE, input_items and `previous_response_id` find it from any worker of any
instance sharing the store, and only for that key. Bounded: a response expires after
`ttl_seconds`, and past `max_rows` the oldest go; both are enforced every `PRUNE_EVERY` writes
(so the table may run that many rows past `max_rows`). Same interface as `dheera_ai.response_store.ResponseStore`.
"""

from __future__ import annotations

import logging
import threading
import time

import orjson

from proxy_app.store.sql import StoreUnavailableError

log = logging.getLogger("dheera_ai.responses")

MAX_ROWS = 100_000
TTL_SECONDS = 30 * 86400  # OpenAI keeps a stored response 30 days
PRUNE_EVERY = 100


class StoredResponses:
    def __init__(self, store, ready=lambda: None, max_rows: int = MAX_ROWS, ttl_seconds: float = TTL_SECONDS,
                 prune_every: int = PRUNE_EVERY):
        self.store = store
        self.prune_every = prune_every
        self._ready = ready  # migrates first, if start-up could not
        self.max_rows = max_rows
        self.ttl_seconds = ttl_seconds
        self._writes = 0
        self._lock = threading.Lock()

    def put(self, response_id: str, response: dict, input_items: list, messages: list,
            owner: str | None = None) -> None:
        body = orjson.dumps({"response": response, "input_items": input_items, "messages": messages}).decode()
        store = self.store
        with self._lock:
            self._writes += 1
            prune = (self._writes - 1) % self.prune_every == 0  # the first write, then every prune_every-th
        try:
            self._ready()
            with store._transaction(write=True) as cur:
                store._fast_commit(cur)
                cur.execute(store._sql("INSERT INTO bridged_responses (response_id, owner, body, created_at) "
                                       "VALUES (?, ?, ?, ?)"), (response_id, owner or "", body, time.time()))
                if prune:
                    self._prune(cur)
        except StoreUnavailableError as exc:
            # The answer is already on its way; only its follow-ups will not find it.
            log.error("response %s not kept for follow-ups: %s", response_id, exc.message)

    def get(self, response_id: str, owner: str | None = None) -> dict | None:
        store = self.store
        self._ready()
        with store._transaction() as cur:
            cur.execute(store._sql("SELECT body FROM bridged_responses WHERE response_id = ? AND owner = ? "
                                   "AND created_at > ?"), (response_id, owner or "", time.time() - self.ttl_seconds))
            found = cur.fetchone()
        return orjson.loads(found[0]) if found else None

    def delete(self, response_id: str, owner: str | None = None) -> bool:
        store = self.store
        self._ready()
        with store._transaction(write=True) as cur:
            cur.execute(store._sql("DELETE FROM bridged_responses WHERE response_id = ? AND owner = ? "
                                   "AND created_at > ?"), (response_id, owner or "", time.time() - self.ttl_seconds))
            return cur.rowcount > 0

    def _prune(self, cur) -> None:
        """Drop what expired, then the oldest beyond `max_rows`."""
        sql = self.store._sql
        cur.execute(sql("DELETE FROM bridged_responses WHERE created_at <= ?"), (time.time() - self.ttl_seconds,))
        cur.execute(sql("SELECT created_at FROM bridged_responses ORDER BY created_at DESC LIMIT 1 OFFSET ?"),
                    (self.max_rows - 1,))
        oldest_kept = cur.fetchone()
        if oldest_kept is not None:
            cur.execute(sql("DELETE FROM bridged_responses WHERE created_at < ?"), (oldest_kept[0],))
