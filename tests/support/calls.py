"""Chat calls against real servers: many at once, inside one rate window, and waiting for their effects."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import requests


def fresh_minute():
    """Rate windows are calendar minutes: start a counting test well inside one."""
    if time.time() % 60 > 50:
        time.sleep(61 - time.time() % 60)


def post_many(urls, key, count, headers=None, **body) -> list[int]:
    """`count` chat calls at once, a connection each, against a server (a URL) or several (a list,
    taken in turn); their status codes."""
    urls = [urls] if isinstance(urls, str) else urls

    def one(index):
        return requests.post(urls[index % len(urls)] + "/v1/chat/completions", timeout=30,
                             headers={"Authorization": f"Bearer {key}", **(headers or {})},
                             json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                                   **body}).status_code

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def wait_for(read, expected, timeout=15.0):
    """`read()` once it returns `expected`, or what it returns when `timeout` seconds have passed."""
    deadline = time.time() + timeout
    while True:
        value = read()
        if value == expected or time.time() > deadline:
            return value
        time.sleep(0.05)
