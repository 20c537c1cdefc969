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

MIGRATIONS.append(
    (2, "spend logs, running totals, budget counters", [
        # One row per call. `row_id` (made once, when the row is spooled) is the idempotency key: a
        # row replayed from the spool after a crash or an outage conflicts and is skipped, and only
        # inserted rows move the totals. It is not the call id, which a client may choose and reuse.
        """CREATE TABLE spend_logs (
            row_id TEXT PRIMARY KEY,
            request_id TEXT NOT NULL,
            call_type TEXT NOT NULL,
            key_hash TEXT,
            key_alias TEXT,
            user_id TEXT,
            team_id TEXT,
            model_group TEXT,
            deployment TEXT,
            provider TEXT,
            prompt_tokens BIGINT NOT NULL,
            completion_tokens BIGINT NOT NULL,
            total_tokens BIGINT NOT NULL,
            cost DOUBLE PRECISION NOT NULL,
            priced INTEGER NOT NULL,
            usage_estimated INTEGER NOT NULL,
            tags TEXT NOT NULL,
            metadata TEXT NOT NULL,
            status INTEGER NOT NULL,
            error_type TEXT,
            stream INTEGER NOT NULL,
            stream_cut INTEGER NOT NULL,
            retries INTEGER NOT NULL,
            fallbacks INTEGER NOT NULL,
            start_time DOUBLE PRECISION NOT NULL,
            end_time DOUBLE PRECISION NOT NULL,
            latency_ms DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX spend_logs_time ON spend_logs (start_time)",
        "CREATE INDEX spend_logs_request ON spend_logs (request_id)",
        "CREATE INDEX spend_logs_key ON spend_logs (key_hash, start_time)",
        "CREATE INDEX spend_logs_user ON spend_logs (user_id, start_time)",
        "CREATE INDEX spend_logs_team ON spend_logs (team_id, start_time)",
        # A call's tags, one row each, for filtering and grouping by tag.
        """CREATE TABLE spend_log_tags (
            row_id TEXT NOT NULL,
            tag TEXT NOT NULL,
            PRIMARY KEY (row_id, tag))""",
        "CREATE INDEX spend_log_tags_tag ON spend_log_tags (tag)",
        # Lifetime totals per key, user, team and tag ('key', '<hash>'), moved with each inserted row.
        """CREATE TABLE spend_totals (
            scope TEXT NOT NULL,
            scope_id TEXT NOT NULL,
            spend DOUBLE PRECISION NOT NULL,
            calls BIGINT NOT NULL,
            prompt_tokens BIGINT NOT NULL,
            completion_tokens BIGINT NOT NULL,
            PRIMARY KEY (scope, scope_id))""",
        # Budgets: what was spent in a budget window (epoch seconds where it began; 0 without
        # `budget_duration`), and what calls in flight hold: a call holds an estimate of its cost
        # before it runs; its spend row, when stored, adds the real cost and drops the hold. A
        # hold left by a worker that died mid-call stops counting after a while (`HOLD_SECONDS`).
        """CREATE TABLE budget_counters (
            scope TEXT NOT NULL,
            scope_id TEXT NOT NULL,
            window_start DOUBLE PRECISION NOT NULL,
            spent DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (scope, scope_id, window_start))""",
        """CREATE TABLE budget_holds (
            hold_id TEXT NOT NULL,
            scope TEXT NOT NULL,
            scope_id TEXT NOT NULL,
            window_start DOUBLE PRECISION NOT NULL,
            amount DOUBLE PRECISION NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (hold_id, scope, scope_id))""",
        "CREATE INDEX budget_holds_scope ON budget_holds (scope, scope_id, window_start)",
        "CREATE INDEX budget_holds_created ON budget_holds (created_at)",
    ]),
)

MIGRATIONS.append(
    # The call id a client sent (`x-dheera-ai-call-id`), kept beside ours: `request_id` is always the
    # gateway's own, so two calls never share one however a client reuses its ids.
    (20, "spend rows keep the client's call id", [
        "ALTER TABLE spend_logs ADD COLUMN client_call_id TEXT",
    ]),
)

MIGRATIONS.append(
    (30, "spend rows that could not be priced: no cost, and what went wrong", [
        # `cost` becomes nullable (SQLite cannot drop a NOT NULL in place: a new column replaces it).
        "ALTER TABLE spend_logs ADD COLUMN cost_priced DOUBLE PRECISION",
        "UPDATE spend_logs SET cost_priced = cost",
        "ALTER TABLE spend_logs DROP COLUMN cost",
        "ALTER TABLE spend_logs RENAME COLUMN cost_priced TO cost",
        "ALTER TABLE spend_logs ADD COLUMN record_error TEXT",
    ]),
)

MIGRATIONS.append(
    (90, "what each guardrail did, on the spend row", [
        # JSON: [{"guardrail", "phase", "result", "items", "entities"}]; NULL for rows before it.
        "ALTER TABLE spend_logs ADD COLUMN guardrails TEXT",
    ]),
)

MIGRATIONS.append(
    (31, "translated Responses, for follow-ups on any worker or instance", [
        # `body`: the response, its input items and the conversation so far (JSON). `owner`: the
        # hash of the key that made it (or the master key's kind); only that key finds it.
        """CREATE TABLE bridged_responses (
            response_id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            body TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX bridged_responses_created ON bridged_responses (created_at)",
    ]),
)

MIGRATIONS.append(
    # Models added with /model/new (LiteLLM's `store_model_in_db`): the `model_list` entry as given
    # (its params and model_info as JSON). Row 2 of state_version moves with every change, so each
    # worker of each instance notices within its poll second (proxy_app/live_models.py).
    (40, "models added through the API", [
        """CREATE TABLE models (
            model_id TEXT PRIMARY KEY,
            model_name TEXT NOT NULL,
            params TEXT NOT NULL,
            model_info TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL)""",
        "INSERT INTO state_version (id, version) VALUES (2, 0)",
    ]),
)

MIGRATIONS.append(
    # GET /spend/logs?request_id=... (LiteLLM's lookup of one call's row).
    # `response_id` is the answer's own `id` (chatcmpl-...), which LiteLLM calls the request id.
    (41, "spend logs by request id", ["CREATE INDEX spend_logs_request_id ON spend_logs (request_id)",
                                      "ALTER TABLE spend_logs ADD COLUMN response_id TEXT",
                                      "CREATE INDEX spend_logs_response_id ON spend_logs (response_id)"]),
)

MIGRATIONS.append(
    (70, "spend logs: cache hits and what they saved", [
        "ALTER TABLE spend_logs ADD COLUMN cache_hit INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE spend_logs ADD COLUMN saved_cost DOUBLE PRECISION NOT NULL DEFAULT 0",
    ]),
)

MIGRATIONS.append(
    (60, "spend log paging indexes", [
        # The logs page pages by (start_time, row_id), newest first, under any one filter: each
        # index below serves one filter with the ordering built in, so a page is a range read.
        "CREATE INDEX spend_logs_time_row ON spend_logs (start_time, row_id)",
        "CREATE INDEX spend_logs_key_row ON spend_logs (key_hash, start_time, row_id)",
        "CREATE INDEX spend_logs_user_row ON spend_logs (user_id, start_time, row_id)",
        "CREATE INDEX spend_logs_team_row ON spend_logs (team_id, start_time, row_id)",
        "CREATE INDEX spend_logs_model_row ON spend_logs (model_group, start_time, row_id)",
        # A tag's rows are paged from the tag table itself, which therefore learns each row's time.
        "ALTER TABLE spend_log_tags ADD COLUMN start_time DOUBLE PRECISION",
        "UPDATE spend_log_tags SET start_time = (SELECT l.start_time FROM spend_logs l "
        "WHERE l.row_id = spend_log_tags.row_id)",
        "CREATE INDEX spend_log_tags_tag_row ON spend_log_tags (tag, start_time, row_id)",
        "DROP INDEX spend_log_tags_tag",
        # They supersede the (x, start_time) ones: same prefix, one more column.
        "DROP INDEX spend_logs_time",
        "DROP INDEX spend_logs_key",
        "DROP INDEX spend_logs_user",
        "DROP INDEX spend_logs_team",
    ]),
)

MIGRATIONS.append(
    (61, "admin UI login failures", [
        # Wrong keys typed into /ui/login, per client address, so every worker and instance
        # counts the same guesses (rows older than the window are deleted as new ones come).
        """CREATE TABLE ui_login_failures (
            client TEXT NOT NULL,
            failed_at DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX ui_login_failures_client ON ui_login_failures (client, failed_at)",
        "CREATE INDEX ui_login_failures_time ON ui_login_failures (failed_at)",
    ]),
)

MIGRATIONS.append(
    (80, "files and batches", [
        # /v1/files: the bytes live in the files directory (proxy_app/files.py), named by file_id;
        # a forwarded batch's files live at their provider (`deployment`, `upstream_id`).
        """CREATE TABLE files (
            file_id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            team_id TEXT,
            purpose TEXT NOT NULL,
            filename TEXT NOT NULL,
            bytes BIGINT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION,
            deployment TEXT,
            upstream_id TEXT)""",
        "CREATE INDEX files_owner ON files (owner, created_at)",
        "CREATE INDEX files_team ON files (team_id, created_at)",
        # /v1/batches: the OpenAI object's fields, who may see it and whose limits it runs under,
        # and the lease of the one runner working on it (`lease_owner` until `lease_until`).
        """CREATE TABLE batches (
            batch_id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            team_id TEXT,
            principal_kind TEXT NOT NULL,
            key_hash TEXT,
            endpoint TEXT NOT NULL,
            completion_window TEXT NOT NULL,
            input_file_id TEXT NOT NULL,
            status TEXT NOT NULL,
            model TEXT,
            output_file_id TEXT,
            error_file_id TEXT,
            errors TEXT,
            metadata TEXT,
            request_total BIGINT NOT NULL DEFAULT 0,
            request_completed BIGINT NOT NULL DEFAULT 0,
            request_failed BIGINT NOT NULL DEFAULT 0,
            input_tokens BIGINT NOT NULL DEFAULT 0,
            output_tokens BIGINT NOT NULL DEFAULT 0,
            created_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL,
            in_progress_at DOUBLE PRECISION,
            finalizing_at DOUBLE PRECISION,
            completed_at DOUBLE PRECISION,
            failed_at DOUBLE PRECISION,
            expired_at DOUBLE PRECISION,
            cancelling_at DOUBLE PRECISION,
            cancelled_at DOUBLE PRECISION,
            deployment TEXT,
            upstream_id TEXT,
            lease_owner TEXT,
            lease_until DOUBLE PRECISION NOT NULL DEFAULT 0,
            spend_recorded INTEGER NOT NULL DEFAULT 0)""",
        "CREATE INDEX batches_owner ON batches (owner, created_at)",
        "CREATE INDEX batches_team ON batches (team_id, created_at)",
        "CREATE INDEX batches_open ON batches (status, lease_until)",
        # One row per answered line of a gateway-run batch, stored before the line counts as done:
        # a runner that resumes a batch sends only the lines that have none.
        """CREATE TABLE batch_results (
            batch_id TEXT NOT NULL,
            line BIGINT NOT NULL,
            ok INTEGER NOT NULL,
            result TEXT NOT NULL,
            PRIMARY KEY (batch_id, line))""",
    ]),
)

MIGRATIONS.append(
    # Version 2 made spend_logs_request and 41 spend_logs_request_id, both on (request_id): every
    # spend row, inserted on every call, wrote both.
    (91, "spend logs: one index on request_id", ["DROP INDEX spend_logs_request_id"]),
)

# Each change appends its own entry (numbers are reserved per change, with gaps); they are applied
# in version order.
MIGRATIONS.sort(key=lambda migration: migration[0])
