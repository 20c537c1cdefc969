"""CPU per call with trace export off and on, measured in-process (independent of machine load):

    .venv/bin/python -m tests.bench.otel_cpu [--calls 2000]

The gateway (`app.test_client()`, the mock model) in this process; the OTLP collector and Langfuse
a receiver in a child process answering 200 at once (like nginx in `make bench`), so what is
counted is the gateway's own work: the call's path (main thread) and the batch exporters' threads
(all threads, the exporters flushed before the clock stops). Rows: no callback; otel + langfuse
with the SDK's OTLP encoder; otel + langfuse as shipped.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time

RECEIVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get('content-length') or 0))
        self.send_response(200); self.send_header('content-length', '0'); self.end_headers()
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
print(s.server_address[1], flush=True); s.serve_forever()
"""
MASTER = "sk-cpu-master"
BODY = {"model": "demo", "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
        "max_tokens": 32, "mock_response": "Hello! I am a mock model answering quickly."}


def config(state_dir: str, receiver: str | None) -> dict:
    out = {"model_list": [{"model_name": "demo", "dheera_ai_params": {"model": "mock/demo"}}],
           "general_settings": {"master_key": MASTER, "database_url": f"sqlite:///{state_dir}/state.sqlite3"}}
    if receiver:
        out["dheera_ai_settings"] = {"callbacks": ["otel", "langfuse"]}
        out["callback_settings"] = {"otel": {"endpoint": receiver + "/otlp"},
                                    "langfuse": {"host": receiver + "/lf", "public_key": "pk", "secret_key": "sk"}}
    return out


def measure(calls: int, receiver: str | None) -> tuple[float, float]:
    import plugins
    from plugins import observability
    from proxy_app import create_app

    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as state_dir:
        app = create_app(config(state_dir, receiver), load_entrypoints=False,
                         plugins=[importlib.import_module(name) for name in plugins.BUILTIN])
        client = app.test_client()
        headers = {"Authorization": f"Bearer {MASTER}"}
        for _ in range(200):  # warm up
            assert client.post("/v1/chat/completions", json=BODY, headers=headers).status_code == 200
        observability.shutdown()  # the warm-up's spans leave before the clock starts
        app.extensions["dheera_ai_state"].close()
        app = create_app(config(state_dir, receiver), load_entrypoints=False,
                         plugins=[importlib.import_module(name) for name in plugins.BUILTIN])
        client = app.test_client()
        main0, all0 = time.thread_time(), time.process_time()
        for _ in range(calls):
            client.post("/v1/chat/completions", json=BODY, headers=headers).get_data()
        main = time.thread_time() - main0
        observability.shutdown()  # the batch threads send what they hold: their CPU is counted
        every = time.process_time() - all0
        app.extensions["dheera_ai_state"].close()
    return main / calls * 1e6, every / calls * 1e6


def row(label: str, cpu: tuple[float, float]) -> None:
    print(f"{label:<29} {cpu[0]:6.0f} us     {cpu[1]:6.0f} us", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    os.environ.setdefault("OTEL_BSP_SCHEDULE_DELAY", "200")
    child = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
    try:
        receiver = f"http://127.0.0.1:{child.stdout.readline().strip()}"
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        from plugins.observability import fastencode

        bulk = fastencode.BulkOTLPSpanExporter.export
        print(f"{args.calls} calls, CPU per call   main thread   all threads")
        row("no callback", measure(args.calls, None))
        fastencode.BulkOTLPSpanExporter.export = OTLPSpanExporter.export
        row("otel+langfuse, SDK encoder", measure(args.calls, receiver))
        fastencode.BulkOTLPSpanExporter.export = bulk
        row("otel+langfuse, bulk encoder", measure(args.calls, receiver))
    finally:
        child.kill()


if __name__ == "__main__":
    main()
