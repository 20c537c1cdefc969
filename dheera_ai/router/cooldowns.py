"""Cooldowns: a deployment that failed `allowed_fails` times within a minute rests `cooldown_time` s.

The state is shared by every worker of an instance through a small SQLite file (WAL) in the
state directory, and by every instance through Redis when `general_settings.redis_url` is set.
Reads happen on every call, so they come from a per-process snapshot that is refreshed at most
every `REFRESH` seconds, and only when the store says something changed; writes (on failures
only) go to the store at once.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time

from dheera_ai.sqlite_files import open_shared

log = logging.getLogger("dheera_ai.router")

FAILURE_WINDOW = 60.0  # seconds in which `allowed_fails` failures send a deployment to rest
REFRESH = 0.1  # seconds a worker may go on using its snapshot before asking the store again
RUNTIME_FILE = "dheera_ai-runtime.sqlite3"


class CooldownStore:
    """Where cooldowns are kept. `cooling()` must cost microseconds; the rest may do I/O."""

    def cooling(self) -> dict[str, float]:
        """Deployment id -> wall-clock time its rest ends (entries may have expired already)."""
        raise NotImplementedError

    def record_failure(self, deployment_id: str, allowed_fails: int, cooldown_time: float) -> bool:
        """Count a failure; True when it sent the deployment to rest."""
        raise NotImplementedError

    def describe(self) -> dict:
        """Where the state is kept, for readiness reports (no addresses, no paths)."""
        return {"backend": "memory", "shared_by": "this process"}


class MemoryCooldowns(CooldownStore):
    """One process only: for a per-request router (`user_config`) that is thrown away after the call."""

    def __init__(self):
        self._until: dict[str, float] = {}
        self._failures: dict[str, list] = {}

    def cooling(self):
        return self._until

    def record_failure(self, deployment_id, allowed_fails, cooldown_time):
        now = time.time()
        recent = [t for t in self._failures.get(deployment_id, []) if t > now - FAILURE_WINDOW] + [now]
        if len(recent) >= allowed_fails:
            self._failures.pop(deployment_id, None)
            self._until[deployment_id] = now + cooldown_time
            return True
        self._failures[deployment_id] = recent
        return False


class SQLiteCooldowns(CooldownStore):
    """Shared by the workers of one instance: a WAL-mode SQLite file, created on the first failure."""

    def describe(self):
        return {"backend": "sqlite", "shared_by": "the workers of this instance"}

    _SCHEMA = (
        "CREATE TABLE IF NOT EXISTS cooldown (deployment_id TEXT PRIMARY KEY, until REAL NOT NULL)",
        "CREATE TABLE IF NOT EXISTS failure (deployment_id TEXT NOT NULL, at REAL NOT NULL)",
        "CREATE INDEX IF NOT EXISTS failure_by_deployment ON failure (deployment_id, at)",
    )

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._db = None
        self._pid = None
        self._snapshot: dict[str, float] = {}
        self._checked_at = 0.0
        self._version = None

    def cooling(self):
        now = time.monotonic()
        if now - self._checked_at > REFRESH:
            self._checked_at = now
            try:
                self._refresh()
            except sqlite3.Error as e:
                log.warning("cooldown state %s unreadable (%s); using the last snapshot", self.path, e)
        return self._snapshot

    def _refresh(self):
        with self._lock:
            db = self._connect(create=False)
            if db is None:
                return
            version = db.execute("PRAGMA data_version").fetchone()[0]
            if version == self._version:
                return  # nobody else wrote since the last look
            self._version = version
            rows = db.execute("SELECT deployment_id, until FROM cooldown WHERE until > ?", (time.time(),))
            self._snapshot = dict(rows.fetchall())

    def record_failure(self, deployment_id, allowed_fails, cooldown_time):
        now = time.time()
        with self._lock:
            db = self._connect(create=True)
            with db:  # one transaction: count and decide together, whichever worker gets here first
                db.execute("BEGIN IMMEDIATE")
                db.execute("DELETE FROM failure WHERE at < ?", (now - FAILURE_WINDOW,))
                db.execute("INSERT INTO failure (deployment_id, at) VALUES (?, ?)", (deployment_id, now))
                count = db.execute("SELECT COUNT(*) FROM failure WHERE deployment_id = ?",
                                   (deployment_id,)).fetchone()[0]
                if count < allowed_fails:
                    return False
                db.execute("DELETE FROM failure WHERE deployment_id = ?", (deployment_id,))
                db.execute("DELETE FROM cooldown WHERE until < ?", (now,))
                db.execute("INSERT OR REPLACE INTO cooldown (deployment_id, until) VALUES (?, ?)",
                           (deployment_id, now + cooldown_time))
            self._snapshot = {**self._snapshot, deployment_id: now + cooldown_time}
            return True

    def _connect(self, create: bool):
        if self._db is not None and self._pid == os.getpid():
            return self._db
        if not create and not os.path.exists(self.path):
            return None  # nothing has ever failed here: no file, nothing cooling
        db = open_shared(self.path, 2.0)  # losing a cooldown in a power cut costs nothing
        for statement in self._SCHEMA:
            db.execute(statement)
        self._db, self._pid, self._version = db, os.getpid(), None
        return db


class RedisCooldowns(CooldownStore):
    """Shared by every instance through Redis; when Redis cannot be reached, the local store
    stands in (with a warning) until it can again."""

    DOWN_FOR = 5.0  # seconds to stop asking a Redis that failed to answer

    def __init__(self, url: str, prefix: str, local: CooldownStore):
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)
        self._errors = (redis.RedisError, OSError)
        self.prefix = prefix
        self.local = local
        self._snapshot: dict[str, float] = {}
        self._checked_at = 0.0
        self._version = None
        self._down_until = 0.0

    def _up(self) -> bool:
        return time.monotonic() >= self._down_until

    def describe(self):
        if self._up():
            return {"backend": "redis", "shared_by": "every instance"}
        return {"backend": "redis", "shared_by": "the workers of this instance", "status": "degraded",
                "detail": "Redis did not answer; using local state until it does"}

    def _went_down(self, error):
        self._down_until = time.monotonic() + self.DOWN_FOR
        log.warning("Redis unreachable for cooldowns (%s); using this instance's local state for %gs",
                    type(error).__name__, self.DOWN_FOR)

    def cooling(self):
        if not self._up():
            return self.local.cooling()
        now = time.monotonic()
        if now - self._checked_at > REFRESH:
            self._checked_at = now
            try:
                version = self._redis.get(self.prefix + "cooldown:version")
                if version != self._version:
                    self._version = version
                    raw = self._redis.hgetall(self.prefix + "cooldown")
                    wall = time.time()
                    self._snapshot = {k.decode(): float(v) for k, v in raw.items() if float(v) > wall}
            except self._errors as e:
                self._went_down(e)
                return self.local.cooling()
        return self._snapshot

    def record_failure(self, deployment_id, allowed_fails, cooldown_time):
        if not self._up():
            return self.local.record_failure(deployment_id, allowed_fails, cooldown_time)
        key = f"{self.prefix}failures:{deployment_id}"
        try:
            count = self._redis.incr(key)
            if count == 1:
                self._redis.expire(key, int(FAILURE_WINDOW))
            if count < allowed_fails:
                return False
            until = time.time() + cooldown_time
            pipe = self._redis.pipeline()
            pipe.delete(key)
            pipe.hset(self.prefix + "cooldown", deployment_id, until)
            pipe.incr(self.prefix + "cooldown:version")
            pipe.execute()
        except self._errors as e:
            self._went_down(e)
            return self.local.record_failure(deployment_id, allowed_fails, cooldown_time)
        self._snapshot = {**self._snapshot, deployment_id: until}
        return True


def cooldown_store(config) -> CooldownStore:
    """The store a gateway's router uses: Redis when configured, else the instance's SQLite file."""
    local = SQLiteCooldowns(os.path.join(config.state_dir, RUNTIME_FILE))
    url = config.general_settings.get("redis_url")
    if url:
        return RedisCooldowns(url, config.general_settings.get("redis_key_prefix") or "dheera_ai:", local)
    return local
