"""The schema, as numbered migrations applied in order at start-up (see `SQLStore.migrate`).

Append a new `(version, name, statements)` entry to change the schema; never edit one that has
shipped. The SQL is the subset both SQLite and PostgreSQL speak: times are epoch seconds
(DOUBLE PRECISION), lists and objects are JSON text, booleans are 0/1 integers.
"""

MIGRATIONS = [
    (1, "keys, users, teams", [
        """CREATE TABLE users (
            user_id TEXT PRIMARY KEY,
            user_email TEXT,
            user_role TEXT NOT NULL,
            models TEXT NOT NULL,
            max_budget DOUBLE PRECISION,
            budget_duration TEXT,
            rpm_limit BIGINT,
            tpm_limit BIGINT,
            max_parallel_requests BIGINT,
            metadata TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL)""",
        """CREATE TABLE teams (
            team_id TEXT PRIMARY KEY,
            team_alias TEXT,
            models TEXT NOT NULL,
            max_budget DOUBLE PRECISION,
            budget_duration TEXT,
            rpm_limit BIGINT,
            tpm_limit BIGINT,
            max_parallel_requests BIGINT,
            metadata TEXT NOT NULL,
            tags TEXT NOT NULL,
            blocked INTEGER NOT NULL DEFAULT 0,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL)""",
        """CREATE TABLE team_members (
            team_id TEXT NOT NULL REFERENCES teams (team_id) ON DELETE CASCADE,
            user_id TEXT NOT NULL,
            role TEXT NOT NULL,
            PRIMARY KEY (team_id, user_id))""",
        """CREATE TABLE keys (
            key_hash TEXT PRIMARY KEY,
            key_name TEXT NOT NULL,
            key_alias TEXT,
            user_id TEXT,
            team_id TEXT,
            models TEXT NOT NULL,
            max_budget DOUBLE PRECISION,
            budget_duration TEXT,
            rpm_limit BIGINT,
            tpm_limit BIGINT,
            max_parallel_requests BIGINT,
            metadata TEXT NOT NULL,
            tags TEXT NOT NULL,
            expires DOUBLE PRECISION,
            blocked INTEGER NOT NULL DEFAULT 0,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL)""",
        # Aliases name one live key each, so /key/delete by alias is unambiguous.
        "CREATE UNIQUE INDEX keys_alias ON keys (key_alias)",
        "CREATE INDEX keys_user ON keys (user_id)",
        "CREATE INDEX keys_team ON keys (team_id)",
        # Hashes of deleted or rotated keys, so their callers learn why they are refused.
        """CREATE TABLE revoked_keys (
            key_hash TEXT PRIMARY KEY,
            reason TEXT NOT NULL,
            revoked_at DOUBLE PRECISION NOT NULL)""",
        # One row, bumped by every change that may invalidate a cached key: workers without Redis
        # poll it (at most once a second) to learn that their cache is stale.
        "CREATE TABLE state_version (id INTEGER PRIMARY KEY, version BIGINT NOT NULL)",
        "INSERT INTO state_version (id, version) VALUES (1, 0)",
    ]),
]
