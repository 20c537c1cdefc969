"""The state store: keys, users and teams (and, later, spend), on SQLite or PostgreSQL.

`open_store(config)` picks the backend from `general_settings.database_url`:
`sqlite:///path/to/file`, `postgresql://...`, or nothing for `dheera_ai.sqlite3` beside the config.
Nothing connects until the store is first used.
"""

from __future__ import annotations

import os

from proxy_app.store.sql import ConflictError, SQLStore, StoreUnavailableError

DEFAULT_SQLITE_FILE = "dheera_ai.sqlite3"

__all__ = ["ConflictError", "SQLStore", "StoreUnavailableError", "open_store", "store_for_url"]


def store_for_url(url: str | None, state_dir: str) -> SQLStore:
    """The store a database URL names; relative SQLite paths are taken from `state_dir`."""
    if not url:
        from proxy_app.store.sqlite import SQLiteStore

        return SQLiteStore(os.path.join(state_dir, DEFAULT_SQLITE_FILE))
    if url.startswith("sqlite:///"):
        from proxy_app.store.sqlite import SQLiteStore

        return SQLiteStore(os.path.join(state_dir, url[len("sqlite:///"):]))
    if url.startswith(("postgresql://", "postgres://")):
        from proxy_app.store.postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError("database_url must start with sqlite:/// or postgresql://")


def open_store(config) -> SQLStore:
    return store_for_url(config.general_settings.get("database_url"), config.state_dir)
