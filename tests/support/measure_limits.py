"""What the limit checks cost a call: `python -m tests.support.measure_limits`.

Times the pre-call step (rate limits counted: key, user and team scopes with rpm, tpm and
max_parallel; the release after the call) on the local SQLite counters and on Redis, and a
budget hold (and its release) in the store on SQLite and PostgreSQL. Not a test: numbers for the README.
"""

from __future__ import annotations

import tempfile
import time
import uuid

from proxy_app.limits import LocalLimiter, RedisLimiter, Scope
from proxy_app.store import store_for_url
from tests.support.services import DATABASE_URL, REDIS_URL

CALLS = 2000
SCOPES = [Scope("key:k", 10**9, 10**12, 10**6), Scope("user:u", 10**9, 10**12, 10**6),
          Scope("team:t", 10**9, 10**12, 10**6)]


def per_call(step, calls=CALLS) -> float:
    step(0)  # connect, create tables
    began = time.perf_counter()
    for i in range(calls):
        step(i)
    return (time.perf_counter() - began) / calls * 1e6


def limiter_step(limiter):
    def step(i):
        now = time.time()
        limiter.acquire(f"c{i}", SCOPES, now)
        limiter.release(f"c{i}", SCOPES, 100, now, backend=limiter.backend)
    return step


def budget_step(store):
    def step(i):
        store.reserve_budget(f"h{i}", [("key", "k", 0.0, 1e12, 0.001), ("team", "t", 0.0, 1e12, 0.001)],
                             time.time())
        store.release_budget(f"h{i}")  # in service the spend row's batch does this, off the hot path
    return step


def main() -> None:
    directory = tempfile.mkdtemp()
    local = LocalLimiter(f"{directory}/limits.sqlite3")
    print(f"rate limits, local SQLite counters: {per_call(limiter_step(local)):.0f} µs per call (acquire + release)")
    redis = RedisLimiter(REDIS_URL, f"measure:{uuid.uuid4().hex}:", local)
    print(f"rate limits, Redis:                 {per_call(limiter_step(redis)):.0f} µs per call (acquire + release)")
    sqlite = store_for_url(f"sqlite:///{directory}/state.sqlite3", directory)
    sqlite.migrate()
    print(f"budget hold + release, SQLite:      {per_call(budget_step(sqlite)):.0f} µs per call (key and team)")
    from tests.support.services import PostgresSchema

    schema = PostgresSchema.__new__(PostgresSchema)
    try:
        PostgresSchema.__init__(schema)
    except BaseException as exc:  # noqa: BLE001 - pytest.skip outside pytest
        print(f"budget reservation, PostgreSQL: not measured ({DATABASE_URL}: {exc})")
        return
    postgres = store_for_url(schema.url, directory)
    postgres.migrate()
    print(f"budget hold + release, PostgreSQL:  {per_call(budget_step(postgres), 500):.0f} µs per call (key and team)")
    postgres.close()
    schema.drop()


if __name__ == "__main__":
    main()
