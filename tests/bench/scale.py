"""Issue 10's scaling checks: does a call cost the same as the config, the key store and the
number of open streams grow? A measurement, not a test (`make bench-scale`):

    .venv/bin/python -m tests.bench.scale [--only deployments,keys,features,streams] [--rounds 8] [--seconds 2]

Each gateway is the real `dheera_ai` command, one gevent worker, on loopback, pinned to core 0;
the load (wrk, the stream clients) and the upstreams run on core 1, as tests/bench/run.sh
does. The gateways of a check are started together, warmed up (`--warm-up` s), then loaded one
at a time in bursts of `--seconds`, taking turns `--rounds` times, so a drift in the machine's
other load falls on every scenario alike. Besides req/s, each burst gives the gateway's CPU time
per request (master + worker, from /proc), which the rest of the machine disturbs far less.
Compare the ratios of one run, not absolute numbers across runs.

1. deployments: chat at 8 connections with a virtual key from /key/generate (full pipeline), a
   config of 1 deployment vs 1,000 deployments in the called group (one upstream host, or 1,000
   upstream hosts 127.1.x.y) vs 1,000 model groups. nginx answers with tests/bench/fixtures/chat.json.
2. keys: the same chat with 10 vs 1,000,000 keys in the SQLite store (inserted in one
   transaction with the store's own schema, encoding and hash), one key (the cache answers);
   then a rotation over 20,000 keys, each used once (every call a cache miss: the store
   answers), with 20,000 vs 1,000,000 keys in the store. Also the file sizes and `lookup_key`
   timed in this process.
3. features: what a feature costs a call when it is on, the same chat through gateways that differ
   only by a variant appended to the config (tests/bench/variants/): none; OTel + Langfuse export
   (to nginx, answering at once); guardrails configured but none on for the key; the response cache
   with every call a hit (the request asks for it). Ratios to the first row: issue 19's "export on
   >= 0.9 of off" and "a guardrail-free key pays nothing", measured by taking turns.
4. streams: 1,000 concurrent streaming clients through one worker to an upstream that holds
   each stream `--hold` seconds (a chunk every 5 s); peak RSS of gunicorn master + worker,
   sampled from /proc while they are held, and how many streams ended with `data: [DONE]`.
   The gateway keeps the open-files limit this was started with (try `ulimit -Sn 1024`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
VENV_BIN = os.path.dirname(sys.executable)
MASTER = "sk-scale-master"
MODEL = "gpt-4o-mini"
KEY_FORMAT = "sk-scale-{:07d}"
ROTATION = 20_000  # more keys than the rotation's calls in a run: each call is a first use
CHAT_BODY = ('{"model":"%s","messages":[{"role":"user","content":"Say hello in one short sentence."}],'
             '"max_tokens":32}')
STREAM_INTERVAL = 5.0  # seconds between the slow upstream's chunks

_started: list[subprocess.Popen] = []  # every process this run started, stopped on the way out
# The open-files limit this was started with: the gateways get it (as a user's would); the load
# generators and upstreams get the hard limit.
_OPEN_FILES = resource.getrlimit(resource.RLIMIT_NOFILE)


# -- processes ------------------------------------------------------------------------------------

def start(command, *, cwd=None, log=None, env=None, stdout=None, preexec_fn=None) -> subprocess.Popen:
    """A process in its own session, so stopping it also stops whatever it started."""
    out = stdout if stdout is not None else (open(log, "ab") if log else subprocess.DEVNULL)
    proc = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT if log else None,
                            env={**os.environ, **(env or {})}, start_new_session=True, preexec_fn=preexec_fn)
    _started.append(proc)
    return proc


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the session we made for it: workers left behind too
    except ProcessLookupError:
        pass
    proc.wait()
    if proc in _started:
        _started.remove(proc)


def stop_all(*_):
    for proc in list(_started):
        stop(proc, grace=3.0)
    if _:  # called as a signal handler
        sys.exit(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(core: int, *command) -> list:
    return ["taskset", "-c", str(core), *command]


def need_tools() -> None:
    if shutil.which("wrk") and shutil.which("nginx"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk", "nginx-light"], check=True, env=env,
                   stdout=subprocess.DEVNULL)


# -- the fixed-answer upstream: nginx -------------------------------------------------------------

def upstream_host(i: int) -> str:
    """The i-th of 1,000 loopback addresses (all of 127/8 is loopback on Linux)."""
    return f"127.1.{i // 250}.{i % 250 + 1}"


def start_nginx(work: str, port: int, hosts: int) -> subprocess.Popen:
    chat = os.path.join(FIXTURES, "chat.json")
    listens = "\n".join(f"    listen {upstream_host(i)}:{port};" for i in range(hosts))
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx.err warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {work}/nginx-body;
  error_page 405 =200 $uri;
  server {{
    listen 127.0.0.1:{port};
{listens}
    location = /v1/chat/completions {{ default_type application/json; alias {chat}; }}
    location /otlp/ {{ return 200; }}
  }}
}}
""")
    proc = start(pinned(1, "nginx", "-c", conf, "-p", work), log=os.path.join(work, "nginx.log"))
    wait_port("127.0.0.1", port, proc)
    return proc


def wait_port(host: str, port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout}s")


# -- the gateway ----------------------------------------------------------------------------------

def write_config(directory: str, deployments: list[tuple[str, str]], extra: str = "") -> str:
    """A config of (model_name, api_base) deployments, then `extra` (YAML); the store goes beside it."""
    os.makedirs(directory, exist_ok=True)
    lines = ["model_list:"]
    for name, base in deployments:
        lines += [f"  - model_name: {name}",
                  f'    dheera_ai_params: {{model: openai/{MODEL}, api_base: "{base}", api_key: sk-upstream}}']
    lines += ["general_settings:", f"  master_key: {MASTER}"]
    path = os.path.join(directory, "config.yaml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n" + extra)
    return path


class Gateway:
    def __init__(self, config: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = os.path.join(os.path.dirname(config), "gateway.log")
        self.proc = start(pinned(0, os.path.join(VENV_BIN, "dheera_ai"), "--config", config,
                                 "--port", str(self.port), "--host", "127.0.0.1", "--workers", "1"),
                          cwd=os.path.dirname(config), log=self.log,
                          # No recycling of the worker every 20,000 requests: a restart in a burst is noise.
                          env={"GUNICORN_CMD_ARGS": "--max-requests 0"},
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, _OPEN_FILES))

    def __enter__(self):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.url + "/health/liveliness", timeout=5) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.3)
        with open(self.log, errors="replace") as f:
            tail = f.read()[-2000:]
        stop(self.proc)
        raise RuntimeError(f"the gateway did not answer; its log ends:\n{tail}")

    def __exit__(self, *exc):
        stop(self.proc, grace=15.0)

    def post(self, path: str, body: dict, key: str) -> tuple[int, dict]:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("POST", path, json.dumps(body),
                         {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            return response.status, (json.loads(data) if data.startswith(b"{") else {})
        finally:
            conn.close()

    def generate_key(self, model: str = MODEL) -> str:
        status, body = self.post("/key/generate", {"models": [model]}, MASTER)
        if status != 200:
            raise RuntimeError(f"/key/generate answered {status}: {body}")
        return body["key"]

    def pids(self) -> list[int]:
        """gunicorn's master (`dheera_ai` execs it) and its workers."""
        children = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [self.proc.pid, *map(int, children.split())]

    def cpu_seconds(self) -> float:
        """User + system CPU time of the master and its workers so far."""
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        return total / os.sysconf("SC_CLK_TCK")


def open_files_limit(pid: int) -> str:
    """A process's soft limit of open files."""
    try:
        with open(f"/proc/{pid}/limits") as f:
            return next(line.split()[3] for line in f if line.startswith("Max open files"))
    except (OSError, StopIteration):
        return "?"


def status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# -- wrk ------------------------------------------------------------------------------------------

def write_lua(work: str) -> tuple[str, str]:
    """One key from $BENCH_KEY; or a rotation: call i uses key number ($BENCH_OFFSET + i) mod $BENCH_ROTATION."""
    one = one_key_lua(os.path.join(work, "one_key.lua"), CHAT_BODY % MODEL)
    rotation = os.path.join(work, "rotation.lua")
    prefix = KEY_FORMAT.split("{")[0]
    with open(rotation, "w") as f:
        f.write(f"""local n = tonumber(os.getenv("BENCH_ROTATION"))
local i = tonumber(os.getenv("BENCH_OFFSET") or "0")
local body = '{CHAT_BODY % MODEL}'
request = function()
  i = i + 1
  local headers = {{["Content-Type"] = "application/json",
                   ["Authorization"] = "Bearer {prefix}" .. string.format("%07d", i % n)}}
  return wrk.format("POST", "/chat/completions", headers, body)
end
""")
    return one, rotation


def one_key_lua(path: str, body: str) -> str:
    """A wrk script sending `body` with the key in $BENCH_KEY."""
    with open(path, "w") as f:
        f.write(f"""wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
wrk.body = '{body}'
""")
    return path


def wrk(url: str, lua: str, seconds: float, connections: int = 8, env=None) -> dict:
    proc = start(pinned(1, "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", lua,
                        url + "/chat/completions"), env=env, stdout=subprocess.PIPE)
    try:
        out = proc.communicate(timeout=seconds + 30)[0].decode()
    finally:
        stop(proc)
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: (.*)", out)
    requests = re.search(r"(\d+) requests in", out)
    return {"rps": float(found.group(1)) if found else 0.0, "p50": p50.group(1) if p50 else "?",
            "requests": int(requests.group(1)) if requests else 0,
            "errors": (int(errors.group(1)) if errors else 0), "socket_errors": sockets.group(1) if sockets else ""}


def warm_up(gateway: Gateway, lua: str, key: str, seconds: float) -> None:
    """Imports, caches and upstream connections made before measuring (steady state, not start-up)."""
    wrk(gateway.url, lua, seconds, env={"BENCH_KEY": key})


def measure(gateway: Gateway, lua: str, seconds: float, env: dict) -> dict:
    """wrk's numbers, plus the gateway's own CPU time per request: what a call costs the worker,
    which other load on the machine changes far less than it changes req/s."""
    pids, before = gateway.pids(), gateway.cpu_seconds()
    row = wrk(gateway.url, lua, seconds, env=env)
    used = gateway.cpu_seconds() - before
    if gateway.proc.poll() is not None or gateway.pids() != pids:
        raise RuntimeError(f"the gateway's processes changed during a run ({pids} -> {gateway.pids()}); "
                           f"its log: {gateway.log}")
    row["cpu_us"] = used / row["requests"] * 1e6 if row["requests"] else 0.0
    return row


# -- taking turns ---------------------------------------------------------------------------------

def take_turns(check: str, scenarios: list, args, results: list) -> None:
    """Load one gateway at a time, in bursts of `--seconds`, the gateways taking turns `--rounds`
    times (each round starting with the next one): a drift in the machine's other load falls on
    every scenario alike. `scenarios`: (name, gateway, wrk script, environment)."""
    offsets = {name: 0 for name, *_ in scenarios}
    for round_ in range(args.rounds):
        shift = round_ % len(scenarios)
        for name, gateway, lua, env in scenarios[shift:] + scenarios[:shift]:
            row = measure(gateway, lua, args.seconds, env={**env, "BENCH_OFFSET": str(offsets[name])})
            offsets[name] += row["requests"] + 64  # and what was in flight when wrk stopped
            row["rotated"] = offsets[name] > ROTATION  # a rotation came round again: cache hits
            results.append({"check": check, "scenario": name, "round": round_ + 1, **row})
        done = {r["scenario"]: r["rps"] for r in results[-len(scenarios):]}
        print(f"  round {round_ + 1}: " + ", ".join(f"{done[name]:.0f}" for name, *_ in scenarios) + " req/s",
              flush=True)


# -- 1. deployments -------------------------------------------------------------------------------

def check_deployments(work: str, args, results: list) -> None:
    up = free_port()
    nginx = start_nginx(work, up, hosts=1000)
    base = f"http://127.0.0.1:{up}/v1"
    shapes = {
        "1 deployment": [(MODEL, base)],
        "1,000 deployments in the group, 1 upstream host": [(MODEL, base)] * 1000,
        "1,000 deployments in the group, 1,000 upstream hosts":
            [(MODEL, f"http://{upstream_host(i)}:{up}/v1") for i in range(1000)],
        "1,000 model groups, 1 deployment each": [(MODEL, base)] + [(f"model-{i:04d}", base) for i in range(1, 1000)],
    }
    one_key, _ = write_lua(work)
    try:
        configs = {shape: (write_config(os.path.join(work, f"deployments-{i}"), deployments), one_key)
                   for i, (shape, deployments) in enumerate(shapes.items())}
        turns_of_gateways("deployments", configs, args, results)
    finally:
        stop(nginx)


def turns_of_gateways(check: str, configs: dict, args, results: list) -> None:
    """Start a gateway per {scenario: (config, wrk script)}, each with a key of its own, warm them
    up, then let them take turns (`take_turns`); stop them all."""
    gateways = []
    try:
        scenarios = []
        for name, (config, lua) in configs.items():
            gateway = Gateway(config).__enter__()
            gateways.append(gateway)
            key = gateway.generate_key()
            warm_up(gateway, lua, key, args.warm_up)
            scenarios.append((name, gateway, lua, {"BENCH_KEY": key}))
        print(f"  {len(scenarios)} gateways up; order: " + " | ".join(configs), flush=True)
        take_turns(check, scenarios, args, results)
    finally:
        for gateway in gateways:
            gateway.__exit__()


# -- 2. keys --------------------------------------------------------------------------------------

def build_store(directory: str, count: int) -> int:
    """`count` keys (KEY_FORMAT numbers 0..count-1) inserted in one transaction with the store's
    own columns, encoding and hash; returns the SQLite file's size in bytes."""
    from proxy_app.store.sql import KEY_COLUMNS
    from proxy_app.store.sqlite import SQLiteStore
    from proxy_app.virtual_keys import hash_key, masked

    path = os.path.join(directory, "dheera_ai.sqlite3")
    store = SQLiteStore(path)
    store.migrate()
    insert = f"INSERT INTO keys ({', '.join(KEY_COLUMNS)}) VALUES ({', '.join('?' for _ in KEY_COLUMNS)})"
    now = time.time()
    with store._transaction(write=True) as cur:
        for first in range(0, count, 50_000):
            rows = []
            for i in range(first, min(first + 50_000, count)):
                key = KEY_FORMAT.format(i)
                row = {"key_hash": hash_key(key), "key_name": masked(key), "models": [], "metadata": {}, "tags": [],
                       "blocked": False, "created_at": now, "updated_at": now}
                rows.append(tuple(store._encode(c, row.get(c)) for c in KEY_COLUMNS))
            cur.executemany(insert, rows)
        store._bump(cur)
    with store._transaction() as cur:
        cur.execute("SELECT COUNT(*) FROM keys")
        assert cur.fetchone()[0] == count
    store._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = os.path.getsize(path)
    store.close()
    return size


def lookup_us(directory: str, count: int, lookups: int = 2000) -> float:
    """Microseconds per `lookup_key` of a random stored key (a cache miss's trip to the store),
    in this process: the same question as the rotation, without the machine's noise."""
    import random

    from proxy_app.store.sqlite import SQLiteStore
    from proxy_app.virtual_keys import hash_key

    store = SQLiteStore(os.path.join(directory, "dheera_ai.sqlite3"))
    hashes = [hash_key(KEY_FORMAT.format(random.randrange(count))) for _ in range(lookups)]
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for key_hash in hashes:
            assert store.lookup_key(key_hash)[0] is not None
        rounds.append((time.perf_counter() - started) / lookups * 1e6)
    store.close()
    return statistics.median(rounds)


def check_keys(work: str, args, results: list) -> None:
    up = free_port()
    nginx = start_nginx(work, up, hosts=0)
    one_key, rotation = write_lua(work)
    gateways = []
    try:
        directories = {}
        for count in (10, ROTATION, args.keys):
            directory = directories[count] = os.path.join(work, f"keys-{count}")
            write_config(directory, [(MODEL, f"http://127.0.0.1:{up}/v1")])
            started = time.monotonic()
            size = build_store(directory, count)
            built = time.monotonic() - started
            micros = lookup_us(directory, count)
            results.append({"check": "store", "keys": count, "store_mb": round(size / 1e6, 1),
                            "build_s": round(built, 1), "lookup_us": round(micros, 1)})
            print(f"  store of {count:,} keys: {size / 1e6:.1f} MB, built in {built:.1f} s, "
                  f"lookup_key {micros:.1f} µs", flush=True)
        # Two gateways on the large store: each its own copy (a state directory is one instance's).
        shutil.copytree(directories[args.keys], directories[args.keys] + "-rotation")
        plan = [(f"one key, {10:,} keys in the store", directories[10], one_key),
                (f"one key, {args.keys:,} keys in the store", directories[args.keys], one_key),
                (f"{ROTATION:,}-key rotation (each call a cache miss), {ROTATION:,} keys in the store",
                 directories[ROTATION], rotation),
                (f"{ROTATION:,}-key rotation (each call a cache miss), {args.keys:,} keys in the store",
                 directories[args.keys] + "-rotation", rotation)]
        scenarios = []
        for name, directory, lua in plan:
            gateway = Gateway(os.path.join(directory, "config.yaml")).__enter__()
            gateways.append(gateway)
            warm_up(gateway, one_key, MASTER, args.warm_up)
            scenarios.append((name, gateway, lua, {"BENCH_KEY": KEY_FORMAT.format(0), "BENCH_ROTATION": str(ROTATION)}))
        print(f"  {len(scenarios)} gateways up; order: " + " | ".join(name for name, *_ in plan), flush=True)
        take_turns("keys", scenarios, args, results)
        for name, gateway, *_ in scenarios:
            rss = sum(status_kb(pid, "VmRSS") for pid in gateway.pids())
            for row in results:
                if row.get("scenario") == name:
                    row["rss_kb"] = rss
    finally:
        for gateway in gateways:
            gateway.__exit__()
        stop(nginx)


# -- 3. features -----------------------------------------------------------------------------------

FEATURES = {"no feature": None, "OTel + Langfuse export": "otel",
            "guardrails configured, none for the key": "guardrails", "response cache, every call a hit": "cache"}


def check_features(work: str, args, results: list) -> None:
    up = free_port()
    nginx = start_nginx(work, up, hosts=0)
    one_key, _ = write_lua(work)
    asking = json.loads(CHAT_BODY % MODEL) | {"cache": {"use-cache": True}}  # the cache variant is default_off
    cached = one_key_lua(os.path.join(work, "cached.lua"), json.dumps(asking, separators=(",", ":")))
    try:
        configs = {}
        for i, (name, variant) in enumerate(FEATURES.items()):
            extra = ""
            if variant:
                with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "variants", f"{variant}.yaml")) as f:
                    extra = f.read().replace("BENCH_UPSTREAM", f"http://127.0.0.1:{up}")
            config = write_config(os.path.join(work, f"features-{i}"), [(MODEL, f"http://127.0.0.1:{up}/v1")], extra)
            configs[name] = (config, cached if variant == "cache" else one_key)
        turns_of_gateways("features", configs, args, results)
    finally:
        stop(nginx)


# -- 4. slow streams ------------------------------------------------------------------------------

def slow_upstream(port: int, hold: float) -> None:
    """An OpenAI-style stream that takes `hold` seconds: a chunk every STREAM_INTERVAL s, then [DONE]."""
    from gevent import monkey

    monkey.patch_all()
    import gevent
    from gevent.pywsgi import WSGIServer

    def chunk(delta: dict, **extra) -> bytes:
        event = {"id": "chatcmpl-slow", "object": "chat.completion.chunk", "created": 1700000000, "model": MODEL,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": extra.pop("finish", None)}], **extra}
        return b"data: " + json.dumps(event).encode() + b"\n\n"

    def app(environ, start_response):
        environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])

        def body():
            started = time.monotonic()
            yield chunk({"role": "assistant", "content": ""})
            while time.monotonic() - started < hold:
                gevent.sleep(min(STREAM_INTERVAL, max(0.0, hold - (time.monotonic() - started))))
                yield chunk({"content": "tick "})
            yield chunk({}, finish="stop", usage={"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20})
            yield b"data: [DONE]\n\n"

        return body()

    WSGIServer(("127.0.0.1", port), app, log=None, backlog=4096).serve_forever()


def stream_clients(port: int, count: int, key: str, timeout: float) -> None:
    """`count` streaming calls at once over raw sockets; prints a JSON summary."""
    from gevent import monkey

    monkey.patch_all()
    import gevent

    body = json.dumps({"model": "slow", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
    request = (f"POST /chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
               ).encode() + body

    def one(_):
        try:
            with gevent.Timeout(timeout), socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
                s.sendall(request)
                data = bytearray()
                while chunk := s.recv(65536):
                    data += chunk
        except (OSError, gevent.Timeout) as exc:
            return f"{type(exc).__name__}"
        head, _, rest = bytes(data).partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            return head.split(b"\r\n")[0].decode(errors="replace") or "no answer"
        return "done" if b"data: [DONE]" in dechunk(rest) else "no [DONE]"

    started = time.monotonic()
    outcomes = [g.value for g in gevent.joinall([gevent.spawn(one, i) for i in range(count)])]
    summary = {}
    for outcome in outcomes:
        summary[outcome] = summary.get(outcome, 0) + 1
    print(json.dumps({"outcomes": summary, "seconds": round(time.monotonic() - started, 1)}))


def dechunk(data: bytes) -> bytes:
    """An HTTP/1.1 chunked body, unframed (left as it is when it is not chunked)."""
    out, rest = bytearray(), data
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            return data
        if size == 0 or not sep:
            break
        out += rest[:size]
        rest = rest[size + 2:]
    return bytes(out)


def check_streams(work: str, args, results: list) -> None:
    up = free_port()
    here = [sys.executable, "-m", "tests.bench.scale"]
    upstream = start(pinned(1, *here, "_slow_upstream", str(up), str(args.hold)), cwd=REPO,
                     log=os.path.join(work, "slow_upstream.log"))
    try:
        wait_port("127.0.0.1", up, upstream)
        config = write_config(os.path.join(work, "streams"), [("slow", f"http://127.0.0.1:{up}/v1")])
        for round_ in range(args.stream_rounds):
            with Gateway(config) as gateway:
                key = gateway.generate_key("slow")
                pids = gateway.pids()
                idle = sum(status_kb(pid, "VmRSS") for pid in pids)
                clients = start(pinned(1, *here, "_stream_clients", str(gateway.port), str(args.streams), key,
                                       str(args.hold + 60)), cwd=REPO, stdout=subprocess.PIPE)
                peak = 0
                deadline = time.monotonic() + args.hold + 90
                while clients.poll() is None and time.monotonic() < deadline:
                    peak = max(peak, sum(status_kb(pid, "VmRSS") for pid in pids))
                    time.sleep(0.25)
                worker_hwm = max(status_kb(pid, "VmHWM") for pid in pids[1:]) if pids[1:] else 0
                open_files = open_files_limit(pids[-1])
                out = clients.communicate(timeout=30)[0].decode() if clients.poll() is not None else "{}"
                stop(clients)
                summary = json.loads(out.strip().splitlines()[-1] if out.strip() else "{}")
            outcomes = summary.get("outcomes", {})
            row = {"check": "streams", "scenario": f"{args.streams:,} streams of {args.hold:g} s, one worker",
                   "round": round_ + 1, "open_files": open_files, "idle_rss_kb": idle, "peak_rss_kb": peak,
                   "worker_hwm_kb": worker_hwm,
                   "done": outcomes.get("done", 0), "outcomes": outcomes, "seconds": summary.get("seconds")}
            results.append(row)
            print(f"  round {round_ + 1}: peak RSS {peak / 1024:.0f} MB (idle {idle / 1024:.0f} MB), "
                  f"{row['done']}/{args.streams} ended with [DONE] {outcomes}", flush=True)
    finally:
        stop(upstream)


# -- the table ------------------------------------------------------------------------------------

def report(results: list, seconds: float) -> None:
    print(f"\n## chat, 8 connections, bursts of {seconds:g} s, the gateways taking turns. Per burst: req/s, and "
          "the gateway's CPU time per request (master + worker); medians, and each as a ratio to the first row "
          "of its family")
    for check in ("deployments", "keys", "features"):
        rows = [r for r in results if r["check"] == check]
        if not rows:
            continue
        print(f"\n| {check} | req/s, rounds' range | median | ratio | CPU µs/request, range | median | ratio "
              "| errors | p50 ms |" + (" RSS MB after |" if check == "keys" else ""))
        print("|---|---|---|---|---|---|---|---|---|" + ("---|" if check == "keys" else ""))
        bases = {}  # scenarios compare with the first of their family (the words before the comma)
        for scenario in dict.fromkeys(r["scenario"] for r in rows):
            mine = [r for r in rows if r["scenario"] == scenario]
            rps, cpu = statistics.median(r["rps"] for r in mine), statistics.median(r.get("cpu_us", 0) for r in mine)
            base_rps, base_cpu = bases.setdefault(scenario.split(",")[0] if check == "keys" else check, (rps, cpu))
            errors = sum(r["errors"] for r in mine)
            sockets = "; ".join(r["socket_errors"] for r in mine if r["socket_errors"])
            p50 = statistics.median(milliseconds(r["p50"]) for r in mine)
            rotated = "rotation" in scenario and any(r.get("rotated") for r in mine)
            hits = " (some calls were cache hits)" if rotated else ""
            line = (f"| {scenario}{hits} | {spread(r['rps'] for r in mine)} | {rps:.0f} | "
                    f"{rps / base_rps if base_rps else 0:.2f} | {spread(r.get('cpu_us', 0) for r in mine)} | "
                    f"{cpu:.0f} | {cpu / base_cpu if base_cpu else 0:.2f} | "
                    f"{errors}{' ' + sockets if sockets else ''} | {p50:.1f} |")
            if check == "keys":
                line += f" {mine[-1].get('rss_kb', 0) / 1024:.0f} |"
            print(line)
    stores = [r for r in results if r["check"] == "store"]
    if stores:
        print("\n| keys in the store | SQLite file MB | bulk insert s | lookup_key µs (in process, median of 5) |")
        print("|---|---|---|---|")
        for r in stores:
            print(f"| {r['keys']:,} | {r['store_mb']} | {r['build_s']} | {r['lookup_us']} |")
    streams = [r for r in results if r["check"] == "streams"]
    if streams:
        print("\n| streams | round | worker's open files limit | idle RSS MB | peak RSS MB (master + worker) "
              "| worker VmHWM MB | ended with [DONE] | other outcomes | seconds |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in streams:
            others = {k: v for k, v in r["outcomes"].items() if k != "done"} or "none"
            print(f"| {r['scenario']} | {r['round']} | {r.get('open_files', '?')} | {r['idle_rss_kb'] / 1024:.0f} | "
                  f"{r['peak_rss_kb'] / 1024:.0f} | "
                  f"{r['worker_hwm_kb'] / 1024:.0f} | {r['done']} | {others} | {r['seconds']} |")


def spread(values) -> str:
    values = list(values)
    return f"{min(values):.0f}–{max(values):.0f}"


def milliseconds(text: str) -> float:
    """wrk's latency ('812.00us', '12.10ms', '1.02s') in ms."""
    for unit, factor in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if text.endswith(unit):
            return float(text[:-len(unit)]) * factor
    return float("nan")


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_slow_upstream":
        return slow_upstream(int(argv[1]), float(argv[2]))
    if argv and argv[0] == "_stream_clients":
        return stream_clients(int(argv[1]), int(argv[2]), argv[3], float(argv[4]))
    parser = argparse.ArgumentParser(prog="python -m tests.bench.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2, help="wrk's duration per burst")
    parser.add_argument("--rounds", type=int, default=8, help="turns each gateway takes (streams: runs)")
    parser.add_argument("--only", default="deployments,keys,features,streams")
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys in the large store")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--stream-rounds", type=int, default=2, help="runs of the streams check")
    parser.add_argument("--hold", type=float, default=30, help="seconds the slow upstream holds each stream")
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs, stores)")
    parser.add_argument("--report", metavar="JSON", help="print the tables of a --json file; measure nothing")
    parser.add_argument("--warm-up", type=float, default=10, help="seconds of load on each gateway before measuring")
    args = parser.parse_args(argv)
    if args.report:
        with open(args.report) as f:
            return report(json.load(f), args.seconds)
    need_tools()
    soft, hard = _OPEN_FILES
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))  # for wrk, the clients
    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    work = tempfile.mkdtemp(prefix="dheera-scale-")
    results: list = []
    checks = {"deployments": check_deployments, "keys": check_keys, "features": check_features,
              "streams": check_streams}
    try:
        for name in args.only.split(","):
            print(f"{name} ...", flush=True)
            checks[name](work, args, results)
    finally:
        stop_all()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    report(results, args.seconds)


if __name__ == "__main__":
    main()
