"""The local record log with `sync_interval_s`: appends acknowledged once written to the
kernel (they survive a SIGKILL), fsynced at the interval and on a roll or close, never
per append; an fsync failure refuses later appends and loses nothing acknowledged."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cordon.errors import RecordCommitError
from gateway.records.local_log import LocalLog

ROOT = Path(__file__).resolve().parents[3]


async def _fill(log: LocalLog, count: int, start: int = 0, pause: float = 0) -> list[int]:
    seqs = []
    for i in range(start, start + count):
        seqs.append(await log.append(f"rec.{i % 3}", f"data-{i}".encode(), f"id-{i}"))
        await asyncio.sleep(pause)
    return seqs


def _expected(first: int, last: int) -> list[tuple[int, str, bytes]]:
    return [(s, f"rec.{(s - 1) % 3}", f"data-{s - 1}".encode()) for s in range(first, last + 1)]


Synced = list[tuple[str, int, float]]  # (file, its size, when done) at each fsync


def _count_fsyncs(monkeypatch: pytest.MonkeyPatch, delay: float = 0) -> Synced:
    synced: Synced = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        info = os.fstat(fd)
        path = os.readlink(f"/proc/self/fd/{fd}") if stat.S_ISREG(info.st_mode) else ""
        time.sleep(delay if path.endswith(".log") else 0)
        real_fsync(fd)
        synced.append((path, info.st_size, time.monotonic()))

    monkeypatch.setattr(os, "fsync", counting_fsync)
    return synced


def _segment_syncs(synced: Synced) -> list[tuple[str, int]]:
    return [(Path(path).name, size) for path, size, _ in synced if path.endswith(".log")]


async def test_appends_are_gap_free_readable_and_found_again_after_a_reopen(
    tmp_path: Path,
) -> None:
    """Interval mode numbers, reads back and deduplicates as the per-call mode does."""
    log = LocalLog(tmp_path, sync_interval_s=0.1)
    assert await _fill(log, 30) == list(range(1, 31))
    twins = await asyncio.gather(log.append("x", b"a", "twin"), log.append("x", b"b", "twin"))
    assert list(twins) == [31, 31]
    assert await log.append("rec.0", b"again", "id-4") == 5  # a repeat stores nothing
    assert list(log.read_from(1))[:30] == _expected(1, 30)
    assert log.last_on("rec.2") == (30, b"data-29")
    await log.close()

    again = LocalLog(tmp_path, sync_interval_s=0.1)
    assert (again.torn, again.first_seq, again.last_seq) == (0, 1, 31)
    assert list(again.read_from(1)) == [*_expected(1, 30), (31, "x", b"a")]
    assert await again.append("rec.0", b"again", "id-7") == 8  # the window was rebuilt
    assert await _fill(again, 3, start=31) == [32, 33, 34]
    await again.close()


APPEND_THEN_SIGKILL = """
import asyncio, os, signal, stat, sys
from pathlib import Path
from gateway.records.local_log import LocalLog

real_fsync, segment_syncs = os.fsync, []
def counting_fsync(fd):
    if stat.S_ISREG(os.fstat(fd).st_mode):
        segment_syncs.append(fd)
    real_fsync(fd)
os.fsync = counting_fsync

async def main():
    log = LocalLog(Path(sys.argv[1]), sync_interval_s=60)  # no background fsync happens
    for i in range(int(sys.argv[2])):
        seq = await log.append("rec", f"data-{i}".encode(), f"id-{i}")
        print(seq, f"id-{i}", flush=True)
    print("fsyncs", len(segment_syncs), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


def test_every_acknowledged_append_survives_a_sigkill_before_any_fsync(tmp_path: Path) -> None:
    """An append is in the kernel when acknowledged: a SIGKILL before any fsync loses none."""
    child = subprocess.run(
        [sys.executable, "-c", APPEND_THEN_SIGKILL, str(tmp_path), "200"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=20,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    *acked, synced = child.stdout.splitlines()
    assert synced == "fsyncs 0"  # nothing of the segment was fsynced before the kill
    assert [int(line.split()[0]) for line in acked] == list(range(1, 201))

    log = LocalLog(tmp_path)
    assert (log.torn, log.last_seq) == (0, 200)
    for line in acked:
        seq, msg_id = line.split()
        entry = log.entry(int(seq))
        assert entry is not None, f"acknowledged {seq} lost"
        assert (entry.msg_id, entry.data) == (msg_id, f"data-{msg_id[3:]}".encode())
    assert log.seq_of("id-199") == 200


async def test_fsync_happens_at_the_interval_and_on_close_not_per_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """50 appends over ~0.5 s cost a few interval fsyncs, one more comes later, and close."""
    synced = _count_fsyncs(monkeypatch)
    log = LocalLog(tmp_path, sync_interval_s=0.2)
    started = time.monotonic()
    assert await _fill(log, 50, pause=0.01) == list(range(1, 51))
    during = len(_segment_syncs(synced))
    elapsed = time.monotonic() - started
    assert during <= elapsed / 0.2 + 1, f"{during} segment fsyncs for 50 appends in {elapsed:.2f}s"

    await asyncio.sleep(0.45)  # more than the interval: what the appends wrote is fsynced
    size = (tmp_path / "00000000000000000001.log").stat().st_size
    assert ("00000000000000000001.log", size) in _segment_syncs(synced)
    idle = len(synced)
    await asyncio.sleep(0.45)
    assert len(synced) == idle  # nothing written since: no fsync

    await log.append("s", b"last", "last")
    before_close = len(synced)
    await log.close()
    size = (tmp_path / "00000000000000000001.log").stat().st_size
    assert _segment_syncs(synced[before_close:]) == [("00000000000000000001.log", size)]


async def test_close_waits_for_an_interval_fsync_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close() returns only once everything written is fsynced, even mid-way through one."""
    synced = _count_fsyncs(monkeypatch, delay=0.3)
    log = LocalLog(tmp_path, sync_interval_s=0.05)
    await _fill(log, 5)
    await asyncio.sleep(0.1)  # the syncer is inside its (slow) fsync now
    await log.close()
    closed = time.monotonic()
    size = (tmp_path / "00000000000000000001.log").stat().st_size
    assert any(
        path.endswith(".log") and synced_size == size and done <= closed
        for path, synced_size, done in synced
    ), "close() returned before the records were fsynced"


async def test_a_roll_fsyncs_each_finished_segment_before_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every segment a roll finishes is fsynced whole in-line, and summarized as per-call."""
    synced = _count_fsyncs(monkeypatch)
    log = LocalLog(tmp_path, segment_bytes=4096, sync_interval_s=60)
    assert await _fill(log, 300) == list(range(1, 301))
    segments = sorted(tmp_path.glob("*.log"))
    assert len(segments) > 3
    syncs = _segment_syncs(synced)
    for finished in segments[:-1]:
        assert (finished.name, finished.stat().st_size) in syncs, f"{finished.name} not fsynced"
    await log.close()  # in-line appends do not wait for a roll's summary: closing does
    assert [p.stem for p in sorted(tmp_path.glob("*.idx"))] == [p.stem for p in segments[:-1]]

    again = LocalLog(tmp_path, segment_bytes=4096)
    assert (again.torn, again.last_seq) == (0, 300)
    assert list(again.read_from(1)) == _expected(1, 300)
    await again.close()


def _failing_fsync(
    monkeypatch: pytest.MonkeyPatch, fails: Callable[[str], bool], once: bool = False
) -> None:
    real_fsync = os.fsync
    failed: list[str] = []

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if fails(path) and not (once and failed):
            failed.append(path)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


async def test_a_failed_interval_fsync_refuses_later_appends_and_keeps_the_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed background fsync refuses later appends; nothing acknowledged is lost."""
    log = LocalLog(tmp_path, sync_interval_s=0.05)
    assert await _fill(log, 3) == [1, 2, 3]
    _failing_fsync(monkeypatch, lambda path: path.endswith(".log"))
    await asyncio.sleep(0.2)  # the background fsync ran and failed
    with pytest.raises(RecordCommitError, match=r"fsync failed .*Input/output error"):
        await log.append("s", b"refused", "refused")
    monkeypatch.undo()
    with pytest.raises(RecordCommitError, match="fsync failed"):  # until reopened
        await log.append("s", b"refused", "refused")
    await log.close()

    again = LocalLog(tmp_path, sync_interval_s=0.05)
    assert list(again.read_from(1)) == _expected(1, 3)
    assert await again.append("s", b"taken", "refused") == 4
    await again.close()


async def test_a_failed_fsync_of_a_finished_segment_refuses_later_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed fsync of the segment a roll finishes refuses appends from then on."""
    log = LocalLog(tmp_path, segment_bytes=4096, sync_interval_s=60)
    await _fill(log, 3)
    # One failure, as Linux reports a lost writeback: a retried fsync then "succeeds" on
    # pages the kernel already dropped, so the acknowledged records stay in doubt.
    _failing_fsync(monkeypatch, lambda path: path.endswith("00000000000000000001.log"), once=True)
    with pytest.raises(RecordCommitError, match="Input/output error"):
        await _fill(log, 300, start=3)  # a roll comes within 300
    acknowledged = log.last_seq
    assert len(list(tmp_path.glob("*.log"))) == 1
    with pytest.raises(RecordCommitError, match="fsync failed"):
        await log.append("s", b"refused", "refused")
    await log.close()

    again = LocalLog(tmp_path, segment_bytes=4096)
    assert list(again.read_from(1)) == _expected(1, acknowledged)
    await again.close()


async def test_appends_from_other_threads_are_numbered_without_gaps_while_the_loop_reads(
    tmp_path: Path,
) -> None:
    """The in-process SDK's callers append from their own threads (`append_now`) while the
    log's loop reads it (the sealer, the shipper) and rolls segments: every reader sees
    whole records numbered from 1 without a gap, and nothing is lost or doubled."""
    log = LocalLog(tmp_path, segment_bytes=4096, sync_interval_s=60)
    log.serve_from(asyncio.get_running_loop())
    writers, each = 4, 150

    def write(n: int) -> list[int]:
        return [
            log.append_now(f"rec.{n}", f"w{n}-{k}|".encode() * 6, f"{n}-{k}") for k in range(each)
        ]

    switching = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads switch often, so reads and writes interleave
    try:
        written = asyncio.gather(*(asyncio.to_thread(write, n) for n in range(writers)))
        reads = 0
        while not written.done():
            seen = [entry.seq for entry in log.entries(1)]
            assert seen == list(range(1, len(seen) + 1))
            reads += 1
            await asyncio.sleep(0)
        numbers = sorted(seq for seqs in await written for seq in seqs)
    finally:
        sys.setswitchinterval(switching)
    assert reads > 1
    assert numbers == list(range(1, writers * each + 1))
    await log.close()
    again = LocalLog(tmp_path, segment_bytes=4096)
    assert (again.torn, again.last_seq) == (0, writers * each)
    assert len({entry.msg_id for entry in again.entries(1)}) == writers * each
    await again.close()


async def test_an_append_interrupted_after_its_write_leaves_no_frame_and_no_gap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in an application thread between the write and its bookkeeping: the frame
    is taken back, the number is the next append's, and the log reopens whole."""
    from gateway.records import local_log

    log = LocalLog(tmp_path, sync_interval_s=60)
    log.serve_from(asyncio.get_running_loop())
    assert [log.append_now("s", b"first", "id-1")] == [1]
    real_write = local_log._write_all

    def write_then_interrupt(fd: int, data: bytes) -> None:
        real_write(fd, data)
        raise KeyboardInterrupt

    monkeypatch.setattr(local_log, "_write_all", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        log.append_now("s", b"interrupted", "id-2")
    monkeypatch.setattr(local_log, "_write_all", real_write)
    assert log.append_now("s", b"second", "id-3") == 2
    await log.close()
    again = LocalLog(tmp_path)
    assert [(seq, data) for seq, _, data in again.read_from(1)] == [(1, b"first"), (2, b"second")]
    assert again.torn == 0
    await again.close()
