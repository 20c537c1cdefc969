"""The spend spool: rows survive a killed process and reach the sink exactly once."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from proxy_app.spool import Spool, SpoolFullError


class DedupSink:
    """Like the store: idempotent on the row id."""

    def __init__(self):
        self.rows = {}
        self.calls = 0

    def __call__(self, rows):
        self.calls += 1
        for row in rows:
            self.rows.setdefault(row["id"], row)


def test_rows_reach_the_sink_in_order_once(tmp_path):
    spool = Spool(str(tmp_path))
    for i in range(1200):
        spool.append({"id": i})
    received = []
    assert spool.drain(received.extend, batch_rows=500) == 1200
    assert [r["id"] for r in received] == list(range(1200))
    assert spool.drain(received.extend) == 0
    assert spool.pending_bytes() == 0


def test_the_drain_pauses_after_each_batch_it_handed_over(tmp_path):
    # The pause is the gevent worker's turn for calls in flight; what was handed over before it
    # counts as handed over, whether or not its offset is kept yet.
    spool = Spool(str(tmp_path))
    for i in range(250):
        spool.append({"id": i})
    batches, pending_at_pause = [], []
    assert spool.drain(batches.append, batch_rows=100, pause=lambda: pending_at_pause.append(
        spool.pending_bytes())) == 250
    assert [len(b) for b in batches] == [100, 100, 50]
    assert len(pending_at_pause) == 3 and pending_at_pause[0] > pending_at_pause[1] > pending_at_pause[2] == 0


def test_the_drain_pauses_after_each_batch_and_a_drain_in_the_pause_hands_nothing_twice(tmp_path):
    # The pause is the gevent worker's turn for calls in flight; a drain running in it (a flush at
    # shutdown, say) must not hand the batch just stored over a second time.
    spool = Spool(str(tmp_path))
    for i in range(250):
        spool.append({"id": i})
    batches, pending_at_pause, nested = [], [], []

    def pause():
        pending_at_pause.append(spool.pending_bytes())
        nested.append(spool.drain(lambda rows: batches.append(rows), batch_rows=1000))

    assert spool.drain(batches.append, batch_rows=100, pause=pause) == 100  # the nested drain took the rest
    assert [len(b) for b in batches] == [100, 150] and nested == [150]
    assert sorted(row["id"] for b in batches for row in b) == list(range(250))
    assert pending_at_pause[0] > 0


def test_the_offset_is_kept_every_thousand_rows_not_every_batch(tmp_path, monkeypatch):
    # Each keeping is an fsync that stalls a gevent worker; the sink is idempotent, so a crash
    # between two keepings re-sends at most 1,000 rows, which it drops.
    import proxy_app.spool as spool_module

    spool = Spool(str(tmp_path))
    for i in range(2500):
        spool.append({"id": i})
    kept = []
    real = spool_module._write_offset
    monkeypatch.setattr(spool_module, "_write_offset", lambda path, offset: (kept.append(offset), real(path, offset)))
    assert spool.drain(lambda rows: None, batch_rows=100) == 2500
    assert len(kept) == 3 and kept == sorted(kept)  # at 1,000 rows, at 2,000, and at the drain's end
    assert spool.pending_bytes() == 0
    restarted = Spool(str(tmp_path))  # another process finds the kept offset: nothing left to hand over
    assert spool_module._read_offset(spool._path) == os.path.getsize(spool._path) and restarted.pending_bytes() == 0


def test_a_failing_sink_keeps_the_rows_for_the_next_drain(tmp_path):
    spool = Spool(str(tmp_path))
    spool.append({"id": "a"})

    def store_down(rows):
        raise ConnectionError("database is down")

    with pytest.raises(ConnectionError):
        spool.drain(store_down)
    assert spool.pending_bytes() > 0
    sink = DedupSink()
    assert spool.drain(sink) == 1 and list(sink.rows) == ["a"]


def test_a_crash_between_the_sink_and_the_offset_delivers_again_and_dedup_makes_it_once(tmp_path):
    spool = Spool(str(tmp_path))
    for i in range(10):
        spool.append({"id": i})
    sink = DedupSink()

    def accepted_then_crashed(rows):
        sink(rows)
        raise RuntimeError("crashed before the offset was written")

    with pytest.raises(RuntimeError):
        spool.drain(accepted_then_crashed)
    spool.drain(sink)
    assert sink.calls == 2 and sorted(sink.rows) == list(range(10))


def test_the_file_starts_over_once_drained_past_its_start_over_size(tmp_path):
    spool = Spool(str(tmp_path), start_over_bytes=30)
    spool.append({"id": 1})
    spool.drain(lambda rows: None)
    [name] = [n for n in os.listdir(tmp_path) if n.endswith(".jsonl")]
    assert os.path.getsize(tmp_path / name) == len(b'{"id":1}\n')  # drained, still small: kept
    spool.append({"id": 1.5, "padding": "x" * 20})
    spool.drain(lambda rows: None)
    assert os.path.getsize(tmp_path / name) == 0
    spool.append({"id": 2})
    received = []
    spool.drain(received.extend)
    assert received == [{"id": 2}]


def test_the_spool_is_bounded(tmp_path):
    spool = Spool(str(tmp_path), max_bytes=100)
    spool.append({"id": "x" * 50})
    with pytest.raises(SpoolFullError):
        spool.append({"id": "y" * 50})


def _writer(tmp_path, rows, then):
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        from proxy_app.spool import Spool
        spool = Spool({str(tmp_path)!r})
        for i in range({rows}):
            spool.append({{"id": i}})
        print("written", flush=True)
        {then}
    """)
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)


def test_rows_of_a_killed_process_are_drained_by_another_exactly_once(tmp_path):
    writer = _writer(tmp_path, 250, "os.kill(os.getpid(), signal.SIGKILL)")
    writer.wait(30)
    assert writer.returncode == -signal.SIGKILL

    sink = DedupSink()
    survivor = Spool(str(tmp_path))
    assert survivor.drain(sink) == 250
    assert sorted(sink.rows) == list(range(250))
    assert survivor.drain(sink) == 0
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".jsonl")]


def test_the_spool_of_a_live_process_is_left_to_it(tmp_path):
    writer = _writer(tmp_path, 5, "time.sleep(30)")
    try:
        assert writer.stdout.readline().strip() == "written"
        assert Spool(str(tmp_path)).drain(DedupSink()) == 0
        assert Spool(str(tmp_path)).pending_bytes() > 0
    finally:
        writer.kill()
        writer.wait()
    deadline = time.time() + 5
    sink = DedupSink()
    while not sink.rows and time.time() < deadline:
        Spool(str(tmp_path)).drain(sink)
    assert sorted(sink.rows) == list(range(5))


def test_a_file_being_created_is_never_taken_for_a_dead_process(tmp_path, monkeypatch):
    """A drain running between a process creating its file and locking it (the writer thread,
    or another worker) used to drain and remove the file: the first row then raised (the lock
    was taken) or went to a removed file."""
    from proxy_app import spool as module

    writer, other = Spool(str(tmp_path)), Spool(str(tmp_path))
    sink = DedupSink()
    lock = module.fcntl.flock

    def drained_before_locking(fd, operation):
        monkeypatch.setattr(module.fcntl, "flock", lock)
        assert other.drain(sink) == 0  # the worst moment for another process to look
        return lock(fd, operation)

    monkeypatch.setattr(module.fcntl, "flock", drained_before_locking)
    writer.append({"id": "first"})
    assert other.drain(sink) == 0, "the file belongs to a live writer"
    assert writer.drain(sink) == 1 and list(sink.rows) == ["first"]
