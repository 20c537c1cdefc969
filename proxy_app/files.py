"""Files (`/v1/files`): a row in the state store for each, the bytes in the files directory.

Where the bytes live: `general_settings.files_dir`, else a `files` directory beside the SQLite
file (or `local_state_dir`). A directory rather than PostgreSQL large objects, because a file is
written once and read front to back: a filesystem streams a 200 MB upload without holding a
transaction (and a pooled connection) open for its length, and keeps bulk bytes out of the
database's WAL, backups and replicas. Several instances on one PostgreSQL point `files_dir` at one
shared directory (a volume, NFS, EFS), so that any of them serves a file and runs a batch.

Who sees a file: its owner (the key's user, else the key), keys of the same team, and admins.
Anyone else gets a 404, as for a file that does not exist.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
import time
from dataclasses import dataclass

from dheera_ai.errors import DheeraAIError, NotFoundError

# What an upload may be for (OpenAI's list); batch outputs are ours to write.
UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
COLUMNS = ("file_id", "owner", "team_id", "purpose", "filename", "bytes", "created_at", "expires_at",
           "deployment", "upstream_id")
CHUNK = 1024 * 1024


class FileTooLargeError(DheeraAIError):
    status = 413
    error_type = "invalid_request_error"
    default_code = "file_too_large"


@dataclass(frozen=True)
class Viewer:
    """Who asks: the owner name their files carry, their team, and whether they see everything."""

    owner: str
    team_id: str | None = None
    admin: bool = False


def viewer_of(principal, admin: bool) -> Viewer:
    return Viewer(principal.owner, principal.team_id, admin)


def new_file_id() -> str:
    return "file-" + secrets.token_hex(12)


def derived_file_id(name: str) -> str:
    """An id that the same `name` always gets (a batch's output file), so writing it twice is once."""
    return "file-" + hashlib.sha256(name.encode()).hexdigest()[:24]


class Files:
    def __init__(self, store, directory: str, max_bytes: int, ready=lambda: None):
        self.store = store
        self.directory = directory
        self.max_bytes = max_bytes
        self._ready = ready  # migrates first, if start-up could not

    # -- bytes -----------------------------------------------------------------------------------

    def path(self, file_id: str) -> str:
        return os.path.join(self.directory, file_id)

    def spool(self):
        """A file for the form parser to stream an upload into, in the files directory itself, so
        keeping it is a rename, not a copy (`keep`); the caller removes it if it is not kept."""
        os.makedirs(self.directory, exist_ok=True)
        return tempfile.NamedTemporaryFile(dir=self.directory, prefix=".upload-", delete=False)

    def keep(self, spooled, filename: str, purpose: str, viewer: Viewer, expires_at: float | None = None) -> dict:
        """Store an upload the form parser spooled: renamed into place, then its row."""
        size = os.fstat(spooled.fileno()).st_size
        if size > self.max_bytes:
            raise FileTooLargeError(f"The file is {size} bytes; the limit is {self.max_bytes} bytes "
                                    f"(general_settings.max_file_size_mb).", param="file")
        spooled.flush()
        file_id = new_file_id()
        os.replace(spooled.name, self.path(file_id))
        row = {"file_id": file_id, "owner": viewer.owner, "team_id": viewer.team_id, "purpose": purpose,
               "filename": filename, "bytes": size, "created_at": time.time(), "expires_at": expires_at,
               "deployment": None, "upstream_id": None}
        try:
            self._insert(row)
        except BaseException:
            os.unlink(self.path(file_id))
            raise
        return row

    def write(self, file_id: str, chunks, filename: str, purpose: str, owner: str, team_id: str | None) -> dict:
        """Write a file of ours (a batch's output) from an iterable of bytes; a second write of the
        same id replaces the bytes and keeps the one row."""
        os.makedirs(self.directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.directory, prefix=".output-", delete=False) as out:
            try:
                for chunk in chunks:
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
                size = out.tell()
            except BaseException:
                os.unlink(out.name)
                raise
        os.replace(out.name, self.path(file_id))
        row = {"file_id": file_id, "owner": owner, "team_id": team_id, "purpose": purpose, "filename": filename,
               "bytes": size, "created_at": time.time(), "expires_at": None, "deployment": None, "upstream_id": None}
        self._insert(row, replace=True)
        return row

    def remember(self, row: dict) -> dict:
        """A file that lives at a provider (a forwarded batch's): only its row is ours (kept once,
        however many workers see the batch finish)."""
        self._insert({**{c: None for c in COLUMNS}, **row}, keep_first=True)
        return row

    # -- rows ------------------------------------------------------------------------------------

    def _insert(self, row: dict, replace: bool = False, keep_first: bool = False) -> None:
        store = self.store
        self._ready()
        conflict = " ON CONFLICT (file_id) DO UPDATE SET bytes = excluded.bytes" if replace else \
            " ON CONFLICT (file_id) DO NOTHING" if keep_first else ""
        with store._transaction(write=True) as cur:
            cur.execute(store._sql(f"INSERT INTO files ({', '.join(COLUMNS)}) VALUES "
                                   f"({', '.join('?' for _ in COLUMNS)}){conflict}"),
                        tuple(row[c] for c in COLUMNS))

    def row(self, file_id: str) -> dict | None:
        """The file's row, whoever asks (the gateway's own reads)."""
        store = self.store
        self._ready()
        with store._transaction() as cur:
            cur.execute(store._sql(f"SELECT {', '.join(COLUMNS)} FROM files WHERE file_id = ?"), (file_id,))
            found = cur.fetchone()
        return dict(zip(COLUMNS, found, strict=True)) if found else None

    def get(self, file_id: str, viewer: Viewer) -> dict:
        """The file's row if this viewer may see it; a 404 otherwise (whether or not it exists)."""
        row = self.row(file_id)
        if row is None or not self.visible(row, viewer) or _expired(row):
            raise NotFoundError(f"No such File object: {file_id}", param="file_id", code="file_not_found")
        return row

    @staticmethod
    def visible(row: dict, viewer: Viewer) -> bool:
        return viewer.admin or row["owner"] == viewer.owner or bool(viewer.team_id and row["team_id"] == viewer.team_id)

    def list(self, viewer: Viewer, purpose: str | None, after: str | None, limit: int, ascending: bool) -> list[dict]:
        """Up to `limit` + 1 rows (so the caller knows whether there are more), newest first unless
        `ascending`, after the file `after` in that order."""
        store = self.store
        where, args = ["(expires_at IS NULL OR expires_at > ?)"], [time.time()]
        if not viewer.admin:
            where.append("(owner = ? OR (team_id IS NOT NULL AND team_id = ?))")
            args += [viewer.owner, viewer.team_id or ""]
        if purpose:
            where.append("purpose = ?")
            args.append(purpose)
        if after:
            cursor = self.get(after, viewer)
            where.append("(created_at, file_id) " + ("> (?, ?)" if ascending else "< (?, ?)"))
            args += [cursor["created_at"], cursor["file_id"]]
        order = "ASC" if ascending else "DESC"
        self._ready()
        with store._transaction() as cur:
            cur.execute(store._sql(f"SELECT {', '.join(COLUMNS)} FROM files WHERE {' AND '.join(where)} "
                                   f"ORDER BY created_at {order}, file_id {order} LIMIT ?"), (*args, limit + 1))
            return [dict(zip(COLUMNS, found, strict=True)) for found in cur.fetchall()]

    def sweep(self, limit: int = 1000) -> int:
        """Remove up to `limit` files past their `expires_at` (rows, then bytes); how many."""
        store = self.store
        self._ready()
        with store._transaction() as cur:
            cur.execute(store._sql("SELECT file_id, deployment FROM files WHERE expires_at IS NOT NULL AND "
                                   "expires_at <= ? LIMIT ?"), (time.time(), limit))
            expired = cur.fetchall()
        for file_id, deployment in expired:
            with store._transaction(write=True) as cur:
                cur.execute(store._sql("DELETE FROM files WHERE file_id = ?"), (file_id,))
            if deployment is None:
                try:
                    os.unlink(self.path(file_id))
                except FileNotFoundError:
                    pass
        return len(expired)

    def delete(self, file_id: str, viewer: Viewer) -> dict:
        row = self.get(file_id, viewer)
        store = self.store
        with store._transaction(write=True) as cur:
            cur.execute(store._sql("DELETE FROM files WHERE file_id = ?"), (file_id,))
        if row["deployment"] is None:
            try:
                os.unlink(self.path(file_id))
            except FileNotFoundError:
                pass
        return row


def file_object(row: dict) -> dict:
    """OpenAI's File object."""
    out = {"id": row["file_id"], "object": "file", "bytes": int(row["bytes"]), "created_at": int(row["created_at"]),
           "filename": row["filename"], "purpose": row["purpose"], "status": "processed", "status_details": None}
    if row["expires_at"] is not None:
        out["expires_at"] = int(row["expires_at"])
    return out


def _expired(row: dict) -> bool:
    return row["expires_at"] is not None and row["expires_at"] <= time.time()
