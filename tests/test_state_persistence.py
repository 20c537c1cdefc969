"""The state store under the real `dheera_ai` command: restarts, and instances sharing PostgreSQL + Redis."""

import time

import openai
import pytest
import requests
import yaml

from tests.support.process import GatewayProcess
from tests.support.services import PostgresSchema, redis_url

MASTER = "sk-state-master-key"


def write_config(path, **general_settings):
    path.write_text(yaml.safe_dump({
        "model_list": [{"model_name": "demo", "dheera_ai_params": {"model": "mock/demo"}},
                       {"model_name": "other", "dheera_ai_params": {"model": "mock/other"}}],
        "general_settings": {"master_key": MASTER, **general_settings},
    }))
    return path


def start(config_file, workers=1):
    process = GatewayProcess("--config", str(config_file), "--workers", str(workers), "--host", "127.0.0.1")
    process.wait_ready()
    return process


def admin(gateway, path, **body):
    response = requests.post(gateway.url + path, json=body, headers={"Authorization": f"Bearer {MASTER}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def status(gateway, key, model="demo"):
    return requests.post(gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                         json={"model": model, "messages": [{"role": "user", "content": "hi"}]}, timeout=10).status_code


def test_keys_survive_a_restart_in_the_sqlite_file_beside_the_config(tmp_path):
    config = write_config(tmp_path / "config.yaml")
    gateway = start(config)
    try:
        assert "state:  sqlite" in gateway.output()
        key = admin(gateway, "/key/generate", models=["demo"], key_alias="survivor")["key"]
        assert status(gateway, key) == 200
    finally:
        gateway.close()

    state_file = tmp_path / "dheera_ai.sqlite3"
    assert state_file.exists()
    on_disk = b"".join(p.read_bytes() for p in tmp_path.glob("dheera_ai.sqlite3*"))
    assert b"survivor" in on_disk and key[3:].encode() not in on_disk

    gateway = start(config)
    try:
        client = openai.OpenAI(base_url=gateway.url, api_key=key, max_retries=0, timeout=10)
        assert client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}]).id
        assert status(gateway, key, model="other") == 401
    finally:
        gateway.close()


def test_a_bad_database_url_stops_start_up_naming_the_key(tmp_path):
    gateway = GatewayProcess("--config", str(write_config(tmp_path / "c.yaml", database_url="mysql://x")))
    assert gateway.process.wait(30) != 0
    assert "general_settings.database_url" in gateway.output()
    gateway.close()


@pytest.fixture
def postgres_schema():
    schema = PostgresSchema()
    yield schema
    schema.drop()


def test_two_gateways_share_keys_through_postgres_and_revoke_through_redis(tmp_path, postgres_schema):
    shared = {"database_url": postgres_schema.url, "redis_url": redis_url()}
    one = start(write_config(tmp_path / "one.yaml", **shared), workers=2)
    two = start(write_config(tmp_path / "two.yaml", **shared), workers=2)
    try:
        assert "state:  postgresql" in one.output()
        key = admin(one, "/key/generate", models=["demo"])["key"]
        # Several calls, so that every worker of both instances has the key cached.
        assert all(status(g, key) == 200 for g in (one, two) for _ in range(6))
        assert postgres_schema.rows_containing(key[3:]) == 0

        admin(two, "/key/block", key=key)
        blocked_at = time.time()
        while any(status(one, key) != 401 for _ in range(4)) and time.time() - blocked_at < 3:
            time.sleep(0.05)
        took = time.time() - blocked_at
        assert all(status(one, key) == 401 for _ in range(6))
        print(f"every worker of the other instance refused the key within {took:.3f}s")
    finally:
        one.close()
        two.close()
