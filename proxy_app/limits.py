"""Rate limits (rpm, tpm, max_parallel_requests), counted exactly across workers and instances.

A call names the scopes that bound it (`key:<hash>`, `user:<id>`, `team:<id>`), each with its
limits. `acquire` checks every scope and, only if all have room, counts the request and marks the
call in flight, as one atomic step: a SQLite `BEGIN IMMEDIATE` transaction in a file shared by
the workers of an instance, or one Lua script on Redis shared by every instance. Windows are
calendar minutes. `release` ends the call's in-flight mark and adds the tokens it used.

If Redis fails (short timeouts), counting falls back to this instance's file with a warning, and
Redis is tried again a few seconds later. A call admitted by Redis whose release cannot reach it
(a blip mid-call) is released there as soon as Redis answers again, so its max_parallel slot does
not stay taken until the in-flight mark goes stale.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass

from dheera_ai.sqlite_files import open_shared

log = logging.getLogger("dheera_ai.limits")

WINDOW_S = 60
# An in-flight mark older than this belongs to a call whose worker died; it no longer counts.
STALE_S = 600
REDIS_TIMEOUT_S = 0.25
REDIS_RETRY_S = 5.0
# Releases kept for a Redis that is away, at most; the oldest go first (their marks go stale anyway).
MAX_PENDING_RELEASES = 10_000
UNLIMITED = -1


@dataclass(frozen=True)
class Scope:
    name: str  # "key:<hash>", "user:<id>", "team:<id>"
    rpm: int = UNLIMITED
    tpm: int = UNLIMITED
    parallel: int = UNLIMITED


@dataclass
class Admission:
    """What the response headers say: room left this minute and seconds until the window resets."""

    remaining_requests: int | None
    remaining_tokens: int | None
    reset_seconds: float
    backend: str = "local"


@dataclass
class Refusal:
    scope: str
    limit: str  # "rpm_limit", "tpm_limit", "max_parallel_requests"
    value: int
    retry_after: float
    remaining_requests: int | None
    remaining_tokens: int | None


class LocalLimiter:
    """Counters in a SQLite file beside the store: exact across the workers of one instance."""

    backend = "local"

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._conn = None
        self._pid = None
        self._calls = 0

    def _connection(self):
        if self._conn is None or self._pid != os.getpid():
            # Counters, not records: a power cut may forget a minute of them.
            conn = open_shared(self.path, 5.0, synchronous="OFF")
            conn.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL, "
                         "expires REAL NOT NULL)")
            conn.execute("CREATE TABLE IF NOT EXISTS in_flight (scope TEXT NOT NULL, call_id TEXT NOT NULL, "
                         "started REAL NOT NULL, PRIMARY KEY (scope, call_id))")
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    @contextlib.contextmanager
    def _write(self):
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")  # serializes every worker's check-and-count
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            else:
                conn.commit()

    def acquire(self, call_id: str, scopes: list[Scope], now: float) -> Admission | Refusal:
        minute = int(now // WINDOW_S)
        reset = WINDOW_S - now % WINDOW_S
        with self._write() as conn:
            self._calls += 1
            if self._calls % 200 == 1:
                conn.execute("DELETE FROM counters WHERE expires < ?", (now,))
                conn.execute("DELETE FROM in_flight WHERE started < ?", (now - STALE_S,))
            remaining_requests = remaining_tokens = None
            for scope in scopes:
                requests = _value(conn, f"{scope.name}:rpm:{minute}")
                tokens = _value(conn, f"{scope.name}:tpm:{minute}")
                left_r = scope.rpm - requests if scope.rpm != UNLIMITED else None
                left_t = scope.tpm - tokens if scope.tpm != UNLIMITED else None
                refusal = None
                if left_r is not None and left_r <= 0:
                    refusal = ("rpm_limit", scope.rpm, reset)
                elif left_t is not None and left_t <= 0:
                    refusal = ("tpm_limit", scope.tpm, reset)
                elif scope.parallel != UNLIMITED:
                    running = conn.execute("SELECT COUNT(*) FROM in_flight WHERE scope = ? AND started >= ?",
                                           (scope.name, now - STALE_S)).fetchone()[0]
                    if running >= scope.parallel:
                        refusal = ("max_parallel_requests", scope.parallel, 1.0)
                if refusal is not None:
                    return Refusal(scope.name, *refusal, max(left_r or 0, 0) if left_r is not None else None,
                                   max(left_t, 0) if left_t is not None else None)
                remaining_requests = _least(remaining_requests, None if left_r is None else left_r - 1)
                remaining_tokens = _least(remaining_tokens, left_t)
            for scope in scopes:
                if scope.rpm != UNLIMITED:
                    _add(conn, f"{scope.name}:rpm:{minute}", 1, (minute + 2) * WINDOW_S)
                if scope.parallel != UNLIMITED:
                    conn.execute("INSERT OR REPLACE INTO in_flight (scope, call_id, started) VALUES (?, ?, ?)",
                                 (scope.name, call_id, now))
        return Admission(remaining_requests, remaining_tokens, reset, self.backend)

    def release(self, call_id: str, scopes: list[Scope], tokens: int, now: float, backend: str = "local") -> None:
        minute = int(now // WINDOW_S)
        with self._write() as conn:
            for scope in scopes:
                if scope.parallel != UNLIMITED:
                    conn.execute("DELETE FROM in_flight WHERE scope = ? AND call_id = ?", (scope.name, call_id))
                if scope.tpm != UNLIMITED and tokens:
                    _add(conn, f"{scope.name}:tpm:{minute}", tokens, (minute + 2) * WINDOW_S)

    def current(self) -> str:
        """Where counting happens now (a release names it)."""
        return self.backend

    def health(self) -> dict:
        return {"backend": "local"}

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


def _value(conn, name) -> int:
    found = conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
    return found[0] if found else 0


def _add(conn, name, amount, expires) -> None:
    conn.execute("INSERT INTO counters (name, value, expires) VALUES (?, ?, ?) ON CONFLICT (name) "
                 "DO UPDATE SET value = value + excluded.value", (name, amount, expires))


def _least(a, b):
    if a is None:
        return b
    return a if b is None else min(a, b)


# KEYS: per scope its rpm counter, tpm counter and in-flight set. ARGV: now, call id, then per
# scope rpm, tpm, parallel (-1: none). Returns {0, remaining requests, remaining tokens} or
# {1, scope index, limit name, left requests, left tokens}; -1 stands for "no limit".
ACQUIRE_LUA = """
local now = tonumber(ARGV[1])
local n = #KEYS / 3
local rem_r, rem_t = -1, -1
for i = 0, n - 1 do
  local rpm, tpm, par = tonumber(ARGV[3 + i*3]), tonumber(ARGV[4 + i*3]), tonumber(ARGV[5 + i*3])
  local left_r, left_t = -1, -1
  if rpm >= 0 then left_r = rpm - tonumber(redis.call('GET', KEYS[1 + i*3]) or '0') end
  if tpm >= 0 then left_t = tpm - tonumber(redis.call('GET', KEYS[2 + i*3]) or '0') end
  if rpm >= 0 and left_r <= 0 then return {1, i, 'rpm_limit', 0, left_t} end
  if tpm >= 0 and left_t <= 0 then return {1, i, 'tpm_limit', left_r, 0} end
  if par >= 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[3 + i*3], '-inf', now - STALE_S)
    if redis.call('ZCARD', KEYS[3 + i*3]) >= par then return {1, i, 'max_parallel_requests', left_r, left_t} end
  end
  if left_r >= 0 and (rem_r < 0 or left_r - 1 < rem_r) then rem_r = left_r - 1 end
  if left_t >= 0 and (rem_t < 0 or left_t < rem_t) then rem_t = left_t end
end
for i = 0, n - 1 do
  if tonumber(ARGV[3 + i*3]) >= 0 then
    redis.call('INCR', KEYS[1 + i*3])
    redis.call('EXPIRE', KEYS[1 + i*3], EXPIRE_S)
  end
  if tonumber(ARGV[5 + i*3]) >= 0 then
    redis.call('ZADD', KEYS[3 + i*3], now, ARGV[2])
    redis.call('EXPIRE', KEYS[3 + i*3], STALE_S)
  end
end
return {0, rem_r, rem_t}
""".replace("STALE_S", str(STALE_S)).replace("EXPIRE_S", str(2 * WINDOW_S))

# KEYS: per scope tpm counter and in-flight set. ARGV: call id, tokens.
RELEASE_LUA = """
for i = 1, #KEYS, 2 do
  redis.call('ZREM', KEYS[i + 1], ARGV[1])
  if tonumber(ARGV[2]) > 0 then
    redis.call('INCRBY', KEYS[i], ARGV[2])
    redis.call('EXPIRE', KEYS[i], EXPIRE_S)
  end
end
return 0
""".replace("EXPIRE_S", str(2 * WINDOW_S))


class SharedDeploymentLimits:
    """Deployments' `rpm`/`tpm` for the router (usage- and latency-based routing), counted by the
    limiter that counts keys: exact across this instance's workers, and across instances with
    Redis. A `dheera_ai.router.strategies.DeploymentLimits`."""

    def __init__(self, limiter):
        self.limiter = limiter

    def admit(self, deployment, now: float) -> bool:
        try:
            return isinstance(self.limiter.acquire("", [_deployment_scope(deployment)], now), Admission)
        except Exception:  # noqa: BLE001 - a counter that fails must not fail the call
            log.exception("counting a call to deployment %s failed; admitted", deployment.id)
            return True

    def used(self, deployment, tokens: int, now: float) -> None:
        try:
            self.limiter.release("", [_deployment_scope(deployment)], tokens, now, backend=self.limiter.current())
        except Exception:  # noqa: BLE001
            log.exception("counting the tokens of deployment %s failed", deployment.id)


def _deployment_scope(deployment) -> Scope:
    rpm, tpm = deployment.params.get("rpm"), deployment.params.get("tpm")
    return Scope(f"deployment:{deployment.id}", int(rpm) if rpm else UNLIMITED, int(tpm) if tpm else UNLIMITED)


class RedisLimiter:
    """Counters in Redis, shared by every instance; falls back to `local` while Redis fails."""

    backend = "redis"

    def __init__(self, url: str, prefix: str, local: LocalLimiter):
        self.url = url
        self.prefix = prefix + "limits:"
        self.local = local
        self._client = None
        self._pid = None
        self._scripts = None
        self._down_until = 0.0
        # (keys, args) of releases Redis missed; sent before anything else once it answers again.
        self._pending = collections.deque(maxlen=MAX_PENDING_RELEASES)
        self._pending_lock = threading.Lock()
        self._retrying = False

    def _redis(self):
        if self._client is None or self._pid != os.getpid():
            import redis

            self._client = redis.Redis.from_url(self.url, socket_timeout=REDIS_TIMEOUT_S,
                                                socket_connect_timeout=REDIS_TIMEOUT_S)
            self._scripts = (self._client.register_script(ACQUIRE_LUA), self._client.register_script(RELEASE_LUA))
            self._pid = os.getpid()
        return self._client

    def _keys(self, scope: Scope, minute: int) -> list[str]:
        base = self.prefix + scope.name
        return [f"{base}:rpm:{minute}", f"{base}:tpm:{minute}", f"{base}:in_flight"]

    def acquire(self, call_id: str, scopes: list[Scope], now: float) -> Admission | Refusal:
        if now < self._down_until:
            return self.local.acquire(call_id, scopes, now)
        minute = int(now // WINDOW_S)
        keys, args = [], [now, call_id]
        for scope in scopes:
            keys += self._keys(scope, minute)
            args += [scope.rpm, scope.tpm, scope.parallel]
        try:
            self._redis()
            self._send_pending()  # a slot freed there must be free for this call
            result = self._scripts[0](keys=keys, args=args)
        except Exception as exc:  # noqa: BLE001 - a Redis failure never blocks a call
            self._failed(exc)
            if any(scope.parallel != UNLIMITED for scope in scopes):
                # The script may have run with its answer lost: take back an in-flight mark it made.
                self._release_later(self._release_keys(scopes, minute), [call_id, 0])
            return self.local.acquire(call_id, scopes, now)
        reset = WINDOW_S - now % WINDOW_S
        if result[0] == 0:
            return Admission(_count(result[1]), _count(result[2]), reset, self.backend)
        index, limit = int(result[1]), result[2].decode() if isinstance(result[2], bytes) else result[2]
        scope = scopes[index]
        value = {"rpm_limit": scope.rpm, "tpm_limit": scope.tpm, "max_parallel_requests": scope.parallel}[limit]
        retry = 1.0 if limit == "max_parallel_requests" else reset
        return Refusal(scope.name, limit, value, retry, _count(result[3]), _count(result[4]))

    def release(self, call_id: str, scopes: list[Scope], tokens: int, now: float, backend: str = "redis") -> None:
        if backend != self.backend:
            self.local.release(call_id, scopes, tokens, now)
            return
        keys = self._release_keys(scopes, int(now // WINDOW_S))
        args = [call_id, tokens if any(s.tpm != UNLIMITED for s in scopes) else 0]
        if now < self._down_until:
            self._release_later(keys, args)
            return
        try:
            self._redis()
            self._send_pending()
            self._scripts[1](keys=keys, args=args)
        except Exception as exc:  # noqa: BLE001 - kept, and sent when Redis answers again
            self._failed(exc)
            self._release_later(keys, args)

    def _release_keys(self, scopes: list[Scope], minute: int) -> list[str]:
        keys = []
        for scope in scopes:
            _, tpm_key, in_flight = self._keys(scope, minute)
            keys += [tpm_key, in_flight]
        return keys

    def _release_later(self, keys: list[str], args: list) -> None:
        """Keep a release Redis missed, and make sure someone sends it when Redis is back, even
        if no call comes to this worker (another worker's or instance's call may be waiting)."""
        with self._pending_lock:
            self._pending.append((keys, args))
            if self._retrying:
                return
            self._retrying = True
        threading.Thread(target=self._retry_pending, daemon=True, name="dheera_ai-limits-release").start()

    def _send_pending(self) -> None:
        """Send the releases Redis missed, oldest first; one that fails stays (and raises)."""
        while self._pending:
            with self._pending_lock:
                if not self._pending:
                    return
                keys, args = self._pending[0]
            # A release whose answer was lost is sent again: its ZREM changes nothing the second
            # time, its tokens may count twice (an over-count, never an under-count).
            self._scripts[1](keys=keys, args=args)
            with self._pending_lock:
                if self._pending and self._pending[0][0] is keys:
                    self._pending.popleft()

    def _retry_pending(self) -> None:
        while True:
            time.sleep(max(self._down_until - time.time(), 0.0) + 0.05)
            try:
                self._redis()
                self._send_pending()
            except Exception as exc:  # noqa: BLE001 - tried again after the next pause
                self._failed(exc)
            with self._pending_lock:
                if not self._pending:
                    self._retrying = False
                    return

    def current(self) -> str:
        return self.backend if time.time() >= self._down_until else self.local.backend

    def _failed(self, exc: Exception) -> None:
        if time.time() >= self._down_until:
            log.warning("Redis is not answering (%s); rate limits count per instance for now", exc)
        self._down_until = time.time() + REDIS_RETRY_S

    def health(self) -> dict:
        report = {"backend": "redis" if time.time() >= self._down_until else "local (redis down)"}
        if self._pending:
            report["releases_waiting_for_redis"] = len(self._pending)
        return report

    def close(self) -> None:
        self.local.close()
        if self._client is not None and self._pid == os.getpid():
            self._client.close()
        self._client = None


def _count(value):
    """A count from the script: -1 means no limit applies (None); anything else, at least 0."""
    value = int(value)
    return None if value == UNLIMITED else max(value, 0)
