"""The ceiling `make bench` measures the gateway against: the least a Flask + gevent + requests
relay can do per request, served by the same gunicorn gevent worker on the same core.

No auth beyond one string compare, no hooks, no validation, no logging. Served as
`gunicorn -k gevent tests.bench.relay:app` with BENCH_UPSTREAM naming the fixed upstream.
"""

import os

import requests
from flask import Flask, Response, request

app = Flask(__name__)
_session = None


@app.post("/chat/completions")
def chat():
    global _session
    if _session is None:  # built in the worker, after gunicorn forked it
        _session = requests.Session()
        _session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=256))
    if request.headers.get("Authorization") != "Bearer sk-bench-master":
        return {"error": {"message": "bad key"}}, 401
    body = request.get_json()
    upstream = os.environ["BENCH_UPSTREAM"]
    if body["model"].endswith("-stream"):
        upstream += "/stream"
    r = _session.post(upstream + "/v1/chat/completions", json=body, stream=bool(body.get("stream")), timeout=60,
                      headers={"Authorization": "Bearer sk-upstream"})
    if body.get("stream"):
        return Response((line + b"\n\n" for line in r.iter_lines() if line), mimetype="text/event-stream")
    return r.json()
