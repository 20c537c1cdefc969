import importlib
import logging
import os

import pytest

import plugins
from plugins import observability
from proxy_app import create_app
from tests.support.fake_upstream import FakeUpstream
from tests.support.servers import LiveServer
from tests.support.services import pgvector_server, proxied_redis  # noqa: F401 - fixtures for every module

MASTER_KEY = "sk-test-master-key"

# google-auth, finding no credentials, would probe the GCE metadata server (169.254.169.254);
# tests talk to 127.0.0.1 only.
os.environ.setdefault("NO_GCE_CHECK", "True")


def builtin_plugins():
    return [importlib.import_module(name) for name in plugins.BUILTIN]


@pytest.fixture
def upstream():
    server = FakeUpstream()
    yield server
    server.close()


@pytest.fixture
def base_config(upstream, tmp_path):
    """A gateway with one OpenAI-compatible deployment on the fake upstream and the mock model,
    its state in a SQLite file of its own."""
    return {
        "model_list": [
            {"model_name": "gpt-4o-mini",
             "dheera_ai_params": {"model": "openai/gpt-4o-mini", "api_base": upstream.url + "/v1",
                                  "api_key": "sk-upstream-secret"}},
            {"model_name": "demo", "dheera_ai_params": {"model": "mock/demo"}},
        ],
        "general_settings": {"master_key": MASTER_KEY, "database_url": f"sqlite:///{tmp_path}/state.sqlite3"},
    }


@pytest.fixture
def make_app():
    """Build gateways; their state (store connections, key-cache threads) is closed afterwards."""
    built = []

    def make(config, extra_plugins=()):
        app = create_app(config, load_entrypoints=False, plugins=builtin_plugins() + list(extra_plugins))
        built.append(app)
        return app
    yield make
    for app in built:
        app.extensions["dheera_ai_state"].close()
    observability.shutdown()  # exporters the gateways started send what they hold, and stop


@pytest.fixture
def store_refuses_spend(monkeypatch):
    """`store_refuses_spend(app)`: its store refuses spend rows, as a database that is down would,
    so they wait in the spool."""
    from proxy_app.store import StoreUnavailableError

    def down(rows):
        raise StoreUnavailableError("The state store is down (test).", code="store_unavailable")

    def apply(app):
        monkeypatch.setattr(app.extensions["dheera_ai_state"].store, "record_spend", down)
    return apply


@pytest.fixture
def app(make_app, base_config):
    return make_app(base_config)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def live(app):
    server = LiveServer(app)
    yield server
    server.close()


@pytest.fixture
def live_app(make_app):
    """`live_app(config)`: a gateway built from `config`, served over real HTTP for the SDKs."""
    servers = []

    def serve(config, extra_plugins=()):
        servers.append(LiveServer(make_app(config, extra_plugins)))
        return servers[-1]
    yield serve
    for server in servers:
        server.close()


@pytest.fixture
def openai_client(live):
    import openai
    return openai.OpenAI(base_url=live.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=10)


@pytest.fixture
def auth():
    return {"Authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture
def call_log(caplog):
    """The structured call-log lines written during the test, parsed.

    `call_log(n)` waits (briefly) until at least n lines exist: a stream's line is written in the
    server's thread just after the client has read the last byte.
    """
    import json
    import time

    caplog.set_level(logging.INFO, logger="dheera_ai.calls")

    def lines(count=1, timeout=5.0):
        deadline = time.time() + timeout
        while True:
            found = [json.loads(r.getMessage()) for r in caplog.records if r.name == "dheera_ai.calls"]
            if len(found) >= count or time.time() > deadline:
                return found
            time.sleep(0.01)
    return lines
