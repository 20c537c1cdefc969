"""CPU per cache hit, in-process: what one `chat cached` request costs the gateway, without wrk,
sockets or gunicorn in the way (`make bench` measures those).

    .venv/bin/python -m tests.bench.hit_cpu [--calls N] [--rounds N] [--profile] 2>/dev/null

Builds the gateway with the bench config (a virtual key, SQLite in a temporary directory, the
cache variant), primes the cache with one call to a fixed upstream on 127.0.0.1, then drives N
identical calls through the WSGI app and prints µs of CPU per hit (the call log lines go to stderr,
as a worker's go to its log: send them to /dev/null); `--profile` prints the
cProfile functions that cost the most. (Werkzeug's test client costs some of it too: compare
runs with each other, not with wrk's req/s.)
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pathlib
import pstats
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson

HERE = os.path.dirname(os.path.abspath(__file__))
BODY = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello in one short "
                                                                                       "sentence."}],
                     "max_tokens": 32, "cache": {"use-cache": True}})


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    answer = pathlib.Path(HERE, "fixtures", "chat.json").read_bytes()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(self.answer)))
        self.end_headers()
        self.wfile.write(self.answer)

    def log_message(self, *args):
        pass


def _upstream() -> str:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def gateway(upstream: str, workdir: str, variants=("cache",)):
    """The bench gateway in-process, with tests/bench/variants/<name>.yaml merged in (a section
    both name, like `dheera_ai_settings`, holds the keys of each), and a key that may call it."""
    import yaml

    from proxy_app.app import create_app

    config = {
        "model_list": [{"model_name": "gpt-4o-mini", "dheera_ai_params": {
            "model": "openai/gpt-4o-mini", "api_base": upstream + "/v1", "api_key": "sk-upstream"}}],
        "general_settings": {"master_key": "sk-bench-master", "database_url": f"sqlite:///{workdir}/state.db"},
    }
    for name in variants:
        with open(os.path.join(HERE, "variants", f"{name}.yaml")) as variant:
            merged = yaml.safe_load(variant.read().replace("BENCH_UPSTREAM", upstream))
        for section, values in merged.items():
            config[section] = {**config.get(section, {}), **values} if isinstance(values, dict) else values
    app = create_app(config)
    client = app.test_client()
    made = client.post("/key/generate", headers={"Authorization": "Bearer sk-bench-master"},
                       json={"models": ["gpt-4o-mini"]})
    return client, made.get_json()["key"]


def drive(client, key: str, calls: int) -> float:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    first = client.post("/chat/completions", data=BODY, headers=headers)
    assert first.status_code == 200, first.data
    began = time.process_time()
    for _ in range(calls):
        answer = client.post("/chat/completions", data=BODY, headers=headers)
        assert answer.headers.get("x-dheera-ai-cache-hit") == "true", answer.headers
    return (time.process_time() - began) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    # One core, as `make bench` pins the worker: the spend writer thread then takes turns with
    # the requests instead of running beside them (which slows both, and is not what is measured).
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    upstream = _upstream()
    with tempfile.TemporaryDirectory() as workdir:
        client, key = gateway(upstream, workdir)
        drive(client, key, 200)  # warm: imports, caches, the key
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
        rounds = sorted(drive(client, key, args.calls) for _ in range(1 if args.profile else args.rounds))
        if args.profile:
            profiler.disable()
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("tottime").print_stats(30)
            stats.sort_stats("cumulative").print_stats(60)
            print(out.getvalue())
        print(f"µs of CPU per cache hit (test client, {len(rounds)} rounds of {args.calls} calls): "
              f"median {rounds[len(rounds) // 2]:.1f}, best {rounds[0]:.1f}")


if __name__ == "__main__":
    main()
