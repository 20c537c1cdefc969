"""The virtual-key hot path: answered from the cache, invalidated everywhere, calm when the store is down."""

import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import MASTER_KEY
from tests.support.services import PostgresSchema, redis_url
from tests.support.tcp_proxy import TCPProxy
from tests.test_keys import chat, generate

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


def until(condition, timeout=3.0):
    """Wait until `condition()` holds (or give up); returns whether it did."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def fresh_prefix() -> str:
    """A `redis_key_prefix` no other gateway (or test run) on the shared Redis uses."""
    return f"dheera_ai_test:{uuid.uuid4().hex[:12]}:"


def gateway(make_app, base_config, **general_settings):
    config = {**base_config, "general_settings": {**base_config["general_settings"], **general_settings}}
    return make_app(config)


@pytest.fixture
def postgres_schema():
    schema = PostgresSchema()
    yield schema
    schema.drop()


def through(proxy: TCPProxy, url: str) -> str:
    return through_port(proxy.port, url)


def through_port(port: int, url: str) -> str:
    parts = urlsplit(url)
    netloc = (f"{parts.username}@" if parts.username else "") + f"127.0.0.1:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def test_the_cache_is_bounded_and_a_key_it_let_go_is_read_again(app, client):
    auth = app.extensions["dheera_ai_state"].auth
    auth.cache_keys = 2
    keys = [generate(client, AUTH)["key"] for _ in range(3)]
    assert [chat(client, key).status_code for key in keys] == [200, 200, 200]
    assert len(auth.cache) == 2  # the first key went to make room for the third
    assert chat(client, keys[0]).status_code == 200  # and is read from the store again
    assert len(auth.cache) == 2


def test_workers_of_one_instance_see_a_revocation_without_redis(make_app, base_config):
    # Two apps on one SQLite file are two gunicorn workers of one instance: separate caches.
    worker_a, worker_b = make_app(base_config).test_client(), make_app(base_config).test_client()
    key = generate(worker_a, AUTH)["key"]
    assert chat(worker_a, key).status_code == 200 and chat(worker_b, key).status_code == 200
    worker_b.post("/key/block", headers=AUTH, json={"key": key})
    assert chat(worker_b, key).status_code == 401
    assert until(lambda: chat(worker_a, key).status_code == 401), "worker A never noticed the block"


def test_a_store_outage_keeps_known_keys_working_and_answers_unknown_ones_503(make_app, base_config,
                                                                            postgres_schema):
    from tests.support.services import DATABASE_URL
    target = urlsplit(DATABASE_URL)
    proxy = TCPProxy(target.hostname, target.port or 5432)
    app = gateway(make_app, base_config, database_url=through(proxy, postgres_schema.url))
    client = app.test_client()
    known = generate(client, AUTH, models=["demo"])["key"]
    never_used = generate(client, AUTH)["key"]
    assert chat(client, known).status_code == 200  # cached from here on

    proxy.cut()
    assert chat(client, known).status_code == 200
    assert chat(client, known, model="gpt-4o-mini").status_code == 401  # the cache still scopes it
    unknown = chat(client, never_used)
    assert unknown.status_code == 503
    assert "store" in unknown.json["error"]["message"] and unknown.json["error"]["code"] == "store_unavailable"
    ready = client.get("/health/readiness").json
    assert ready["status"] == "degraded" and ready["state_store"]["status"] == "unreachable"
    assert "127.0.0.1" not in str(ready)  # an unauthenticated probe does not say where the database is
    assert client.post("/key/generate", headers=AUTH, json={}).status_code == 503


def test_a_store_down_at_start_up_is_migrated_when_it_returns(make_app, base_config, postgres_schema):
    from tests.support.servers import free_port
    from tests.support.services import DATABASE_URL
    port = free_port()
    app = gateway(make_app, base_config, database_url=through_port(port, postgres_schema.url))
    client = app.test_client()
    assert chat(client, "sk-some-key-nobody-issued").status_code == 503  # down: not "unknown"

    target = urlsplit(DATABASE_URL)
    TCPProxy(target.hostname, target.port or 5432, port=port)
    assert until(lambda: chat(client, "sk-some-key-nobody-issued").status_code != 503, timeout=10)
    assert chat(client, "sk-some-key-nobody-issued").status_code == 401
    key = generate(client, AUTH)["key"]
    assert chat(client, key).status_code == 200


def test_two_instances_on_postgres_and_redis_invalidate_each_other_within_a_second(make_app, base_config,
                                                                                   postgres_schema):
    shared = {"database_url": postgres_schema.url, "redis_url": redis_url(), "redis_key_prefix": fresh_prefix()}
    one, two = (gateway(make_app, base_config, **shared) for _ in range(2))
    for app in (one, two):
        app.extensions["dheera_ai_state"].auth.poll_seconds = 3600  # only Redis can tell them
    a, b = one.test_client(), two.test_client()
    key = generate(a, AUTH, models=["demo"])["key"]
    assert chat(a, key).status_code == 200 and chat(b, key).status_code == 200
    # Let both listeners subscribe before the change is published.
    assert until(lambda: all(app.extensions["dheera_ai_state"].invalidation._thread is not None
                             for app in (one, two)))
    time.sleep(0.3)

    b.post("/key/block", headers=AUTH, json={"key": key})
    blocked_at = time.time()
    assert until(lambda: chat(a, key).status_code == 401, timeout=1.0)
    print(f"instance A refused the key {time.time() - blocked_at:.3f}s after instance B blocked it")
    b.post("/key/unblock", headers=AUTH, json={"key": key})
    b.post("/key/update", headers=AUTH, json={"key": key, "models": ["gpt-4o-mini"]})
    assert until(lambda: chat(a, key).status_code == 401, timeout=1.0)


def test_only_gateways_under_one_redis_key_prefix_hear_each_others_invalidations(make_app, base_config,
                                                                                  postgres_schema):
    """Two deployments on one Redis (and here one store, so a missed message shows as a stale
    cache) keep their key caches apart when their `redis_key_prefix` differs."""
    import redis

    url = redis_url()
    ours, theirs = fresh_prefix(), fresh_prefix()
    shared = {"database_url": postgres_schema.url, "redis_url": url}
    apps = [gateway(make_app, base_config, redis_key_prefix=prefix, **shared) for prefix in (ours, ours, theirs)]
    for app in apps:
        app.extensions["dheera_ai_state"].auth.poll_seconds = 3600  # only Redis can tell them
    one, two, other = (app.test_client() for app in apps)
    key = generate(one, AUTH, models=["demo"])["key"]
    assert all(chat(c, key).status_code == 200 for c in (one, two, other))  # each starts its listener
    channels = {ours + "key_invalidation": 2, theirs + "key_invalidation": 1}
    listeners = redis.Redis.from_url(url)
    assert until(lambda: {name.decode(): n for name, n in listeners.pubsub_numsub(*channels)} == channels)
    time.sleep(0.3)  # each listener drops its cache once subscribed (what it may have missed): let that pass
    assert all(chat(c, key).status_code == 200 for c in (one, two, other))  # cached again

    two.post("/key/block", headers=AUTH, json={"key": key})
    assert until(lambda: chat(one, key).status_code == 401, timeout=1.0)  # same prefix: heard
    assert chat(two, key).status_code == 401
    assert not until(lambda: chat(other, key).status_code == 401, timeout=0.5)  # other prefix: still cached

    other.post("/key/unblock", headers=AUTH, json={"key": key})
    assert chat(other, key).status_code == 200
    assert not until(lambda: chat(one, key).status_code == 200 or chat(two, key).status_code == 200, timeout=0.5)


def test_readiness_reports_the_store_and_redis(make_app, base_config):
    body = gateway(make_app, base_config, redis_url=redis_url()).test_client().get("/health/readiness").json
    assert body["status"] == "ready"
    assert body["state_store"]["backend"] == "sqlite" and body["state_store"]["status"] == "connected"
    assert body["state_store"]["schema_version"] >= 1
    assert body["redis"]["status"] == "connected"


def test_a_redis_outage_never_fails_an_admin_change(make_app, base_config, caplog):
    from tests.support.servers import free_port
    app = gateway(make_app, base_config, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = app.test_client()
    key = generate(client, AUTH)["key"]
    assert chat(client, key).status_code == 200
    assert client.post("/key/block", headers=AUTH, json={"key": key}).status_code == 200
    assert chat(client, key).status_code == 401
    assert "could not publish a key invalidation" in caplog.text
    assert client.get("/health/readiness").json["redis"] == {"status": "unreachable"}
