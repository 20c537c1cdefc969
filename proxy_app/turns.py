"""Turns for the calls in flight: long background work (the spend writer's batches) calls
`take_turn()` between its steps.

In a gunicorn gevent worker the background "threads" are greenlets on the worker's one loop, and
a step (a batch of rows inserted into SQLite) runs without yielding: every call waits for it. The
worker installs `gevent.idle` here (`proxy_app.worker`), so the loop serves the sockets that are
ready between steps; elsewhere (tests, real threads) a turn costs nothing.
"""

from __future__ import annotations

_turn = None


def take_turn() -> None:
    if _turn is not None:
        _turn()


def install(turn) -> None:
    global _turn
    _turn = turn
