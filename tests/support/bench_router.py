"""How long choosing a deployment takes, per strategy, as a group grows (a measurement, not a test).

    .venv/bin/python -m tests.support.bench_router

Prints microseconds per `Router.choose` for groups of 1 to 1,000 deployments: with nothing
cooling down, with a tenth of the group cooling down (shared SQLite state), with tag filtering,
and a whole cycle (choose, then report the call started and finished, as the pipeline does).
"""

from __future__ import annotations

import os
import random
import tempfile
import time
import timeit

from dheera_ai.config import load_router_settings
from dheera_ai.router import Router
from dheera_ai.router.cooldowns import RUNTIME_FILE, SQLiteCooldowns
from dheera_ai.router.strategies import STRATEGIES
from dheera_ai.types import Call, Deployment

SIZES = (1, 10, 100, 1000)


def deployments(n: int, scale: int = 1) -> list[Deployment]:
    return [Deployment(id=f"d{i}", model_name="g", provider="openai", model="m",
                       params={"rpm": random.randint(100, 1000) * scale, "tpm": 10**6 * scale,
                               "tags": [f"t{i % 10}"]},
                       model_info={"input_cost_per_token": random.choice((1e-6, 2e-6)),
                                   "output_cost_per_token": 1e-6})
            for i in range(n)]


def per_call_us(router: Router, call: Call, number: int = 20000) -> float:
    best = min(timeit.repeat(lambda: router.choose(call), number=number, repeat=5))
    return best / number * 1e6


def cycle_us(router: Router, call: Call, number: int = 20000) -> float:
    def cycle():
        chosen = router.choose(call)
        router.started(chosen)
        router.finished(chosen, random.random() / 10, 100)
    return min(timeit.repeat(cycle, number=number, repeat=5)) / number * 1e6


def main() -> None:
    call = Call(call_id="x", call_type="chat_completions", model="g", body={}, tags=["t0"])
    with tempfile.TemporaryDirectory() as state:
        print(f"{'strategy':24} {'n':>5} {'plain µs':>9} {'10% cooling µs':>15} {'tags µs':>8} {'cycle µs':>9}")
        for strategy in STRATEGIES:
            for n in SIZES:
                members = deployments(n)
                settings = load_router_settings({"routing_strategy": strategy}, {"g"})
                plain = per_call_us(Router(members, settings), call)

                store = SQLiteCooldowns(os.path.join(state, f"{strategy}-{n}-{RUNTIME_FILE}"))
                for d in members[: n // 10]:
                    store.record_failure(d.id, allowed_fails=1, cooldown_time=3600)
                time.sleep(0.2)
                cooling = per_call_us(Router(members, settings, store), call)

                tagged = load_router_settings({"routing_strategy": strategy, "enable_tag_filtering": True}, {"g"})
                tags = per_call_us(Router(members, tagged), call)
                # A cycle counts usage: limits high enough that 100,000 calls stay under them.
                cycle = cycle_us(Router(deployments(n, scale=10**6), settings), call)
                print(f"{strategy:24} {n:>5} {plain:>9.2f} {cooling:>15.2f} {tags:>8.2f} {cycle:>9.2f}")


if __name__ == "__main__":
    main()
