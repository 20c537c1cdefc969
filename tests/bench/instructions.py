"""Instructions per call, counted by valgrind's callgrind: a measure that does not move with the
machine's load. wrk's req/s on a shared machine varies ±10 % from run to run, more than most
changes to the gateway's own code; the instructions a call executes are the same to 0.1 %.

    .venv/bin/python -m tests.bench.instructions [--calls N] [--scenario chat|cached] [--variant V]
                                                 [--against CHECKOUT]     (`make bench-instructions`)

Each scenario runs in a fresh process under callgrind with instrumentation off: the gateway is
built with the bench config (a virtual key, the cache variant and any `--variant`), warmed with
200 calls, then counted over N calls driven straight through the WSGI app (no gunicorn, sockets to
the client or test client). Everything the process does in that window is counted, the spend
writer and exporters' threads included, and for `chat` the upstream too (a small HTTP server in
the same process, the same in every run): compare runs with each other. `--against` counts a
second checkout the same way (its code, this venv) and prints the difference. Not counted: the
kernel's share (system calls), and cache misses; live calls cost more than this in time.
Needs valgrind (Debian's package: `apt-get install valgrind`).
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
WARM_CALLS = 200


def child(flags: str, scenario: str, calls: int, variants: list[str]) -> None:
    """Build, warm, then count `calls` between the parent's 'go' and our 'done'."""
    from gevent import monkey

    monkey.patch_all()  # as in a gunicorn worker: its locks, sockets and threads
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp())
    import importlib.util

    # This checkout's bench helpers, whichever checkout's gateway code PYTHONPATH names.
    spec = importlib.util.spec_from_file_location("bench_hit_cpu", os.path.join(HERE, "hit_cpu.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    BODY = bench.BODY
    client, key = bench.gateway(bench._upstream(), tempfile.mkdtemp(), variants=("cache", *variants))
    app = client.application
    body = BODY if scenario == "cached" else BODY.replace(b',"cache":{"use-cache":true}', b"")
    statuses = []

    def call() -> None:
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/chat/completions", "SCRIPT_NAME": "",
                   "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "4000",
                   "SERVER_PROTOCOL": "HTTP/1.1", "CONTENT_TYPE": "application/json",
                   "CONTENT_LENGTH": str(len(body)), "HTTP_HOST": "127.0.0.1:4000",
                   "HTTP_AUTHORIZATION": f"Bearer {key}", "HTTP_USER_AGENT": "bench", "REMOTE_ADDR": "127.0.0.1",
                   "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
                   "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False,
                   "wsgi.version": (1, 0)}
        answer = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
        b"".join(answer)
        answer.close()

    for _ in range(WARM_CALLS):
        call()
    assert statuses[-1].startswith("200"), statuses[-1]
    time.sleep(0.5)  # the spend writer's round for the warm-up rows
    open(flags + ".ready", "w").close()
    while not os.path.exists(flags + ".go"):
        time.sleep(0.05)
    for _ in range(calls):
        call()
    time.sleep(0.6)  # the spend writer's round for these rows (it runs every 0.5 s)
    assert all(status.startswith("200") for status in statuses[-calls:]), statuses[-1]
    open(flags + ".done", "w").close()
    while not os.path.exists(flags + ".exit"):
        time.sleep(0.05)


def count(checkout: str, scenario: str, calls: int, variants: list[str]) -> int:
    """Instructions per call of `scenario` with `checkout`'s code."""
    work = tempfile.mkdtemp(prefix="dheera-instructions-")
    flags, out = os.path.join(work, "flag"), os.path.join(work, "callgrind.out")
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}.%p",
               sys.executable, os.path.abspath(__file__), "--child", flags, "--scenario", scenario,
               "--calls", str(calls), *(["--variant", ",".join(variants)] if variants else [])]
    env = {**os.environ, "PYTHONPATH": checkout}
    with open(os.path.join(work, "log"), "w") as log:
        process = subprocess.Popen(command, cwd=checkout, env=env, stdout=log, stderr=log)
    try:
        if not _wait_for(flags + ".ready", process):
            raise SystemExit(f"the gateway did not start; see {work}/log")
        _control(process.pid, "-i", "on")
        _control(process.pid, "-z")
        open(flags + ".go", "w").close()
        if not _wait_for(flags + ".done", process):
            raise SystemExit(f"the calls did not finish; see {work}/log")
        _control(process.pid, "-d")
        _control(process.pid, "-i", "off")
        open(flags + ".exit", "w").close()
        process.wait(120)
        dumps = glob.glob(f"{out}.{process.pid}.1")
        if not dumps:
            raise SystemExit(f"callgrind wrote no dump; see {work}/log")
        with open(dumps[0]) as dump:
            total = next(int(line.split()[1]) for line in dump if line.startswith("summary:"))
    finally:
        if process.poll() is None:
            process.kill()
    shutil.rmtree(work, ignore_errors=True)
    return total // calls


def _wait_for(path: str, process) -> bool:
    while not os.path.exists(path):
        if process.poll() is not None:
            return False
        time.sleep(0.2)
    return True


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--scenario", choices=["chat", "cached"], action="append")
    parser.add_argument("--variant", default="", help="comma-separated tests/bench/variants names")
    parser.add_argument("--against", help="a second checkout, counted the same way")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    variants = [v for v in args.variant.split(",") if v]
    if args.child:
        child(args.child, args.scenario[0], args.calls, variants)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    checkouts = [ROOT] + ([os.path.abspath(args.against)] if args.against else [])
    label = "+".join(["cache", *variants])
    print(f"instructions per call, {args.calls} calls counted ({label})")
    for scenario in args.scenario or ["chat", "cached"]:
        counts = [count(checkout, scenario, args.calls, variants) for checkout in checkouts]
        line = f"{scenario:7s} {counts[0]:>12,}  {ROOT}"
        if len(counts) > 1:
            line += f"\n{'':7s} {counts[1]:>12,}  {checkouts[1]}  ({(counts[0] - counts[1]) / counts[1]:+.1%})"
        print(line, flush=True)


if __name__ == "__main__":
    main()
