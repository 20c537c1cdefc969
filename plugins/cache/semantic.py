"""The semantic cache: a request whose prompt means what an earlier one meant gets its answer.

`cache_params.type: postgres-semantic` keeps answers in PostgreSQL with pgvector. Two requests
share an answer when everything but their prompt is the same (model group, call type,
namespaces, temperature, tools, ... : the *scope*, a digest like the exact key's) and their
prompts' embeddings are at least `similarity_threshold` alike (cosine similarity). An identical
request is found by its exact key first, with no embedding call.

The embedding is this gateway's own call to `semantic_cache_embedding_model`, a model group of
its config, billed to the caller's key (tagged `cache:semantic`) and waited for at most
`embedding_timeout_ms`: later than that, the call goes upstream as a miss. Prompts that are not
plain text (images, audio, files) or longer than MAX_PROMPT_CHARS are cached exactly only.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time

import orjson

from dheera_ai import ids
from dheera_ai.types import Call, Principal
from plugins.cache.keys import cache_key
from plugins.cache.stores import DOWN_SECONDS, Outages

log = logging.getLogger("dheera_ai.cache")

MAX_PROMPT_CHARS = 20_000
MAX_DIMENSIONS = 16_000  # pgvector's limit for a stored vector
WRITE_QUEUE = 1000
SWEEP_SECONDS = 60.0  # how often expired entries are deleted
TABLE = "dheera_ai_cache_entries"
# The fields that carry the prompt, per call type; everything else is the scope.
PROMPT_FIELDS = {"chat_completions": {"messages"}, "completions": {"prompt"},
                 "anthropic_messages": {"messages", "system"}}


# -- what is compared ------------------------------------------------------------------------------

def prompt_text(call_type: str, body: dict) -> str | None:
    """The request's prompt as one text (role-labelled turns), or None when it is not plain text."""
    try:
        if call_type == "completions":
            prompt = body.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1:
                prompt = prompt[0]
            text = prompt if isinstance(prompt, str) else None
        elif call_type in ("chat_completions", "anthropic_messages"):
            turns = []
            if call_type == "anthropic_messages" and body.get("system") is not None:
                turns.append(("system", _plain(body["system"])))
            for message in body.get("messages") or ():
                turns.append((message["role"], _plain(message.get("content"))))
                if message.get("tool_calls"):
                    turns.append(("tool_calls", orjson.dumps(message["tool_calls"]).decode()))
            text = "\n".join(f"{role}: {content}" for role, content in turns)
        else:
            return None
    except (_NotPlain, KeyError, TypeError, AttributeError):
        return None
    return text if text and len(text) <= MAX_PROMPT_CHARS else None


class _NotPlain(Exception):
    pass


def _plain(content) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise _NotPlain  # an image, audio or a file: its meaning is not in the text
            parts.append(part["text"])
        return "\n".join(parts)
    raise _NotPlain


def semantic_scope(namespaces: tuple, scope: str, call_type: str, body: dict) -> str:
    """What two requests must share, beside a similar prompt, to share an answer: the exact key
    of the request without its prompt (under a scope of its own, never equal to an exact key)."""
    return cache_key(namespaces, "semantic:" + scope, call_type, body, leave_out=PROMPT_FIELDS[call_type])


# -- the embedding -----------------------------------------------------------------------------------

class Embedder:
    """Embeds prompts through the gateway's own router, each wait bounded."""

    def __init__(self, pipeline, model: str, timeout: float):
        self.pipeline = pipeline
        self.model = model
        self.timeout = timeout

    def start(self, text: str, caller: Call) -> "Embedding":
        # The embedding is the gateway's call for this caller: billed to its key, not limited by
        # it (the caller may not be allowed the embedding group itself), and never cached.
        on_behalf = Principal.acting_for(caller.principal, "cache")
        call = Call(call_id=ids.call_id(), call_type="embeddings", model=self.model,
                    body={"model": self.model, "input": text}, principal=on_behalf,
                    gateway_params={"tags": ["cache:semantic"]})  # tags as a request gives them
        return Embedding(self.pipeline, call)


class Embedding:
    """One prompt's embedding, made in a thread (a greenlet under gevent) so a wait can end early."""

    def __init__(self, pipeline, call: Call):
        self.vector: list[float] | None = None
        self.error: str | None = None
        self._done = threading.Event()
        threading.Thread(target=self._run, args=(pipeline, call), daemon=True,
                         name="dheera_ai-cache-embedding").start()

    def _run(self, pipeline, call: Call) -> None:
        try:
            reply = pipeline.run(call)
            answer = reply.data if reply.data is not None else orjson.loads(reply.body)
            self.vector = _vector(answer["data"][0]["embedding"])
        except Exception as exc:  # noqa: BLE001 - a failed embedding is a miss, never a failed call
            self.error = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
        finally:
            self._done.set()

    def wait(self, timeout: float) -> list[float] | None:
        self._done.wait(timeout)
        return self.vector

    @property
    def ready(self) -> list[float] | None:
        return self.vector if self._done.is_set() else None


def _vector(raw) -> list[float]:
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_DIMENSIONS:
        raise ValueError("the embedding model answered no usable vector (a base64 or empty embedding)")
    vector = [float(x) for x in raw]
    if not all(math.isfinite(x) for x in vector) or not any(vector):
        raise ValueError("the embedding has a non-finite or all-zero vector")
    return vector


# -- the store ------------------------------------------------------------------------------------

class PostgresSemanticStore:
    """Entries in one PostgreSQL table: found by exact key (as the other stores), or by the
    nearest embedding within a scope. A worker thread per process connects, makes the table,
    then sends the writes and deletes expired entries: nothing on a call's path waits for a
    connection. Until it has connected, and while PostgreSQL is down, lookups are misses; each
    lookup is bounded by `timeout`."""

    def __init__(self, url: str, timeout: float):
        self.url = url
        self.timeout = timeout
        self.outages = Outages("PostgreSQL")
        self._pool = None  # set by the writer once it has connected and made the table
        self._pid = None
        self._lock = threading.Lock()
        self._queue: queue.Queue | None = None

    def _connections(self):
        """This process's pool, or None while the writer is still connecting. The writer
        starts on first use, after gunicorn forked the worker."""
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._pool, self._pid = None, os.getpid()
                    self._queue = queue.Queue(WRITE_QUEUE)
                    threading.Thread(target=self._write_forever, args=(self._queue,), daemon=True,
                                     name="dheera_ai-semantic-cache-writer").start()
        return self._pool

    def start(self) -> None:
        """Connect now (in the worker, after the fork), rather than on the first call."""
        self._connections()

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        rows = self._read(f"SELECT key, value FROM {TABLE} WHERE key = ANY(%s) AND expires_at > %s",
                          (keys, time.time()))
        if rows is None:
            return [None] * len(keys)
        found = {key: bytes(value) for key, value in rows}
        return [found.get(key) for key in keys]

    def nearest(self, scope: str, vector: list[float]) -> tuple[bytes, float] | None:
        """The entry of `scope` whose prompt's embedding is closest to `vector`, and how similar."""
        # An exact scan of the scope: the distance once a row, and only the nearest row's value read.
        rows = self._read(f"SELECT value, 1 - distance FROM (SELECT key, embedding <=> query AS distance "
                          f"FROM {TABLE}, (SELECT %s::vector AS query) asked "
                          "WHERE scope = %s AND dims = %s AND expires_at > %s ORDER BY distance LIMIT 1) nearest "
                          f"JOIN {TABLE} USING (key)",
                          (_literal(vector), scope, len(vector), time.time()))
        if not rows or rows[0][1] is None or math.isnan(rows[0][1]):
            return None
        return bytes(rows[0][0]), float(rows[0][1])

    def _read(self, statement: str, args: tuple):
        pool = self._connections()
        if pool is None or self.outages.skipping():
            return None
        try:
            with pool.connection(timeout=self.timeout) as conn:
                return conn.execute(statement, args).fetchall()
        except Exception as exc:  # noqa: BLE001 - a cache failure never fails a call
            self.outages.failed(exc)
            return None

    def set_many(self, items: list[tuple[str, bytes, float]]) -> None:
        self.set_similar([(key, value, ttl, None, None) for key, value, ttl in items])

    def set_similar(self, items: list[tuple[str, bytes, float, str | None, list | None]]) -> None:
        """(key, value, ttl, scope, embedding) each; an entry without an embedding is found by key only."""
        if self.outages.skipping():
            return
        self._connections()
        try:
            self._queue.put_nowait(items)
        except queue.Full:
            log.debug("semantic cache writes are behind; %d answers not stored", len(items))

    def _connect(self):
        """The table made, then the pool; on failure a warning, and again after DOWN_SECONDS."""
        import psycopg
        from psycopg_pool import ConnectionPool

        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2, autocommit=True) as conn:
                    conn.execute("SET statement_timeout = 10000")  # the table may wait on another's lock
                    _create_table(conn)
                statement_ms = max(1, int(self.timeout * 1000))
                return ConnectionPool(self.url, min_size=1, max_size=4, open=True, timeout=self.timeout,
                                      kwargs={"connect_timeout": 2, "autocommit": True,
                                              "options": f"-c statement_timeout={statement_ms}"},
                                      name="dheera_ai_semantic_cache")
            except Exception as exc:  # noqa: BLE001 - down or misconfigured: said, and tried again
                self.outages.failed(exc)
                time.sleep(DOWN_SECONDS)

    def _write_forever(self, pending: queue.Queue) -> None:
        pool = self._pool = self._connect()
        swept = time.monotonic()
        while True:
            try:
                items = pending.get(timeout=SWEEP_SECONDS)
            except queue.Empty:
                items = []
            if items is None:
                pool.close()  # or its workers keep reconnecting, to a database that may be gone
                return
            try:
                with pool.connection(timeout=5) as conn:
                    if items:
                        now = time.time()
                        with conn.cursor() as cur:
                            cur.executemany(
                                f"INSERT INTO {TABLE} (key, value, expires_at, scope, dims, embedding) "
                                "VALUES (%s, %s, %s, %s, %s, %s::vector) ON CONFLICT (key) DO UPDATE SET "
                                "value = excluded.value, expires_at = excluded.expires_at, "
                                f"scope = COALESCE(excluded.scope, {TABLE}.scope), "
                                f"dims = COALESCE(excluded.dims, {TABLE}.dims), "
                                f"embedding = COALESCE(excluded.embedding, {TABLE}.embedding)",
                                [(key, value, now + ttl, scope, len(vector) if vector else None,
                                  _literal(vector) if vector else None)
                                 for key, value, ttl, scope, vector in items])
                    if time.monotonic() - swept > SWEEP_SECONDS:
                        swept = time.monotonic()
                        conn.execute(f"DELETE FROM {TABLE} WHERE expires_at < %s", (time.time(),))
            except Exception as exc:  # noqa: BLE001
                self.outages.failed(exc)

    def close(self) -> None:
        if self._queue is not None and self._pid == os.getpid():
            self._queue.put(None)


def _create_table(conn) -> None:
    # Several workers and instances may race here: the advisory lock lets one create, the rest wait.
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (0x44686565726143,))  # "DheeraC"
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (key text PRIMARY KEY, value bytea NOT NULL, "
                     "expires_at double precision NOT NULL, scope text, dims integer, embedding vector)")
        # Vectors kept in the row where they fit: a scan then reads no TOAST table (7x faster at
        # 1,536 dimensions). No approximate index: it needs one size, and would filter by scope
        # after the search (pgvector before 0.8), losing hits.
        conn.execute(f"ALTER TABLE {TABLE} ALTER COLUMN embedding SET STORAGE MAIN")
        conn.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_scope ON {TABLE} (scope, dims, expires_at) "
                     "WHERE scope IS NOT NULL")


def _literal(vector: list[float]) -> str:
    return "[" + ",".join(repr(x) for x in vector) + "]"
