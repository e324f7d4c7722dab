"""The sidecar's embedded record log keeps what it acknowledged, numbered gap-free, once:
across segment rolls, reopenings, torn tails, a SIGKILL, a full disk and retention."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from cordon.errors import RecordCommitError
from gateway.records import local_log
from gateway.records.local_log import MAX_FRAME, LocalLog, LocalSink
from gateway.records.sink import RecordSink

pytestmark = pytest.mark.timeout(10)

ROOT = Path(__file__).resolve().parents[3]


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.log"))


async def _fill(log: LocalLog, count: int, start: int = 0) -> list[int]:
    return [
        await log.append(f"rec.{i % 3}", f"data-{i}".encode(), f"id-{i}")
        for i in range(start, start + count)
    ]


async def test_sequences_and_reads_across_rolls_and_reopen(tmp_path: Path) -> None:
    log = LocalLog(tmp_path / "log", segment_bytes=512)
    assert (log.first_seq, log.last_seq, log.get(1), log.last_on("rec.0")) == (0, 0, None, None)
    assert await _fill(log, 40) == list(range(1, 41))
    assert len(_segments(tmp_path / "log")) > 3  # rolled
    assert stat.S_IMODE((tmp_path / "log").stat().st_mode) == 0o700
    assert (log.first_seq, log.last_seq) == (1, 40)
    assert log.get(17) == ("rec.1", b"data-16")
    assert log.get(41) is None and log.get(0) is None
    assert log.last_on("rec.0") == (40, b"data-39")
    assert log.next_on("rec.1", 3) == (5, b"data-4")
    assert log.next_on("rec.1", 39) is None
    assert list(log.read_from(38)) == [
        (s, f"rec.{(s - 1) % 3}", f"data-{s - 1}".encode()) for s in (38, 39, 40)
    ]
    assert abs((log.written_at_ms(40) or 0) - time.time() * 1000) < 5000
    await log.close()

    again = LocalLog(tmp_path / "log", segment_bytes=512)
    assert (again.torn, again.first_seq, again.last_seq) == (0, 1, 40)
    assert [s for s, _, _ in again.read_from(0)] == list(range(1, 41))
    assert again.last_on("rec.0") == (40, b"data-39")
    assert await _fill(again, 5, start=40) == list(range(41, 46))
    assert again.get(45) == ("rec.2", b"data-44")
    await again.close()


async def test_a_repeated_id_is_stored_once(tmp_path: Path) -> None:
    log = LocalLog(tmp_path, segment_bytes=256)
    assert await log.append("s", b"first", "x") == 1
    assert await log.append("s", b"other", "y") == 2
    assert await log.append("s", b"again", "x") == 1
    twins = await asyncio.gather(log.append("s", b"t1", "z"), log.append("s", b"t2", "z"))
    assert twins == [3, 3]
    assert log.last_seq == 3 and log.get(1) == ("s", b"first")
    await log.close()
    again = LocalLog(tmp_path, segment_bytes=256)
    assert await again.append("s", b"again", "x") == 1  # the window is rebuilt on opening
    await again.close()


async def test_the_dedupe_window_is_bounded(tmp_path: Path) -> None:
    log = LocalLog(tmp_path, dedupe_window=3)
    assert await log.append("s", b"a", "x") == 1
    await _fill(log, 3)
    assert await log.append("s", b"a", "x") == 5  # fell out of the window: stored anew
    await log.close()


async def test_group_commit_shares_fsyncs_and_answers_after_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[tuple[str, int]] = []  # (file, its size) at each fsync, in order
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        real_fsync(fd)
        info = os.fstat(fd)
        path = os.readlink(f"/proc/self/fd/{fd}") if stat.S_ISREG(info.st_mode) else ""
        synced.append((path, info.st_size))

    monkeypatch.setattr(os, "fsync", counting_fsync)
    log = LocalLog(tmp_path, segment_bytes=4096)

    async def one(i: int) -> tuple[int, bytes, list[tuple[str, int]]]:
        payload = f"payload-{i:04d}|".encode() * 4
        await asyncio.sleep(i % 20 / 1000)  # arrivals spread out: several batches
        seq = await log.append("s", payload, f"id-{i}")
        return seq, payload, list(synced)  # the fsyncs done when the append returned

    results = await asyncio.gather(*(one(i) for i in range(200)))
    assert sorted(seq for seq, _, _ in results) == list(range(1, 201))
    # A roll's summary is one file and one directory fsync, once per segment, not per batch.
    batches = len(synced) - 2 * sum(path.endswith(".idx.tmp") for path, _ in synced)
    # Shared: 200 appends arrive in 20 waves; how many batches they make depends on how
    # long each fsync takes on a busy machine (61 seen), so only "shared" is asserted.
    assert 1 < batches <= 100, f"{batches} fsyncs for 200 appends"
    for seq, payload, seen in results:
        assert any(
            path.endswith(".log") and payload in Path(path).read_bytes()[:size]
            for path, size in seen  # a segment's (a summary is renamed once synced)
        ), f"append {seq} returned before its frame was fsynced"
    await log.close()


def _frame_tail(directory: Path) -> Path:
    return _segments(directory)[-1]


async def test_a_tail_torn_mid_frame_is_cut_and_numbering_goes_on(tmp_path: Path) -> None:
    log = LocalLog(tmp_path, segment_bytes=300)
    await _fill(log, 20)
    await log.close()
    last = _frame_tail(tmp_path)
    os.truncate(last, last.stat().st_size - 7)  # a crash in the middle of the 20th frame

    again = LocalLog(tmp_path, segment_bytes=300)
    assert (again.torn, again.last_seq, again.get(20)) == (1, 19, None)
    assert [d for _, _, d in again.read_from(1)] == [f"data-{i}".encode() for i in range(19)]
    assert await again.append("s", b"after", "after") == 20
    await again.close()
    third = LocalLog(tmp_path, segment_bytes=300)
    assert (third.torn, third.last_seq, third.get(20)) == (0, 20, ("s", b"after"))
    await third.close()


async def test_garbage_after_the_last_frame_is_cut(tmp_path: Path) -> None:
    log = LocalLog(tmp_path, segment_bytes=300)
    await _fill(log, 20)
    await log.close()
    with _frame_tail(tmp_path).open("ab") as handle:
        handle.write(b"CLL\x01\x00\x00\x00\x30garbage, not a frame")

    again = LocalLog(tmp_path, segment_bytes=300)
    assert (again.torn, again.last_seq) == (1, 20)
    assert await again.append("s", b"after", "after") == 21
    assert [s for s, _, _ in again.read_from(1)] == list(range(1, 22))
    await again.close()


async def test_a_read_only_reader_beside_a_writer_changes_nothing(tmp_path: Path) -> None:
    writer = LocalLog(tmp_path, segment_bytes=300, max_bytes=10_000)
    await _fill(writer, 20)
    last = _frame_tail(tmp_path)
    with last.open("ab") as handle:
        handle.write(b"CLL\x01\x00\x00")  # the writer's next frame, half written
    size = last.stat().st_size
    reader = LocalLog(tmp_path, segment_bytes=300, max_bytes=10, read_only=True)
    assert (reader.torn, reader.last_seq, reader.get(20)) == (0, 20, ("rec.1", b"data-19"))
    assert last.stat().st_size == size  # not cut: it may still be completed
    assert reader.enforce_retention() == 0 and reader.first_seq == 1
    with pytest.raises(RecordCommitError, match="read-only"):
        await reader.append("s", b"no", "no")
    await reader.close()
    await writer.close()
    assert LocalLog(tmp_path / "missing", read_only=True).last_seq == 0
    assert not (tmp_path / "missing").exists()


async def test_damage_inside_a_sealed_segment_refuses_to_open(tmp_path: Path) -> None:
    log = LocalLog(tmp_path, segment_bytes=300)
    await _fill(log, 20)
    await log.close()
    first = _segments(tmp_path)[0]
    first.write_bytes(b"XXXX" + first.read_bytes()[4:])
    with pytest.raises(RecordCommitError, match="damaged"):
        LocalLog(tmp_path, segment_bytes=300)


APPEND_FOREVER = """
import asyncio, sys
from pathlib import Path
from gateway.records.local_log import LocalLog

async def worker(log, w):
    i = 0
    while True:
        msg_id = f"w{w}-{i}"
        seq = await log.append(f"rec.{w % 2}", f"data-{msg_id}".encode(), msg_id)
        print(seq, msg_id, flush=True)
        i += 1

async def main():
    log = LocalLog(Path(sys.argv[1]), segment_bytes=2048)
    await asyncio.gather(*(worker(log, w) for w in range(8)))

asyncio.run(main())
"""


def _python(script: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )


async def test_every_append_acknowledged_before_a_sigkill_survives(tmp_path: Path) -> None:
    child = _python(APPEND_FOREVER, str(tmp_path))
    assert child.stdout is not None
    acked: list[str] = []
    while len(acked) < 300:
        line = child.stdout.readline()
        assert line, "the appending process died"
        acked.append(line)
    child.send_signal(signal.SIGKILL)
    child.wait()
    acked += child.stdout.read().splitlines(keepends=True)  # printed before the kill
    pairs = [line.split() for line in acked if line.endswith("\n")]

    log = LocalLog(tmp_path, segment_bytes=2048)
    entries = list(log.entries(1))
    assert [e.seq for e in entries] == list(range(1, log.last_seq + 1))
    assert len({e.msg_id for e in entries}) == len(entries)
    for seq, msg_id in pairs:
        entry = log.entry(int(seq))
        assert entry is not None, f"acknowledged {seq} lost"
        assert (entry.msg_id, entry.data) == (msg_id, f"data-{msg_id}".encode())
    assert await log.append("s", b"after", "after") == len(entries) + 1
    await log.close()


DISK_FULL = """
import asyncio, json, resource, signal, sys
from pathlib import Path
from cordon.errors import RecordCommitError
from gateway.records.local_log import LocalLog

async def fail(log, data, msg_id):
    try:
        await log.append("s", data, msg_id)
    except RecordCommitError as exc:
        return str(exc)
    return None

async def main():
    root, out = Path(sys.argv[1]), {}
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killed process
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

    log = LocalLog(root / "active")
    for i in range(3):
        await log.append("s", b"x" * 100, f"a{i}")
    segment = root / "active" / "00000000000000000001.log"
    out["before"] = segment.stat().st_size
    resource.setrlimit(resource.RLIMIT_FSIZE, (out["before"] + 50, hard))  # a partial write
    out["error"] = await fail(log, b"y" * 1000, "big")
    out["after"] = segment.stat().st_size
    out["last_after_failure"] = log.last_seq
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space is back
    out["next"] = await log.append("s", b"z" * 1000, "big")
    await log.close()
    again = LocalLog(root / "active")
    out["torn"] = again.torn
    out["seqs"] = [seq for seq, _, _ in again.read_from(1)]
    out["fourth"] = again.get(4)[1].decode()[:3]
    await again.close()

    rolling = LocalLog(root / "rolling", segment_bytes=200)
    await rolling.append("s", b"x" * 100, "r0")
    resource.setrlimit(resource.RLIMIT_FSIZE, (50, hard))  # the new segment cannot be written
    out["roll_error"] = await fail(rolling, b"y" * 150, "r1")
    out["roll_files"] = sorted(p.name for p in (root / "rolling").iterdir())
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    out["roll_next"] = await rolling.append("s", b"y" * 150, "r1")
    await rolling.close()
    print(json.dumps(out))

asyncio.run(main())
"""


def test_a_full_disk_refuses_cleanly_and_appends_resume(tmp_path: Path) -> None:
    child = _python(DISK_FULL, str(tmp_path))
    stdout, _ = child.communicate(timeout=8)
    assert child.returncode == 0
    out = json.loads(stdout)
    assert out["error"] and "disk full" in out["error"] and str(tmp_path) in out["error"]
    assert out["after"] == out["before"]  # no partial frame left behind
    assert out["last_after_failure"] == 3
    assert out["next"] == 4  # the failed append spent no sequence
    assert (out["torn"], out["seqs"], out["fourth"]) == (0, [1, 2, 3, 4], "zzz")
    assert out["roll_error"] and "disk full" in out["roll_error"]
    assert out["roll_files"] == ["00000000000000000001.log"]  # the new segment removed
    assert out["roll_next"] == 2


async def test_a_failed_write_spends_no_sequence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = LocalLog(tmp_path)
    await _fill(log, 2)
    size = _segments(tmp_path)[0].stat().st_size
    real_write = os.write

    def full(fd: int, data: bytes | memoryview) -> int:
        real_write(fd, bytes(data)[:5])  # part of the frame lands, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(RecordCommitError, match="disk full"):
        await log.append("s", b"lost", "lost")
    monkeypatch.setattr(os, "write", real_write)
    assert _segments(tmp_path)[0].stat().st_size == size
    assert await log.append("s", b"kept", "lost") == 3
    await log.close()


async def test_a_record_over_the_cap_is_refused(tmp_path: Path) -> None:
    log = LocalLog(tmp_path)
    with pytest.raises(RecordCommitError, match="cap"):
        await log.append("s", bytes(MAX_FRAME), "huge")
    assert log.last_seq == 0
    await log.close()


async def test_retention_by_size_drops_whole_old_segments(tmp_path: Path) -> None:
    log = LocalLog(tmp_path, segment_bytes=512, max_bytes=2000)
    await _fill(log, 60)
    assert log.size_bytes <= 2000
    first = log.first_seq
    assert first > 1 and first == int(_segments(tmp_path)[0].stem)  # a segment boundary
    assert log.get(first - 1) is None and log.get(1) is None
    assert [s for s, _, _ in log.read_from(1)] == list(range(first, 61))
    assert log.enforce_retention() == 0
    await log.close()
    again = LocalLog(tmp_path, segment_bytes=512, max_bytes=2000)
    assert (again.first_seq, again.last_seq) == (first, 60)
    assert await again.append("s", b"after", "after") == 61
    await again.close()


async def test_retention_by_age_keeps_the_newest_segment(tmp_path: Path) -> None:
    log = LocalLog(tmp_path, segment_bytes=512, max_age_s=60)
    await _fill(log, 30)
    assert log.enforce_retention() == 0  # nothing is a minute old yet
    newest = int(_segments(tmp_path)[-1].stem)
    assert log.enforce_retention(now=time.time() + 120) == newest - 1
    assert (log.first_seq, log.last_seq) == (newest, 30)
    assert log.get(newest - 1) is None and log.get(30) == ("rec.2", b"data-29")
    assert log.last_on("rec.0") == (28, b"data-27")
    await log.close()
    again = LocalLog(tmp_path, segment_bytes=512, max_age_s=60)
    assert await again.append("s", b"after", "after") == 31
    await again.close()


async def test_local_sink_is_a_record_sink(tmp_path: Path) -> None:
    log = LocalLog(tmp_path)
    sink: RecordSink = LocalSink(log, "rec.sidecar")
    assert sink.connected and 0 < sink.capacity < MAX_FRAME
    assert await sink.last() is None
    assert await sink.publish(b"one", "r1") == 1
    await log.append("other", b"not mine", "o1")
    assert await sink.publish(b"two", "r2") == 3
    assert await sink.publish(b"two", "r2") == 3
    assert await sink.last() == b"two"
    await log.close()
    assert not sink.connected
    with pytest.raises(RecordCommitError):
        await sink.publish(b"three", "r3")


def _loads_nats(statement: str) -> bool:
    probe = f"import sys\n{statement}\nprint('nats' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, env=env, check=True
    )
    return result.stdout.strip() == "True"


def test_the_local_log_module_loads_no_nats_client() -> None:
    # The module alone, without its package's __init__ (which loads the NATS sink).
    path = ROOT / "gateway" / "records" / "local_log.py"
    assert not _loads_nats(
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('local_log', {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules['local_log'] = module\n"
        "spec.loader.exec_module(module)"
    )


def test_importing_the_local_log_loads_no_nats_client() -> None:
    assert not _loads_nats("import gateway.records.local_log")


def _answers(log: LocalLog) -> object:
    """Everything the log answers about what it holds, to compare two openings."""
    seqs = range(0, log.last_seq + 3)
    subjects = ["rec.0", "rec.1", "rec.2", "s", "none"]
    return (
        (log.first_seq, log.last_seq, log.size_bytes),
        [log.get(s) for s in seqs],
        [log.written_at_ms(s) for s in seqs],
        [log.next_on(subject, s) for subject in subjects for s in seqs],
        [log.last_on(subject) for subject in subjects],
        list(log.read_from(0)),
        [e.msg_id for e in log.entries(0)],
    )


def _surveyed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the segments opening scans from now on."""
    scanned: list[str] = []
    real = local_log._survey

    def counting(segment: local_log._Segment, *, check: bool) -> int:
        scanned.append(segment.path.name)
        return real(segment, check=check)

    monkeypatch.setattr(local_log, "_survey", counting)
    return scanned


def _without_summaries(directory: Path, into: Path) -> Path:
    into.mkdir()
    for path in _segments(directory):
        (into / path.name).write_bytes(path.read_bytes())
    return into


def _summaries(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.idx"))


async def test_reopening_reads_summaries_and_scans_only_the_newest_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = LocalLog(tmp_path / "log", segment_bytes=512)
    await _fill(log, 60)
    expected = _answers(log)
    await log.close()
    names = [p.name for p in _segments(tmp_path / "log")]
    assert [p.stem for p in _summaries(tmp_path / "log")] == [n[:-4] for n in names[:-1]]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in _summaries(tmp_path / "log"))

    scanned = _surveyed(monkeypatch)
    again = LocalLog(tmp_path / "log", segment_bytes=512)
    assert scanned == [names[-1]]
    assert _answers(again) == expected
    plain = LocalLog(_without_summaries(tmp_path / "log", tmp_path / "plain"), read_only=True)
    assert scanned[1:] == names  # no summaries: every segment scanned, same answers
    assert _answers(plain) == expected
    assert await _fill(again, 30, start=60) == list(range(61, 91))  # rolls write summaries
    await again.close()
    scanned.clear()
    third = LocalLog(tmp_path / "log", segment_bytes=512)
    assert scanned == [_segments(tmp_path / "log")[-1].name]
    assert third.last_seq == 90 and third.get(75) == ("rec.2", b"data-74")
    await third.close()


def _meta(path: Path) -> dict[str, int]:
    raw = path.read_bytes()
    meta: dict[str, int] = json.loads(raw[12 : 12 + int.from_bytes(raw[4:8], "big")])
    return meta


def _rewrite_summary(path: Path, change: dict[str, object]) -> None:
    """A summary whose own checksum holds, saying what `change` says."""
    raw = path.read_bytes()
    length = int.from_bytes(raw[4:8], "big")
    meta = {**_meta(path), **change}
    body = json.dumps(meta).encode()
    head = b"CLS\x01" + len(body).to_bytes(4, "big") + zlib.crc32(body).to_bytes(4, "big")
    path.write_bytes(head + body + raw[12 + length :])


async def test_a_summary_that_does_not_match_its_segment_is_not_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = LocalLog(tmp_path / "log", segment_bytes=512)
    await _fill(log, 60)
    await log.close()
    # Another log numbered alike, same sizes, other data: its first segment swapped in.
    other = LocalLog(tmp_path / "other", segment_bytes=512)
    for i in range(60):
        await other.append(f"rec.{i % 3}", f"DATA-{i}".encode(), f"id-{i}")
    await other.close()
    second = _summaries(tmp_path / "log")[1]
    count = _meta(second)["count"]
    _rewrite_summary(second, {"count": count - 1})  # lies about its count
    swapped = _segments(tmp_path / "log")[0]
    swapped.write_bytes((tmp_path / "other" / swapped.name).read_bytes())
    third = _summaries(tmp_path / "log")[2]
    third.write_bytes(third.read_bytes()[:-3] + b"xyz")  # its digests garbled
    fourth = _summaries(tmp_path / "log")[3]
    fourth.write_bytes(fourth.read_bytes().replace(b'"count"', b'"cOunt"'))  # its checksum

    expected = _answers(LocalLog(_without_summaries(tmp_path / "log", tmp_path / "plain")))
    scanned = _surveyed(monkeypatch)
    again = LocalLog(tmp_path / "log", segment_bytes=512)
    names = [p.name for p in _segments(tmp_path / "log")]
    assert sorted(scanned) == sorted([names[0], names[1], names[2], names[3], names[-1]])
    assert again.get(1) == ("rec.0", b"DATA-0")  # the segment now there, not the summary's
    assert _answers(again) == expected
    assert await again.append("s", b"again", "id-20") == 21  # the window, from a rescan
    await again.close()
    scanned.clear()
    LocalLog(tmp_path / "log", segment_bytes=512, read_only=True)
    assert scanned == [names[-1]]  # the writer's opening rewrote the four summaries


async def test_the_dedupe_window_covers_summarized_segments_after_a_reopen(
    tmp_path: Path,
) -> None:
    log = LocalLog(tmp_path, segment_bytes=256)
    await _fill(log, 40)
    await log.close()
    assert len(_summaries(tmp_path)) > 5
    again = LocalLog(tmp_path, segment_bytes=256)
    assert [await again.append("s", b"x", f"id-{i}") for i in range(40)] == list(range(1, 41))
    assert again.last_seq == 40
    await again.close()
    bounded = LocalLog(tmp_path, segment_bytes=256, dedupe_window=15)
    assert await bounded.append("s", b"x", "id-25") == 26  # within the last 15
    assert await bounded.append("s", b"x", "id-24") == 41  # not: stored anew
    await bounded.close()


async def test_read_only_openings_use_summaries_and_write_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = LocalLog(tmp_path, segment_bytes=512)
    await _fill(log, 40)
    await log.close()
    summaries = _summaries(tmp_path)
    summaries[0].unlink()
    scanned = _surveyed(monkeypatch)
    reader = LocalLog(tmp_path, segment_bytes=512, read_only=True)
    names = [p.name for p in _segments(tmp_path)]
    assert scanned == [names[0], names[-1]]
    assert _summaries(tmp_path) == summaries[1:]  # the missing one not written
    assert reader.last_seq == 40 and reader.get(1) == ("rec.0", b"data-0")
    await reader.close()


async def test_retention_removes_a_segments_summary_with_it(tmp_path: Path) -> None:
    log = LocalLog(tmp_path, segment_bytes=512, max_bytes=2000)
    await _fill(log, 60)
    await log.close()
    logs = {p.stem for p in _segments(tmp_path)}
    assert {p.stem for p in _summaries(tmp_path)} == logs - {max(logs)}
    (tmp_path / "00000000000000000001.idx").write_bytes(b"left by a crash")
    (tmp_path / f"{max(logs)}.idx.tmp").write_bytes(b"half written")
    LocalLog(tmp_path, segment_bytes=512, max_bytes=2000)  # the writer's opening tidies
    assert {p.stem for p in _summaries(tmp_path)} == logs - {max(logs)}
    assert not list(tmp_path.glob("*.tmp"))
