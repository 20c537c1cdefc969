"""The store's contract, run against SQLite and PostgreSQL alike."""

import sqlite3
import threading

import pytest

from proxy_app.store import ConflictError, StoreUnavailableError, store_for_url
from proxy_app.store.migrations import MIGRATIONS
from proxy_app.store.sqlite import SQLiteStore


def key_row(key_hash="h1", **fields):
    return {"key_hash": key_hash, "key_name": "sk-...abcd", "models": [], "metadata": {}, "tags": [], **fields}


def test_migrations_apply_once_and_record_their_version(store):
    assert store.schema_version() == MIGRATIONS[-1][0]
    assert store.migrate() == []


def test_instances_starting_together_migrate_once(store_url, tmp_path):
    stores = [store_for_url(store_url, str(tmp_path)) for _ in range(4)]
    results, errors = [], []

    def start(s):
        try:
            results.append(s.migrate())
        except Exception as e:  # noqa: BLE001 - collected and asserted on below
            errors.append(e)

    threads = [threading.Thread(target=start, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == [[], [], [], [m[0] for m in MIGRATIONS]]
    for s in stores:
        s.close()


def test_a_key_round_trips_with_its_lists_and_objects(store):
    store.insert_key(key_row(models=["gpt-4o"], metadata={"team": "x"}, tags=["a"], rpm_limit=5, expires=123.5))
    row = store.get_key("h1")
    assert row["models"] == ["gpt-4o"] and row["metadata"] == {"team": "x"} and row["tags"] == ["a"]
    assert row["rpm_limit"] == 5 and row["expires"] == 123.5 and row["blocked"] is False


def test_a_duplicate_key_or_alias_is_a_conflict(store):
    store.insert_key(key_row("h1", key_alias="ci"))
    with pytest.raises(ConflictError):
        store.insert_key(key_row("h1"))
    with pytest.raises(ConflictError):
        store.insert_key(key_row("h2", key_alias="ci"))
    store.insert_key(key_row("h3"))
    with pytest.raises(ConflictError):
        store.update_key("h3", {"key_alias": "ci"})
    # The failed statements left the store usable.
    assert store.get_key("h3")["key_alias"] is None


def test_keys_list_by_filter_and_page(store):
    store.insert_user({"user_id": "u1", "user_role": "internal_user", "models": [], "metadata": {}})
    for i in range(5):
        store.insert_key(key_row(f"h{i}", user_id="u1" if i % 2 == 0 else None, created_at=100 + i))
    rows, total = store.list_keys(user_id="u1", offset=1, limit=1)
    assert total == 3 and [r["key_hash"] for r in rows] == ["h2"]
    rows, total = store.list_keys(offset=0, limit=10)
    assert total == 5 and [r["key_hash"] for r in rows] == ["h0", "h1", "h2", "h3", "h4"]


def test_keys_users_and_teams_are_searched_by_a_piece_of_their_names(store):
    for user_id, email in (("ann", "ann@example.com"), ("bob", "BOB@corp.example"), ("a_b", None)):
        store.insert_user({"user_id": user_id, "user_email": email, "user_role": "internal_user", "models": [],
                           "metadata": {}})
    store.insert_team({"team_id": "search", "team_alias": "Search Ranking", "models": [], "metadata": {},
                       "tags": []})
    store.insert_team({"team_id": "ops", "team_alias": None, "models": [], "metadata": {}, "tags": []})
    store.insert_key(key_row("h1", key_alias="search-prod", team_id="search"))
    store.insert_key(key_row("h2", key_alias="billing", user_id="bob"))
    assert [r["user_id"] for r in store.list_users(search="corp")[0]] == ["bob"]
    assert store.list_users(search="b_b")[1] == 0  # "_" is a character here, not LIKE's wildcard (bob)
    assert store.list_users(limit=2)[1] == 3 and len(store.list_users(limit=2)[0]) == 2
    assert [r["team_id"] for r in store.list_teams(search="ranking")[0]] == ["search"]
    assert [r["key_hash"] for r in store.list_keys(search="SEARCH")[0]] == ["h1"]
    assert [r["key_hash"] for r in store.list_keys(search="bob")[0]] == ["h2"]
    assert store.list_keys(search="%")[1] == 0


def test_deleted_and_regenerated_keys_are_remembered_as_such(store):
    store.insert_key(key_row("h1"))
    store.insert_key(key_row("h2"))
    assert store.delete_keys(["h1", "nope"]) == ["h1"]
    assert store.lookup_key("h1") == (None, "deleted")
    moved = store.regenerate_key("h2", "h3", "sk-...wxyz", {"rpm_limit": 9})
    assert moved["key_hash"] == "h3" and moved["rpm_limit"] == 9
    assert store.lookup_key("h2") == (None, "regenerated")
    assert store.lookup_key("never") == (None, None)


def test_every_change_moves_the_state_version(store):
    store.insert_key(key_row("h1"))
    before = store.state_version()
    store.update_key("h1", {"blocked": True})
    assert store.state_version() > before


def test_deleting_a_team_deletes_its_keys_and_memberships(store):
    store.insert_user({"user_id": "u1", "user_role": "internal_user", "models": [], "metadata": {}})
    store.insert_team({"team_id": "t1", "models": ["gpt-4o"], "metadata": {}, "tags": []}, [("u1", "admin")])
    store.insert_key(key_row("h1", team_id="t1"))
    assert store.team_members("t1") == [{"user_id": "u1", "role": "admin"}]
    assert store.user_teams("u1") == ["t1"]
    assert store.delete_teams(["t1"]) == (["t1"], ["h1"])
    assert store.get_team("t1") is None and store.user_teams("u1") == []
    assert store.lookup_key("h1") == (None, "deleted")


def test_deleting_a_user_deletes_their_keys(store):
    store.insert_user({"user_id": "u1", "user_role": "internal_user", "models": [], "metadata": {}})
    store.insert_key(key_row("h1", user_id="u1"))
    assert store.delete_users(["u1"]) == (["u1"], ["h1"])
    assert store.get_user("u1") is None and store.get_key("h1") is None


def test_members_are_added_and_removed(store):
    store.insert_team({"team_id": "t1", "models": [], "metadata": {}, "tags": []})
    store.add_team_members("t1", [("u1", "user"), ("u2", "admin")])
    store.add_team_members("t1", [("u1", "admin")])  # a second add changes the role
    assert store.team_members("t1") == [{"user_id": "u1", "role": "admin"}, {"user_id": "u2", "role": "admin"}]
    assert store.remove_team_members("t1", ["u2", "u3"]) == ["u2"]


def test_a_store_that_cannot_be_reached_says_so(tmp_path):
    down = store_for_url("postgresql://postgres@127.0.0.1:1/none", str(tmp_path))
    with pytest.raises(StoreUnavailableError):
        down.state_version()
    down.close()
    unwritable = store_for_url(f"sqlite:///{tmp_path}/file-not-dir/x.sqlite3", str(tmp_path))
    (tmp_path / "file-not-dir").write_text("")
    with pytest.raises(StoreUnavailableError):
        unwritable.migrate()


def test_sqlite_keeps_its_file_in_wal_mode(tmp_path):
    store = store_for_url(None, str(tmp_path))
    store.migrate()
    assert (tmp_path / "dheera_ai.sqlite3").exists()
    with sqlite3.connect(tmp_path / "dheera_ai.sqlite3") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_login_failures_are_counted_per_client_and_forgotten_after_the_window(store):
    for moment in (100.0, 200.0, 300.0):
        store.record_login_failure("10.0.0.1", moment, forget_before=0.0)
    store.record_login_failure("10.0.0.2", 310.0, forget_before=0.0)
    assert store.login_failures("10.0.0.1", since=150.0) == [200.0, 300.0]
    store.record_login_failure("10.0.0.2", 400.0, forget_before=250.0)  # drops what is older than that
    assert store.login_failures("10.0.0.1", since=0.0) == [300.0]
    assert store.login_failures("10.0.0.2", since=0.0) == [310.0, 400.0]


def _index_columns(store) -> list[tuple[str, str, tuple]]:
    """(table, index, its columns in order) for every index of the schema, the primary keys' too."""
    with store._transaction() as cur:
        if isinstance(store, SQLiteStore):
            cur.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
            out = []
            for (table,) in cur.fetchall():
                cur.execute(f"PRAGMA index_list('{table}')")
                for index in [row[1] for row in cur.fetchall()]:
                    cur.execute(f"PRAGMA index_info('{index}')")
                    out.append((table, index, tuple(row[2] for row in sorted(cur.fetchall()))))
            return out
        cur.execute("SELECT t.relname, i.relname, array_agg(a.attname ORDER BY k.ord) FROM pg_index x "
                    "JOIN pg_class t ON t.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid "
                    "JOIN pg_namespace n ON n.oid = t.relnamespace "
                    "CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, ord) "
                    "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum "
                    "WHERE n.nspname = current_schema() GROUP BY t.relname, i.relname")
        return [(table, index, tuple(columns)) for table, index, columns in cur.fetchall()]


def test_no_two_indexes_of_a_table_cover_the_same_columns(store):
    """Each index is written on every insert: spend rows are inserted on every call, so one index
    too many is a cost every call pays (spend_logs had two on request_id)."""
    seen: dict = {}
    for table, index, columns in _index_columns(store):
        assert (table, columns) not in seen, f"{index} repeats {seen[table, columns]}: {table}{columns}"
        seen[table, columns] = index
    assert ("spend_logs", ("request_id",)) in seen  # the lookup /spend/logs?request_id= uses
