"""A durable local spool for rows that must reach the store exactly once (spend logs).

Each process appends JSON lines to its own file in the spool directory (the spend tracker's is
`dheera_ai-spool/` among the instance's local files, see `proxy_app.state.local_files_dir`) and
holds an exclusive `flock` on it for as long as it lives; the file gets its `.jsonl` name only
once locked. A row is written to the file (one `write`
syscall, so it is in the kernel and survives the process being killed) before the call's
response is finished; a batch writer later hands rows to a sink and remembers how far it got in
a sidecar `.offset` file. A file whose lock can be taken belongs to a dead process: any live
process claims it and drains it. Sinks must be idempotent on the row's id, which is what
turns "at least once" (a crash between the sink and the offset) into "exactly once".

A batch the sink refuses for what is in it (not because the store is down: the drainer's
`poisoned` says which failures those are) is split in halves until the row it cannot take is
alone; that row goes to the dead-letter file (`dead-letter.ndjson`, as it was spooled, for an
operator to look at) and the others go on. One bad row never holds up the rows after it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading

import orjson

log = logging.getLogger("dheera_ai.spool")

SUFFIX = ".jsonl"
CREATING = ".creating"  # a file's name until its owner holds its lock
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
# A drained file is started over once it is this big: each start-over costs an fsync'd offset
# write that stalls a gevent worker, so not at every drain (every half second under load).
START_OVER_BYTES = 1024 * 1024
OFFSET_EVERY_ROWS = 1000  # rows handed over between two keepings of a file's offset (see _drain_file)
DEAD_LETTER = "dead-letter.ndjson"  # not SUFFIX: never drained as a dead process's spool


class SpoolFullError(Exception):
    """The spool reached its size bound: the store has been unreachable for too long."""


class Spool:
    def __init__(self, directory: str, max_bytes: int = DEFAULT_MAX_BYTES, start_over_bytes: int = START_OVER_BYTES):
        self.directory = directory
        self.max_bytes = max_bytes
        self.start_over_bytes = start_over_bytes
        self._lock = threading.Lock()
        self._fd = None
        self._path = None
        self._pid = None
        self._handed: dict = {}  # path -> offset handed over by this process, ahead of the kept one

    # -- writing (hot path) ------------------------------------------------------------------
    def append(self, row: dict) -> None:
        """Put one row on disk; raises SpoolFullError past the bound (the caller logs and counts it)."""
        self.append_encoded(orjson.dumps(row))

    def append_encoded(self, encoded: bytes) -> None:
        """`append` for a row already encoded as one line of JSON."""
        line = encoded + b"\n"
        with self._lock:
            fd = self._own_fd()
            if os.fstat(fd).st_size + len(line) > self.max_bytes:
                raise SpoolFullError(f"spool {self._path} is over {self.max_bytes} bytes")
            os.write(fd, line)

    def _own_fd(self) -> int:
        """This process's file, opened (and locked) on first use — after any fork."""
        if self._fd is None or self._pid != os.getpid():
            os.makedirs(self.directory, exist_ok=True)
            path = os.path.join(self.directory, f"{socket.gethostname()}-{os.getpid()}-{os.urandom(4).hex()}{SUFFIX}")
            # Created under another name and renamed once locked: a drainer (another process, or
            # this one's writer thread) must never find the file unlocked and take it for a dead
            # process's, drain it and remove it (the row written next would be lost).
            fd = os.open(path + CREATING, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(path + CREATING, path)
            self._fd, self._path, self._pid = fd, path, os.getpid()
        return self._fd

    # -- draining (batch writer) -------------------------------------------------------------
    def drain(self, sink, batch_rows: int = 500, poisoned=None, pause=None) -> int:
        """Hand pending rows to `sink(rows)` in batches: this process's own file, then any file
        left by a dead process. Returns the rows handed over. If the sink raises, the rows stay
        and the exception propagates; the next drain retries them. With `poisoned(exception)`
        true, the failure is taken to be about a row instead: the batch is split and the row the
        sink refuses on its own is quarantined (dead-letter file), the rest handed over.
        `pause()`, if given, runs after each batch is handed over."""
        handed = 0
        sink = _splitting(sink, poisoned, self._quarantine) if poisoned else sink
        if self._fd is not None and self._pid == os.getpid():
            with self._lock:
                own = self._path
                # Narrows what a machine crash (not a process crash) could lose to one interval.
                os.fsync(self._fd)
            handed += self._drain_file(own, sink, batch_rows, pause, owned=True)
        for path in self._orphans():
            handed += self._drain_orphan(path, sink, batch_rows, pause)
        return handed

    def _quarantine(self, row: dict, error: Exception) -> None:
        """Keep a row the sink will never take, on disk before the spool's offset moves past it."""
        log.error("spend row %s cannot be stored and was quarantined in %s: %s: %s", row.get("row_id"),
                  self.dead_letter_path(), type(error).__name__, str(error).splitlines()[0] if str(error) else "")
        line = orjson.dumps(row) + b"\n"
        with self._lock:
            fd = os.open(self.dead_letter_path(), os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)

    def dead_letter_path(self) -> str:
        return os.path.join(self.directory, DEAD_LETTER)

    def quarantined_rows(self) -> int:
        """Rows in the dead-letter file: none unless the store refused one (an operator clears it)."""
        try:
            with open(self.dead_letter_path(), "rb") as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    def pending_bytes(self) -> int:
        """Bytes written but not yet accepted by the sink, over every spool file here."""
        total = 0
        for name in self._names():
            path = os.path.join(self.directory, name)
            try:
                total += max(os.path.getsize(path) - max(_read_offset(path), self._handed.get(path, 0)), 0)
            except FileNotFoundError:
                continue
        return total

    def _drain_file(self, path: str, sink, batch_rows: int, pause, owned: bool) -> int:
        """Hand a file's rows over from its offset. The offset is kept every `OFFSET_EVERY_ROWS`
        rows and when the drain stops, not after every batch: each keeping is an fsync that stalls
        a gevent worker, and the sink is idempotent, so a crash re-sends at most those rows."""
        handed = 0
        kept = _read_offset(path)
        offset = kept
        try:
            while True:
                offset = max(offset, self._handed.get(path, 0))  # a drain in the pause may have gone on
                rows, end = _read_rows(path, offset, batch_rows)
                if not rows:
                    if owned and end == offset and offset >= max(self.start_over_bytes, 1) \
                            and self._truncate_if_drained(path, offset):
                        offset = kept = 0
                        self._handed.pop(path, None)
                    return handed
                sink(rows)
                offset = self._handed[path] = end  # a drain in the pause starts here, not at `kept`
                handed += len(rows)
                if handed % OFFSET_EVERY_ROWS < len(rows):  # crossed a multiple of OFFSET_EVERY_ROWS
                    _write_offset(path, offset)
                    kept = offset
                if pause is not None:
                    pause()
        finally:
            if offset != kept:
                _write_offset(path, offset)

    def _truncate_if_drained(self, path: str, offset: int) -> bool:
        """Start the file over once everything in it reached the store, so it stays small."""
        with self._lock:
            if os.fstat(self._fd).st_size == offset:
                os.ftruncate(self._fd, 0)
                _write_offset(path, 0)
                return True
        return False

    def _drain_orphan(self, path: str, sink, batch_rows: int, pause) -> int:
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return 0
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # its owner is alive, or another process is draining it
            if not os.path.exists(path):
                return 0  # drained and removed by another process just before we locked it
            os.fsync(fd)
            handed = self._drain_file(path, sink, batch_rows, pause, owned=False)
            os.unlink(path)
            _remove_offset(path)
            self._handed.pop(path, None)
            log.info("spool %s from a finished process drained (%d rows)", os.path.basename(path), handed)
            return handed
        finally:
            os.close(fd)

    def _orphans(self) -> list[str]:
        own = self._path if self._pid == os.getpid() else None
        return [p for p in (os.path.join(self.directory, n) for n in self._names()) if p != own]

    def _names(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.directory) if n.endswith(SUFFIX))
        except FileNotFoundError:
            return []


def _splitting(sink, poisoned, quarantine):
    """`sink` that, when a batch fails for what is in it, hands over the halves, down to the one
    row it refuses (quarantined). A failure `poisoned` does not recognise propagates: the store
    is down, and what was handed over so far is handed again later (sinks are idempotent)."""
    def deliver(rows: list[dict]) -> None:
        try:
            sink(rows)
        except Exception as exc:
            if not poisoned(exc):
                raise
            if len(rows) == 1:
                quarantine(rows[0], exc)
                return
            middle = len(rows) // 2
            deliver(rows[:middle])
            deliver(rows[middle:])
    return deliver


def _read_rows(path: str, offset: int, limit: int) -> tuple[list[dict], int]:
    """Complete lines from `offset`: at most `limit` rows, and the offset after the last one."""
    rows = []
    with open(path, "rb") as f:
        f.seek(offset)
        position = offset
        for line in f:
            if not line.endswith(b"\n"):
                break  # a row still being written
            position += len(line)
            try:
                rows.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                log.error("spool %s: unreadable line at byte %d skipped", path, position - len(line))
            if len(rows) >= limit:
                break
    return rows, position


def _offset_path(path: str) -> str:
    return path + ".offset"


def _read_offset(path: str) -> int:
    try:
        with open(_offset_path(path), "rb") as f:
            return int(f.read() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _write_offset(path: str, offset: int) -> None:
    """Atomically (write, fsync, rename) so a crash leaves the old offset or the new one."""
    target = _offset_path(path)
    temporary = target + ".tmp"
    with open(temporary, "wb") as f:
        f.write(str(offset).encode())
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, target)


def _remove_offset(path: str) -> None:
    try:
        os.unlink(_offset_path(path))
    except FileNotFoundError:
        pass
