"""PostgreSQL and Redis for the tests that need them.

URLs come from DHEERA_AI_TEST_DATABASE_URL / DHEERA_AI_TEST_REDIS_URL (default: the local
services). Unreachable means skip, except under CI=true, where it means fail. Each use gets a
schema (PostgreSQL) or channel (Redis) of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import quote

import pytest

DATABASE_URL = os.environ.get("DHEERA_AI_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("DHEERA_AI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def unavailable(what: str, error: Exception):
    message = f"{what} is not reachable ({error})"
    if os.environ.get("CI") == "true":
        pytest.fail(message + "; under CI=true these tests must run")
    pytest.skip(message)


class PostgresSchema:
    """A fresh schema in the test database; `url` points a store at it through search_path."""

    def __init__(self):
        import psycopg

        self.name = "dheera_test_" + uuid.uuid4().hex[:12]
        try:
            self._admin = psycopg.connect(DATABASE_URL, autocommit=True, connect_timeout=3)
        except psycopg.OperationalError as e:
            unavailable(f"PostgreSQL at {DATABASE_URL}", e)
        self._admin.execute(f'CREATE SCHEMA "{self.name}"')
        separator = "&" if "?" in DATABASE_URL else "?"
        self.url = f"{DATABASE_URL}{separator}options={quote(f'-csearch_path={self.name}')}"

    def rows_containing(self, text: str) -> int:
        """How many cells of any table in the schema contain `text` (to prove it is not stored)."""
        found = 0
        tables = self._admin.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                                     (self.name,)).fetchall()
        for (table,) in tables:
            found += self._admin.execute(f'SELECT COUNT(*) FROM "{self.name}"."{table}" t '
                                         "WHERE t::text LIKE %s", (f"%{text}%",)).fetchone()[0]
        return found

    def query(self, sql: str, *params) -> list[tuple]:
        """The rows of `sql`, in which `{schema}` stands for this schema (quoted)."""
        return self._admin.execute(sql.replace("{schema}", f'"{self.name}"'), params).fetchall()

    def drop(self):
        self._admin.execute(f'DROP SCHEMA "{self.name}" CASCADE')
        self._admin.close()


def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as e:
        unavailable(f"Redis at {REDIS_URL}", e)
    return REDIS_URL


@pytest.fixture
def postgres():
    schema = PostgresSchema()
    yield schema
    schema.drop()


@pytest.fixture
def redis_channel():
    """A Redis URL and a channel name no other test run listens on."""
    return redis_url(), "dheera_ai_test:" + uuid.uuid4().hex[:12]


@pytest.fixture
def proxied_redis():
    """Real Redis behind a TCP proxy the test can cut or slow, and a key prefix of its own:
    yields (proxy, the URL through it, the prefix, a client talking to Redis directly)."""
    import redis

    from tests.support.tcp_proxy import TCPProxy

    url = redis_url()
    target = redis.connection.parse_url(url)
    proxy = TCPProxy(target.get("host", "127.0.0.1"), target.get("port", 6379))
    prefix = f"dheera_ai_test:{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(url, socket_timeout=2)
    yield proxy, f"redis://127.0.0.1:{proxy.port}/{target.get('db', 0)}", prefix, client
    proxy.cut()
    keys = list(client.scan_iter(prefix + "*"))
    if keys:
        client.delete(*keys)


PGVECTOR_URL = os.environ.get("DHEERA_AI_TEST_PGVECTOR_URL")


@pytest.fixture(scope="session")
def pgvector_server(tmp_path_factory):
    """A PostgreSQL with pgvector: DHEERA_AI_TEST_PGVECTOR_URL's, else one the `pgserver` wheel
    (a test dependency: PostgreSQL and pgvector built for pip) runs for this session on a Unix
    socket. Yields a function giving a fresh database's URL."""
    import psycopg

    server = None
    url = PGVECTOR_URL
    if url is None:
        try:
            import pgserver

            server = pgserver.get_server(str(tmp_path_factory.mktemp("pgvector")), cleanup_mode="stop")
            url = server.get_uri()
        except Exception as e:  # noqa: BLE001 - whatever kept it from starting, name it
            unavailable("a pgvector server (pgserver)", e)
    try:
        admin = psycopg.connect(url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as e:
        unavailable(f"pgvector at {url}", e)

    def fresh_database() -> str:
        name = "dheera_test_" + uuid.uuid4().hex[:12]
        admin.execute(f'CREATE DATABASE "{name}"')
        parts = psycopg.conninfo.conninfo_to_dict(url)
        parts["dbname"] = name
        return "postgresql://?" + "&".join(f"{k}={quote(str(v))}" for k, v in parts.items() if v not in (None, ""))
    yield fresh_database
    admin.close()
    if server is not None:
        server.cleanup()
