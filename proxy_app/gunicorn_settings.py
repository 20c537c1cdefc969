"""gunicorn settings for the gateway (loaded by the master: import nothing heavy here).

`dheera_ai` passes these with `-c python:proxy_app.gunicorn_settings`; conf/gunicorn.conf.py
re-exports them for a plain `gunicorn -c conf/gunicorn.conf.py wsgi:app`.
"""

import glob
import os
import shutil

bind = os.environ.get("DHEERA_AI_BIND", "127.0.0.1:4000")
# gevent workers: one per core, each holding many connections (streams mostly wait on upstreams).
worker_class = "proxy_app.worker.GeventWorker"
workers = int(os.environ.get("DHEERA_AI_WORKERS") or os.cpu_count() or 1)
worker_connections = 1000
# Monkey-patching must happen in each worker before the app exists: never preload.
preload_app = False
# gevent workers heartbeat from their own greenlet, so this only catches a stuck worker.
timeout = 60
# On SIGTERM, in-flight calls (long streams included) get this long to finish.
graceful_timeout = 60
# Idle keep-alive connections count as in-flight during a graceful stop, so this bounds how long
# a SIGTERM waits for them. nginx's upstream keepalive_timeout must be shorter (it closes first).
keepalive = 5
# A memory safety valve: workers are replaced now and then, not all at once. A replacement costs
# its connections and a second of start-up, and a worker does ~1,000 calls a second: at 20,000 it
# restarted every 20 s under load (seen as socket errors in the benchmark), now every ~8 minutes.
max_requests = 500_000
max_requests_jitter = 50_000
limit_request_line = 8190
# One structured line per call comes from the call log. DHEERA_AI_ACCESS_LOG=1 adds one JSON line
# per HTTP request (probes and admin routes too) from gunicorn, in the call log's style.
accesslog = "-" if os.environ.get("DHEERA_AI_ACCESS_LOG") else None
logger_class = "proxy_app.logs.AccessLogger" if accesslog else "gunicorn.glogging.Logger"
errorlog = "-"
loglevel = "debug" if os.environ.get("DHEERA_AI_DEBUG") else "info"
# gunicorn 25+ opens a control socket at one per-user path: several instances on a host would
# fight over it, and it is a management surface nobody asked for.
control_socket_disable = True


# The samples directory this master made, if it made one: removed when it stops.
_made_directory = None


def on_starting(server):
    """Give every worker one directory for Prometheus samples, so /metrics counts them all, and
    enough open files for its connections."""
    global _made_directory
    raise_open_files_limit(server.log)
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
        for stale in glob.glob(os.path.join(directory, "*.db")):  # samples of a previous run
            os.unlink(stale)
    else:
        import tempfile  # the master's imports are every worker's memory too: only when needed

        _made_directory = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="dheera-ai-metrics-")


def on_exit(server):
    """Remove the samples directory on_starting made (a configured one stays, for its owner)."""
    if _made_directory:
        shutil.rmtree(_made_directory, ignore_errors=True)


def post_worker_init(worker):
    """The worker has built its app: what exists now (modules, config, plugins) lives as long as
    the worker, so the garbage collector stops scanning it. A full collection of a started
    gateway's ~57,000 objects stalled every call in the worker for 16-21 ms; after the freeze
    it scans only what calls made since."""
    import gc

    gc.collect()
    gc.freeze()


def worker_exit(server, worker):
    """In the exiting worker (SIGTERM included): exporters send what they have queued, and the
    metrics write their last counts."""
    from plugins import observability

    observability.shutdown()
    state = getattr(worker.wsgi, "extensions", {}).get("dheera_ai_state")
    if state is not None and state.metrics is not None:
        state.metrics.close()


def child_exit(server, worker):
    """A dead worker's in-flight gauge must not count any more (its counters still do)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def raise_open_files_limit(log=None) -> None:
    """A held call needs two descriptors (client and upstream), so `worker_connections` calls need
    more than the common default soft limit of 1,024: lift it to the hard limit (workers inherit it)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20  # Linux's default ceiling (nr_open)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    if log is not None and soft != resource.RLIM_INFINITY and soft < 2 * worker_connections + 64:
        log.warning("open files are limited to %d: %d calls held per worker need about %d (raise `ulimit -n`)",
                    soft, worker_connections, 2 * worker_connections + 64)
