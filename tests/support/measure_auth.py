"""Measure the authenticate step for a virtual key, from the cache and from the store.

    .venv/bin/python -m tests.support.measure_auth

Prints microseconds per call (median of several rounds) for the master key, a cached virtual
key, and a virtual key looked up in SQLite and in PostgreSQL (when reachable). Not a test: the
numbers depend on the machine; they are for the README and for spotting regressions by eye.
"""

from __future__ import annotations

import statistics
import tempfile
import time

from dheera_ai.types import Credentials
from proxy_app import create_app

MASTER = "sk-measure-master-key"
ROUNDS, CALLS = 7, 2000


def per_call_us(fn, calls=CALLS) -> float:
    rounds = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(rounds)


def measure(database_url: str) -> dict:
    app = create_app({"model_list": [{"model_name": "demo", "dheera_ai_params": {"model": "mock/demo"}}],
                      "general_settings": {"master_key": MASTER, "database_url": database_url}})
    state = app.extensions["dheera_ai_state"]
    pipeline = app.extensions["dheera_ai"].pipeline
    key = app.test_client().post("/key/generate", headers={"Authorization": f"Bearer {MASTER}"},
                                 json={"models": ["demo"]}).json["key"]
    virtual = Credentials(api_key=key, header="authorization", headers={}, path="/v1/chat/completions")
    master = Credentials(api_key=MASTER, header="authorization", headers={}, path="/v1/chat/completions")

    def uncached():
        state.auth.cache.clear()
        pipeline.authenticate(virtual)

    results = {"master key": per_call_us(lambda: pipeline.authenticate(master)),
               "virtual key, cached": per_call_us(lambda: pipeline.authenticate(virtual)),
               "virtual key, from the store": per_call_us(uncached, calls=200)}
    state.close()
    return results


def main() -> None:
    backends = {"sqlite": f"sqlite:///{tempfile.mkdtemp()}/measure.sqlite3"}
    schema = None
    try:
        from tests.support.services import PostgresSchema
        schema = PostgresSchema()
        backends["postgresql"] = schema.url
    except BaseException as e:  # noqa: BLE001 - pytest.skip raises a BaseException subclass
        print(f"(PostgreSQL not measured: {e})")
    try:
        for backend, url in backends.items():
            for what, us in measure(url).items():
                print(f"{backend:10s} {what:30s} {us:8.1f} µs")
    finally:
        if schema is not None:
            schema.drop()


if __name__ == "__main__":
    main()
