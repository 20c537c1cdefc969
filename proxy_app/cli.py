"""`dheera_ai`: validate the config, say what will be served, then become gunicorn.

The config is checked here, in full (plugins loaded, providers known), so a bad config stops
start-up with a clear message instead of workers failing one by one. Then the process execs
gunicorn: a fresh interpreter whose master imports nothing that gevent must patch first.
"""

from __future__ import annotations

import argparse
import os
import sys

DEFAULT_PORT = 4000


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dheera_ai", description="Run the Dheera AI LLM gateway.")
    parser.add_argument("--config", "-c", help="path to config.yaml (default: conf/config.yaml)")
    parser.add_argument("--model", "-m",
                        help="quick start without a config: serve this one model, e.g. openai/gpt-4o-mini")
    parser.add_argument("--host", help="address to bind (default 0.0.0.0 with a master key, else 127.0.0.1)")
    parser.add_argument("--port", "-p", type=int, default=DEFAULT_PORT)
    parser.add_argument("--workers", "--num_workers", dest="workers", type=int,
                        help="gevent worker processes (default: one per core)")
    parser.add_argument("--detailed_debug", action="store_true", help="debug logging (secrets stay redacted)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    from dheera_ai.config import SHORT_MASTER_KEY, ConfigError, read_config_file
    from dheera_ai.engine import Engine
    from proxy_app.app import DEFAULT_CONFIG, quick_start_config

    env = dict(os.environ)
    env.pop("DHEERA_AI_MODEL", None)
    env.pop("DHEERA_AI_CONFIG", None)
    try:
        if args.model:
            raw, source = quick_start_config(args.model), None
            env["DHEERA_AI_MODEL"] = args.model
        else:
            path = os.path.abspath(args.config or DEFAULT_CONFIG)
            raw, source = read_config_file(path), path
            env["DHEERA_AI_CONFIG"] = path
        engine = Engine.from_raw_config(raw, source=source)
    except ConfigError as e:
        sys.exit(f"dheera_ai: {e}")

    config = engine.config
    state = describe_state(config)
    host = args.host
    why = ""
    if config.short_master_key and host is not None and not is_loopback(host):
        sys.exit(f"dheera_ai: general_settings.master_key is shorter than {SHORT_MASTER_KEY} characters; "
                 f"refusing to listen on {host} with a key that easy to guess. Use a long random key, "
                 f"or listen on 127.0.0.1 (the default with a short key).")
    if host is None:
        host = "0.0.0.0" if config.master_key and not config.short_master_key else "127.0.0.1"
        if not config.master_key:
            why = ("  No general_settings.master_key is set, so anyone who can reach the gateway can use it:\n"
                   "  listening on 127.0.0.1 only. Set a master key, or pass --host to choose.\n")
        elif config.short_master_key:
            why = (f"  general_settings.master_key is shorter than {SHORT_MASTER_KEY} characters "
                   "(LiteLLM's sk-1234?):\n"
                   "  listening on 127.0.0.1 only; a longer key is needed to listen beyond loopback.\n")
    for warning in config.warnings:
        print(f"dheera_ai: warning: {warning}", file=sys.stderr)
    # The workers build the same config: they log these at debug level only, not once each.
    env["DHEERA_AI_CONFIG_WARNED"] = "1"
    workers = args.workers or os.cpu_count() or 1
    env["DHEERA_AI_BIND"] = f"{host}:{args.port}"
    env["DHEERA_AI_WORKERS"] = str(workers)
    if args.detailed_debug:
        env["DHEERA_AI_DEBUG"] = "1"

    shown_host = "localhost" if host in ("0.0.0.0", "127.0.0.1") else host
    models = engine.router.model_names()
    print(f"Dheera AI gateway on http://{shown_host}:{args.port}  (bind {host}, {workers} gevent worker(s))\n"
          f"  config: {source or f'--model {args.model}'}\n"
          f"  models: {', '.join(models) if models else '(none)'}\n"
          f"  state:  {state}\n{why}",
          file=sys.stderr, flush=True)
    command = [sys.executable, "-m", "gunicorn", "-c", "python:proxy_app.gunicorn_settings", "wsgi:app"]
    os.execve(sys.executable, command, env)


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve beyond loopback


def describe_state(config) -> str:
    """Migrate the store once before the workers start, and say where it is."""
    from proxy_app.store import StoreUnavailableError, open_store

    store = open_store(config)
    try:
        store.migrate()
        line = f"{store.backend} {store.describe()} (schema v{store.schema_version()})"
    except StoreUnavailableError as e:
        # Start anyway: workers retry, and keys they have seen keep working while it is down.
        line = f"{store.backend} {store.describe()} UNREACHABLE ({e.message})"
    finally:
        store.close()
    if config.general_settings.get("redis_url"):
        line += "; Redis for key-cache invalidation"
    return line


if __name__ == "__main__":
    main()
