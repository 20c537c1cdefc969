"""The store fixtures: each store test runs on SQLite and on PostgreSQL."""

import pytest

from proxy_app.store import store_for_url
from tests.support.services import PostgresSchema


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/state.sqlite3"
        return
    schema = PostgresSchema()
    yield schema.url
    schema.drop()


@pytest.fixture
def store(store_url, tmp_path):
    opened = store_for_url(store_url, str(tmp_path))
    opened.migrate()
    yield opened
    opened.close()
