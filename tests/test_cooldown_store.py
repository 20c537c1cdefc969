"""Cooldown state shared between workers (SQLite) and between instances (Redis)."""

import logging
import os
import time
import uuid

import pytest

from dheera_ai.router import cooldowns
from dheera_ai.router.cooldowns import RedisCooldowns, SQLiteCooldowns
from tests.support.servers import free_port

REDIS_URL = os.environ.get("DHEERA_AI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_prefix():
    """A key prefix of this test's own, removed afterwards; skips without Redis (fails under CI)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as e:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {e}")
    prefix = f"dheera_ai-test-{uuid.uuid4().hex[:8]}:"
    yield prefix
    keys = list(client.scan_iter(prefix + "*"))
    if keys:
        client.delete(*keys)


def wait_for_refresh():
    time.sleep(cooldowns.REFRESH + 0.02)


def test_sqlite_cooldowns_are_seen_by_another_process_store(tmp_path):
    path = str(tmp_path / cooldowns.RUNTIME_FILE)
    worker_one, worker_two = SQLiteCooldowns(path), SQLiteCooldowns(path)
    assert worker_two.cooling() == {} and not os.path.exists(path), "nothing failed: no file yet"

    assert worker_one.record_failure("dep-a", allowed_fails=2, cooldown_time=30) is False
    assert worker_two.record_failure("dep-a", allowed_fails=2, cooldown_time=30) is True  # counts are shared
    wait_for_refresh()
    assert worker_one.cooling()["dep-a"] > time.time() + 25
    assert "dep-a" in worker_two.cooling()


def test_sqlite_failures_older_than_the_window_do_not_count(tmp_path, monkeypatch):
    store = SQLiteCooldowns(str(tmp_path / cooldowns.RUNTIME_FILE))
    store.record_failure("dep-a", allowed_fails=2, cooldown_time=30)
    monkeypatch.setattr(cooldowns, "FAILURE_WINDOW", 0.0)
    time.sleep(0.01)
    assert store.record_failure("dep-a", allowed_fails=2, cooldown_time=30) is False


def test_redis_cooldowns_are_shared_by_instances(tmp_path, redis_prefix):
    one = RedisCooldowns(REDIS_URL, redis_prefix, SQLiteCooldowns(str(tmp_path / "one.sqlite3")))
    two = RedisCooldowns(REDIS_URL, redis_prefix, SQLiteCooldowns(str(tmp_path / "two.sqlite3")))
    assert one.record_failure("dep-a", allowed_fails=2, cooldown_time=30) is False
    assert two.record_failure("dep-a", allowed_fails=2, cooldown_time=30) is True
    wait_for_refresh()
    assert "dep-a" in one.cooling() and "dep-a" in two.cooling()
    assert not os.path.exists(tmp_path / "one.sqlite3"), "Redis answered: the local store was not used"


def test_a_gateway_with_redis_url_keeps_its_cooldowns_in_redis(make_app, upstream, redis_prefix, tmp_path,
                                                                monkeypatch):
    import redis

    monkeypatch.chdir(tmp_path)
    upstream.always("/a/", status=500)
    config = {"model_list": [
        {"model_name": "m", "model_info": {"id": name},
         "dheera_ai_params": {"model": "openai/m", "api_base": f"{upstream.url}/{name}/v1", "api_key": "sk-x"}}
        for name in ("a", "b")],
        "router_settings": {"allowed_fails": 1, "cooldown_time": 30},
        "general_settings": {"redis_url": REDIS_URL, "redis_key_prefix": redis_prefix}}
    client = make_app(config).test_client()
    while upstream.count("/a/") < 1:
        client.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert redis.Redis.from_url(REDIS_URL).hget(redis_prefix + "cooldown", "a") is not None


def test_when_redis_is_down_the_local_store_stands_in_with_a_warning(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="dheera_ai.router")
    local = SQLiteCooldowns(str(tmp_path / cooldowns.RUNTIME_FILE))
    store = RedisCooldowns(f"redis://127.0.0.1:{free_port()}/0", "dheera_ai-test:", local)
    assert store.record_failure("dep-a", allowed_fails=1, cooldown_time=30) is True
    assert "dep-a" in store.cooling()
    assert "Redis unreachable" in caplog.text
