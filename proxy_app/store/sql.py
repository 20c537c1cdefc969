"""The store's operations, written once in the SQL that SQLite and PostgreSQL share.

A backend (sqlite.py, postgres.py) supplies connections, the migration lock and its driver's
errors; everything else lives here, so both backends run the same statements and pass the same
test suite. Statements use `?` placeholders (the PostgreSQL backend turns them into `%s`); values
are always parameters, and the identifiers spliced in come from the fixed column lists below,
never from a request.
"""

from __future__ import annotations

import contextlib
import time

import orjson

from dheera_ai.errors import BadRequestError, ServiceUnavailableError
from proxy_app.store.migrations import MIGRATIONS
from proxy_app.store.models import ModelStore
from proxy_app.store.spend import SpendStore

JSON_COLUMNS = frozenset({"models", "metadata", "tags"})
BOOL_COLUMNS = frozenset({"blocked"})
LIMIT_COLUMNS = ("max_budget", "budget_duration", "rpm_limit", "tpm_limit", "max_parallel_requests")
KEY_COLUMNS = ("key_hash", "key_name", "key_alias", "user_id", "team_id", "models", *LIMIT_COLUMNS,
               "metadata", "tags", "expires", "blocked", "created_at", "updated_at")
USER_COLUMNS = ("user_id", "user_email", "user_role", "models", *LIMIT_COLUMNS, "metadata",
                "created_at", "updated_at")
TEAM_COLUMNS = ("team_id", "team_alias", "models", *LIMIT_COLUMNS, "metadata", "tags", "blocked",
                "created_at", "updated_at")


class StoreUnavailableError(ServiceUnavailableError):
    """The database cannot be reached; callers answer 503 and never treat it as 'no such key'."""


class ConflictError(BadRequestError):
    """A row with that identity exists already (key, alias, user or team id)."""


class SQLStore(SpendStore, ModelStore):
    """Keys, users and teams (spend from `SpendStore`, API-added models from `ModelStore`);
    backends provide `_transaction` and the rest."""

    backend = "sql"

    # -- plumbing the backends provide ----------------------------------------------------------

    def _transaction(self, write: bool = False):
        """A context manager yielding a cursor inside one transaction, committed on success."""
        raise NotImplementedError

    def _lock_migrations(self, cursor) -> None:
        """Serialize migrations between instances starting at the same moment."""

    def _is_unique_violation(self, exc: Exception) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        """Where the store is, without credentials."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections (the store reconnects if used again)."""

    # -- schema ----------------------------------------------------------------------------------

    def migrate(self) -> list[int]:
        """Apply the migrations this database lacks; returns the versions applied."""
        applied = []
        with self._transaction(write=True) as cur:
            self._lock_migrations(cur)
            cur.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                        "name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")
            cur.execute("SELECT version FROM schema_migrations")
            done = {row[0] for row in cur.fetchall()}
            for version, name, statements in MIGRATIONS:
                if version in done:
                    continue
                for statement in statements:
                    cur.execute(statement)
                cur.execute(self._sql("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"),
                            (version, name, time.time()))
                applied.append(version)
        return applied

    def schema_version(self) -> int:
        with self._transaction() as cur:
            cur.execute("SELECT MAX(version) FROM schema_migrations")
            return cur.fetchone()[0] or 0

    def state_version(self) -> int:
        """A number that changes whenever a cached key may have become stale."""
        with self._transaction() as cur:
            cur.execute("SELECT version FROM state_version WHERE id = 1")
            return cur.fetchone()[0]

    # -- keys ------------------------------------------------------------------------------------

    def insert_key(self, row: dict) -> dict:
        with self._transaction(write=True) as cur:
            self._refuse_revoked(cur, row["key_hash"])
            self._insert(cur, "keys", KEY_COLUMNS, row, what="key")
        return self.get_key(row["key_hash"])

    def get_key(self, key_hash: str) -> dict | None:
        with self._transaction() as cur:
            return self._one(cur, "keys", KEY_COLUMNS, "key_hash", key_hash)

    def lookup_key(self, key_hash: str) -> tuple[dict | None, str | None]:
        """The key's row, or None and why it is gone ('deleted', 'regenerated') if it ever existed."""
        with self._transaction() as cur:
            row = self._one(cur, "keys", KEY_COLUMNS, "key_hash", key_hash)
            if row is not None:
                return row, None
            cur.execute(self._sql("SELECT reason FROM revoked_keys WHERE key_hash = ?"), (key_hash,))
            found = cur.fetchone()
            return None, found[0] if found else None

    def key_hashes_for_aliases(self, aliases: list[str]) -> dict[str, str]:
        """alias -> key_hash for the aliases that name a key."""
        if not aliases:
            return {}
        with self._transaction() as cur:
            marks = ", ".join("?" for _ in aliases)
            cur.execute(self._sql(f"SELECT key_alias, key_hash FROM keys WHERE key_alias IN ({marks})"),
                        tuple(aliases))
            return dict(cur.fetchall())

    def list_keys(self, *, user_id=None, team_id=None, key_alias=None, search=None, offset=0,
                  limit=50) -> tuple[list, int]:
        """One page of keys matching every given filter, oldest first, and how many match in all;
        `search` is a piece of the alias, owner, team or masked key."""
        filters = {"user_id": user_id, "team_id": team_id, "key_alias": key_alias}
        return self._page(table="keys", columns=KEY_COLUMNS, filters=filters, search=search,
                          searched=("key_alias", "user_id", "team_id", "key_name"), order="created_at, key_hash",
                          offset=offset, limit=limit)

    def _page(self, *, table, columns, filters, search, searched, order, offset, limit) -> tuple[list, int]:
        where = [f"{name} = ?" for name, value in filters.items() if value is not None]
        params = [value for value in filters.values() if value is not None]
        if search:
            pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append("(" + " OR ".join(f"LOWER({c}) LIKE LOWER(?) ESCAPE '\\'" for c in searched) + ")")
            params += [pattern] * len(searched)
        clause = " AND ".join(where) or "1 = 1"
        with self._transaction() as cur:
            cur.execute(self._sql(f"SELECT COUNT(*) FROM {table} WHERE {clause}"), tuple(params))
            total = cur.fetchone()[0]
            cur.execute(self._sql(f"SELECT {', '.join(columns)} FROM {table} WHERE {clause} "
                                  f"ORDER BY {order} LIMIT ? OFFSET ?"), (*params, limit, offset))
            return [self._decode(columns, r) for r in cur.fetchall()], total

    def update_key(self, key_hash: str, changes: dict) -> dict | None:
        with self._transaction(write=True) as cur:
            if not self._update(cur, "keys", "key_hash", key_hash, changes, what="key"):
                return None
            self._bump(cur)
            return self._one(cur, "keys", KEY_COLUMNS, "key_hash", key_hash)

    def delete_keys(self, key_hashes: list[str]) -> list[str]:
        """Delete these keys; returns the hashes that existed."""
        with self._transaction(write=True) as cur:
            deleted = self._delete_keys_where(cur, "key_hash", key_hashes)
            if deleted:
                self._bump(cur)
            return deleted

    def regenerate_key(self, old_hash: str, new_hash: str, key_name: str, changes: dict) -> dict | None:
        """Move a key to a new secret (and apply `changes`); the old secret is refused from now on."""
        with self._transaction(write=True) as cur:
            self._refuse_revoked(cur, new_hash)
            moved = {"key_hash": new_hash, "key_name": key_name, **changes}
            if not self._update(cur, "keys", "key_hash", old_hash, moved, what="key"):
                return None
            self._revoke(cur, [old_hash], "regenerated")
            self._bump(cur)
            return self._one(cur, "keys", KEY_COLUMNS, "key_hash", new_hash)

    # -- users -----------------------------------------------------------------------------------

    def insert_user(self, row: dict) -> dict:
        with self._transaction(write=True) as cur:
            self._insert(cur, "users", USER_COLUMNS, row, what="user")
            return self._one(cur, "users", USER_COLUMNS, "user_id", row["user_id"])

    def get_user(self, user_id: str) -> dict | None:
        with self._transaction() as cur:
            return self._one(cur, "users", USER_COLUMNS, "user_id", user_id)

    def user_by_email(self, email: str) -> dict | None:
        """The oldest user with this email (LiteLLM adds team members by email)."""
        with self._transaction() as cur:
            cur.execute(self._sql(f"SELECT {', '.join(USER_COLUMNS)} FROM users WHERE user_email = ? "
                                  "ORDER BY created_at LIMIT 1"), (email,))
            row = cur.fetchone()
            return self._decode(USER_COLUMNS, row) if row else None

    def update_user(self, user_id: str, changes: dict) -> dict | None:
        with self._transaction(write=True) as cur:
            if not self._update(cur, "users", "user_id", user_id, changes, what="user"):
                return None
            self._bump(cur)
            return self._one(cur, "users", USER_COLUMNS, "user_id", user_id)

    def delete_users(self, user_ids: list[str]) -> tuple[list[str], list[str]]:
        """Delete users, their team memberships and their keys: (user ids deleted, key hashes deleted)."""
        with self._transaction(write=True) as cur:
            users = self._existing(cur, "users", "user_id", user_ids)
            if not users:
                return [], []
            keys = self._delete_keys_where(cur, "user_id", users)
            marks = ", ".join("?" for _ in users)
            cur.execute(self._sql(f"DELETE FROM team_members WHERE user_id IN ({marks})"), tuple(users))
            cur.execute(self._sql(f"DELETE FROM users WHERE user_id IN ({marks})"), tuple(users))
            self._bump(cur)
            return users, keys

    def list_users(self, *, user_role=None, search=None, offset=0, limit=50) -> tuple[list, int]:
        """One page of users (oldest first; of one role, if given) whose id, email or role contains
        `search`, and the count."""
        return self._page(table="users", columns=USER_COLUMNS, filters={"user_role": user_role}, search=search,
                          searched=("user_id", "user_email", "user_role"), order="created_at, user_id",
                          offset=offset, limit=limit)

    def user_teams(self, user_id: str) -> list[str]:
        with self._transaction() as cur:
            cur.execute(self._sql("SELECT team_id FROM team_members WHERE user_id = ? ORDER BY team_id"), (user_id,))
            return [r[0] for r in cur.fetchall()]

    # -- teams -----------------------------------------------------------------------------------

    def insert_team(self, row: dict, members: list[tuple[str, str]] = ()) -> dict:
        with self._transaction(write=True) as cur:
            self._insert(cur, "teams", TEAM_COLUMNS, row, what="team")
            self._add_members(cur, row["team_id"], members)
            return self._one(cur, "teams", TEAM_COLUMNS, "team_id", row["team_id"])

    def get_team(self, team_id: str) -> dict | None:
        with self._transaction() as cur:
            return self._one(cur, "teams", TEAM_COLUMNS, "team_id", team_id)

    def update_team(self, team_id: str, changes: dict) -> dict | None:
        with self._transaction(write=True) as cur:
            if not self._update(cur, "teams", "team_id", team_id, changes, what="team"):
                return None
            self._bump(cur)
            return self._one(cur, "teams", TEAM_COLUMNS, "team_id", team_id)

    def delete_teams(self, team_ids: list[str]) -> tuple[list[str], list[str]]:
        """Delete teams, their memberships and their keys: (team ids deleted, key hashes deleted)."""
        with self._transaction(write=True) as cur:
            teams = self._existing(cur, "teams", "team_id", team_ids)
            if not teams:
                return [], []
            keys = self._delete_keys_where(cur, "team_id", teams)
            marks = ", ".join("?" for _ in teams)
            cur.execute(self._sql(f"DELETE FROM team_members WHERE team_id IN ({marks})"), tuple(teams))
            cur.execute(self._sql(f"DELETE FROM teams WHERE team_id IN ({marks})"), tuple(teams))
            self._bump(cur)
            return teams, keys

    def list_teams(self, *, search=None, offset=0, limit=50) -> tuple[list, int]:
        """One page of teams (oldest first) whose id or alias contains `search`, and the count."""
        return self._page(table="teams", columns=TEAM_COLUMNS, filters={}, search=search,
                          searched=("team_id", "team_alias"), order="created_at, team_id",
                          offset=offset, limit=limit)

    def team_members(self, team_id: str) -> list[dict]:
        with self._transaction() as cur:
            cur.execute(self._sql("SELECT user_id, role FROM team_members WHERE team_id = ? ORDER BY user_id"),
                        (team_id,))
            return [{"user_id": u, "role": r} for u, r in cur.fetchall()]

    def add_team_members(self, team_id: str, members: list[tuple[str, str]]) -> None:
        with self._transaction(write=True) as cur:
            self._add_members(cur, team_id, members)
            self._bump(cur)

    def remove_team_members(self, team_id: str, user_ids: list[str]) -> list[str]:
        with self._transaction(write=True) as cur:
            cur.execute(self._sql("SELECT user_id FROM team_members WHERE team_id = ?"), (team_id,))
            present = [r[0] for r in cur.fetchall() if r[0] in user_ids]
            for user_id in present:
                cur.execute(self._sql("DELETE FROM team_members WHERE team_id = ? AND user_id = ?"), (team_id, user_id))
            self._bump(cur)
            return present

    # -- admin UI logins -------------------------------------------------------------------------

    def login_failures(self, client: str, since: float) -> list[float]:
        """When `client` typed a wrong key into the UI's login since `since`, oldest first."""
        with self._transaction() as cur:
            cur.execute(self._sql("SELECT failed_at FROM ui_login_failures WHERE client = ? AND failed_at >= ? "
                                  "ORDER BY failed_at"), (client, since))
            return [r[0] for r in cur.fetchall()]

    def record_login_failure(self, client: str, now: float, forget_before: float) -> None:
        with self._transaction(write=True) as cur:
            cur.execute(self._sql("DELETE FROM ui_login_failures WHERE failed_at < ?"), (forget_before,))
            cur.execute(self._sql("INSERT INTO ui_login_failures (client, failed_at) VALUES (?, ?)"), (client, now))

    # -- helpers ---------------------------------------------------------------------------------

    def _sql(self, statement: str) -> str:
        return statement

    def _encode(self, column, value):
        if column in JSON_COLUMNS:
            return orjson.dumps(value if value is not None else ([] if column != "metadata" else {})).decode()
        if column in BOOL_COLUMNS:
            return 1 if value else 0
        return value

    def _decode(self, columns, values) -> dict:
        row = dict(zip(columns, values, strict=True))
        for column in JSON_COLUMNS.intersection(row):
            row[column] = orjson.loads(row[column])
        for column in BOOL_COLUMNS.intersection(row):
            row[column] = bool(row[column])
        return row

    def _one(self, cur, table, columns, key_column, key) -> dict | None:
        cur.execute(self._sql(f"SELECT {', '.join(columns)} FROM {table} WHERE {key_column} = ?"), (key,))
        found = cur.fetchone()
        return self._decode(columns, found) if found else None

    def _insert(self, cur, table, columns, row, what):
        now = time.time()
        row = {**row, "created_at": row.get("created_at", now), "updated_at": now}
        values = tuple(self._encode(c, row.get(c)) for c in columns)
        try:
            with self._savepoint(cur):
                cur.execute(self._sql(f"INSERT INTO {table} ({', '.join(columns)}) "
                                      f"VALUES ({', '.join('?' for _ in columns)})"), values)
        except Exception as exc:
            if self._is_unique_violation(exc):
                raise ConflictError(f"That {what} exists already (its id or alias is taken).",
                                    code=f"{what}_exists") from None
            raise

    def _update(self, cur, table, key_column, key, changes, what) -> bool:
        changes = {**changes, "updated_at": time.time()}
        assignments = ", ".join(f"{column} = ?" for column in changes)
        values = tuple(self._encode(c, v) for c, v in changes.items())
        try:
            with self._savepoint(cur):
                cur.execute(self._sql(f"UPDATE {table} SET {assignments} WHERE {key_column} = ?"), values + (key,))
        except Exception as exc:
            if self._is_unique_violation(exc):
                raise ConflictError(f"That {what} exists already (its id or alias is taken).",
                                    code=f"{what}_exists") from None
            raise
        return cur.rowcount > 0

    @contextlib.contextmanager
    def _savepoint(self, cur):
        """Lets one failed statement (a duplicate) be reported without aborting the transaction."""
        yield

    def _existing(self, cur, table, column, ids) -> list[str]:
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        cur.execute(self._sql(f"SELECT {column} FROM {table} WHERE {column} IN ({marks})"), tuple(ids))
        return [r[0] for r in cur.fetchall()]

    def _delete_keys_where(self, cur, column, values) -> list[str]:
        if not values:
            return []
        marks = ", ".join("?" for _ in values)
        cur.execute(self._sql(f"SELECT key_hash FROM keys WHERE {column} IN ({marks})"), tuple(values))
        hashes = [r[0] for r in cur.fetchall()]
        if hashes:
            hash_marks = ", ".join("?" for _ in hashes)
            cur.execute(self._sql(f"DELETE FROM keys WHERE key_hash IN ({hash_marks})"), tuple(hashes))
            self._revoke(cur, hashes, "deleted")
        return hashes

    def _refuse_revoked(self, cur, key_hash: str) -> None:
        """A deleted or replaced key stays refused: given again as `key=`, it is not a new key."""
        cur.execute(self._sql("SELECT reason FROM revoked_keys WHERE key_hash = ?"), (key_hash,))
        found = cur.fetchone()
        if found:
            raise ConflictError(f"That key was {found[0]}; a revoked key is never used again.", code="key_revoked")

    def _revoke(self, cur, hashes, reason):
        for key_hash in hashes:
            cur.execute(self._sql("DELETE FROM revoked_keys WHERE key_hash = ?"), (key_hash,))
            cur.execute(self._sql("INSERT INTO revoked_keys (key_hash, reason, revoked_at) VALUES (?, ?, ?)"),
                        (key_hash, reason, time.time()))

    def _add_members(self, cur, team_id, members):
        for user_id, role in members:
            cur.execute(self._sql("DELETE FROM team_members WHERE team_id = ? AND user_id = ?"), (team_id, user_id))
            cur.execute(self._sql("INSERT INTO team_members (team_id, user_id, role) VALUES (?, ?, ?)"),
                        (team_id, user_id, role))

    def _bump(self, cur):
        cur.execute("UPDATE state_version SET version = version + 1 WHERE id = 1")
