"""1,000 concurrent `acompletion` streams on one event loop, against a local slow upstream:

    .venv/bin/python -m tests.bench.sdk_async [--streams 1000] [--first 0.5] [--chunks 10] [--interval 0.1]

The upstream answers like a model: its first chunk after `--first` seconds (time to first
token), then `--chunks` more `--interval` seconds apart, usage and [DONE]. It is a gevent server
in a child process, so the threads and memory counted are the SDK's alone: peak threads of this
process (sampled from /proc every 50 ms), its peak RSS (VmHWM), and the wall time from the first
call to the last stream's end. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def threads() -> int:
    return status_kb("Threads")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run(url: str, count: int) -> dict:
    import dheera_ai

    peak = threads()
    done = asyncio.Event()

    async def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, threads())
            await asyncio.sleep(0.05)

    async def one(_):
        try:
            stream = await dheera_ai.acompletion(model="openai/gpt-4o-mini", api_base=url, api_key="sk-bench",
                                                 messages=[{"role": "user", "content": "hi"}], stream=True,
                                                 timeout=600)
            chunks = 0
            async for _chunk in stream:
                chunks += 1
            return "done" if chunks >= 3 else f"{chunks} chunks"
        except Exception as exc:  # noqa: BLE001 - counted, not raised
            return type(exc).__name__

    # One warm-up call, so the engine's one-off start-up (plugins, prices) is not in the time.
    await one(0)
    sampler = asyncio.create_task(sample())
    started = time.monotonic()
    outcomes = await asyncio.gather(*(one(i) for i in range(count)))
    seconds = time.monotonic() - started
    done.set()
    await sampler
    summary: dict = {}
    for outcome in outcomes:
        summary[outcome] = summary.get(outcome, 0) + 1
    return {"streams": count, "outcomes": summary, "seconds": round(seconds, 2), "peak_threads": peak,
            "peak_rss_mb": round(status_kb("VmHWM") / 1024, 1)}


def serve_upstream(port: int, first: float, chunks: int, interval: float) -> None:
    from gevent import monkey

    monkey.patch_all()
    import gevent
    from gevent.pywsgi import WSGIServer

    def chunk(delta: dict, **extra) -> bytes:
        event = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000,
                 "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": delta,
                                                      "finish_reason": extra.pop("finish", None)}], **extra}
        return b"data: " + json.dumps(event).encode() + b"\n\n"

    def app(environ, start_response):
        environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])

        def body():
            gevent.sleep(first)
            yield chunk({"role": "assistant", "content": ""})
            for _ in range(chunks):
                gevent.sleep(interval)
                yield chunk({"content": "tick "})
            yield chunk({}, finish="stop", usage={"prompt_tokens": 12, "completion_tokens": chunks,
                                                  "total_tokens": 12 + chunks})
            yield b"data: [DONE]\n\n"

        return body()

    WSGIServer(("127.0.0.1", port), app, log=None, backlog=4096).serve_forever()


def main(argv=None) -> None:
    if argv is None and sys.argv[1:2] == ["_upstream"]:
        return serve_upstream(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--first", type=float, default=0.5)
    parser.add_argument("--chunks", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.1)
    args = parser.parse_args(argv)
    port = free_port()
    upstream = subprocess.Popen([sys.executable, "-m", "tests.bench.sdk_async", "_upstream", str(port),
                                 str(args.first), str(args.chunks), str(args.interval)], cwd=REPO)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        result = asyncio.run(run(f"http://127.0.0.1:{port}/v1", args.streams))
        result.update(first_chunk_seconds=args.first, chunks=args.chunks, interval_seconds=args.interval)
        print(json.dumps(result), flush=True)
    finally:
        upstream.terminate()
        upstream.wait(10)


if __name__ == "__main__":
    main()
