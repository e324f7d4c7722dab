"""The embedded record log of a sidecar in local mode: what the `RECORDS` stream is to
a replica, on the sidecar's own disk, with no NATS client loaded.

A record is acknowledged only once its frame is on disk and fsynced, so a SIGKILL or a
power cut loses nothing that was acknowledged. Appends that arrive together share one
write and one fsync (group commit: one batch at a time, the next one gathering while
the disk works), which is what makes per-record durability affordable.

With `sync_interval_s` (the in-process SDK's default, where a per-call fsync would cost
more than the whole call's budget) a record is acknowledged once its frame is written
to the kernel, in-line: it survives the process crashing or being killed, and it is
fsynced within `sync_interval_s`; a machine losing power may lose that last interval.
A segment is fsynced whole before the next one begins either way.

Layout: a directory (0700) of segment files named by their first sequence
(`00000000000000000001.log`, 0600), rolled at `segment_bytes`. A frame is
`[magic "CLL\\x01"][u32 body length][u32 CRC-32 of the body]` then the body
`[u64 seq][u64 unix ms][u16 subject length][u16 id length][subject][id][data]`.
Sequences are gap-free and never restart, across rolls, reopenings and retention.

Opening checks every frame of the newest segment and cuts a torn or garbled tail back to
the last whole frame (a write that never completed was never acknowledged); the older
segments were sealed whole, so damage there refuses to open instead of being cut. A
read-only opening (an export beside the running sidecar) cuts, creates and removes
nothing: a partial last frame there is the writer's batch in flight.

Opening costs the number of segments plus one scan of the newest, not the log's size: a
segment that rolls gets a summary beside it (`<first seq>.idx`, 0600, written to a
temporary file, fsynced and renamed) holding what a scan would rebuild. It is
`[magic "CLS\x01"][u32 meta length][u32 CRC-32 of meta]`, the meta as JSON (count,
size, newest write time, the sparse offsets, each subject's first and last sequence,
the stamps below, the CRC-32 of the digests), then one little-endian u64 digest of each
record's id. A summary is trusted only if its own CRC holds and its segment still
matches its stamps: the file's size, and the first and last frames whole, numbered as
the count says and carrying the CRCs the summary recorded. Otherwise the segment is
scanned as before and (unless read-only) its summary rewritten. Damage inside a sealed
segment whose summary still matches is therefore found when that part is read (a
"damaged" error), not at opening. The dedupe window is rebuilt whole from the digests
of the newest segments' summaries: a reopened log still deduplicates the last
`dedupe_window` ids.

Memory stays flat however large the log grows: per segment its first sequence and the
offset of every 64th frame, per subject its last sequence, the id digests of the active
segment (8 bytes a record, for its summary), and the id-deduplication window as a
fixed-size hash table of recent ids. Reads scan at most 63 frames.
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import errno
import hashlib
import json
import logging
import mmap
import os
import struct
import sys
import threading
import time
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from cordon import jsoncodec
from cordon.errors import RecordCommitError
from cordon.loops import call_on

__all__ = ["MAX_FRAME", "Entry", "LocalLog", "LocalSink"]

log = logging.getLogger("cordon.gateway.local_log")

MAGIC = b"CLL\x01"  # the format's name and version: a reader refuses anything else
HEADER = struct.Struct(">4sII")  # magic, body length, CRC-32 of the body
BODY = struct.Struct(">QQHH")  # seq, unix ms, subject length, id length
MAX_FRAME = 64 * 1024 * 1024  # one record this large is a bug upstream, not a record
HEADROOM = 8 * 1024  # the frame's own fields, subject and id, within MAX_FRAME
INDEX_EVERY = 64  # frames between two remembered offsets: a read scans fewer
SUFFIX = ".log"
SUMMARY = ".idx"  # a finished segment's summary, beside it
SUMMARY_MAGIC = b"CLS\x01"
SUMMARY_HEAD = struct.Struct(">4sII")  # magic, meta length, CRC-32 of the meta
DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class Entry(NamedTuple):
    seq: int
    subject: str
    msg_id: str
    data: bytes
    written_ms: int


class _Frame(NamedTuple):
    entry: Entry
    start: int  # file offsets of the frame
    end: int


@dataclass
class _Segment:
    first: int  # the sequence the file is named by
    path: Path
    count: int = 0
    size: int = 0
    last_ms: int = 0
    offsets: array[int] = field(default_factory=lambda: array("Q"))  # every 64th frame
    subjects: dict[str, tuple[int, int]] = field(default_factory=dict)  # first, last seq
    head_crc: int = 0  # the first frame's CRC, the last one's and where it starts: what
    tail_crc: int = 0  # a summary is stamped with, to know it still describes the file
    tail: int = 0
    # The id digest of each record, kept until a summary holds them (None: one does).
    digests: array[int] | None = field(default_factory=lambda: array("Q"))

    @property
    def last(self) -> int:
        return self.first + self.count - 1

    def add(self, seq: int, subject: str, at: tuple[int, int], written_ms: int, crc: int) -> None:
        """Account for the frame of `seq`, between the file offsets `at`."""
        if self.count % INDEX_EVERY == 0:
            self.offsets.append(at[0])
        if not self.count:
            self.head_crc = crc
        self.count += 1
        self.tail, self.size = at
        self.tail_crc = crc
        self.last_ms = written_ms
        first, _ = self.subjects.get(subject, (seq, seq))
        self.subjects[subject] = (first, seq)

    def snapshot(self, subject: str) -> tuple[Any, ...]:
        """What `add` changes, to `restore` if an append is interrupted half-way."""
        return (
            self.count, len(self.offsets), self.head_crc, self.tail, self.size,
            self.tail_crc, self.last_ms, self.subjects.get(subject),
        )  # fmt: skip

    def restore(self, subject: str, before: tuple[Any, ...]) -> None:
        count, offsets, self.head_crc, self.tail, self.size = before[:5]
        self.tail_crc, self.last_ms, span = before[5:]
        self.count = count
        del self.offsets[offsets:]
        if span is None:
            self.subjects.pop(subject, None)
        else:
            self.subjects[subject] = span


class _Pending(NamedTuple):
    subject: str
    data: bytes
    msg_id: str
    done: asyncio.Future[int] | concurrent.futures.Future[int]  # the latter: in-line


@dataclass
class _Chunk:
    """The frames of one batch that go to one segment file."""

    segment: _Segment
    new: bool  # the batch creates the file (a roll)
    start: int  # the file's size before the batch
    frames: list[tuple[int, str, bytes]] = field(default_factory=list)  # seq, subject, frame
    filled: int = 0  # the file's size with the frames written

    def __post_init__(self) -> None:
        self.filled = self.start

    def add(self, seq: int, subject: str, frame: bytes) -> None:
        self.frames.append((seq, subject, frame))
        self.filled += len(frame)


class LocalLog:
    """An append-only, gap-free, deduplicating record log in one directory."""

    def __init__(
        self,
        directory: Path,
        *,
        # Opening scans the newest segment whole (CRCs included): 16 MiB is about 42,000
        # frames of 400 bytes, ~0.15 s; a full 64 MiB one took ~0.5 s of a 1 s start.
        segment_bytes: int = 16 * 1024 * 1024,
        max_bytes: int | None = None,
        max_age_s: float | None = None,
        dedupe_window: int = 100_000,
        read_only: bool = False,
        sync_interval_s: float | None = None,
    ) -> None:
        self.directory = directory
        # None: every batch fsynced before it is acknowledged. Else written in-line and
        # fsynced at this interval (the module's docstring says what that risks).
        self.sync_interval_s = sync_interval_s
        self._unsynced = False
        self._syncer: asyncio.Task[None] | None = None
        self._syncer_asked = False  # its start is on its way to the owner loop
        self._rolled_again = False  # a roll since the running follow-up began
        self._syncing: asyncio.Future[None] | None = None  # its fsync, in a thread
        # A reader beside a live writer (an export): it changes nothing on disk, and a
        # partial last frame is the writer's batch in flight, not a tail to cut.
        self.read_only = read_only
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        # Retention never removes a segment holding this sequence or a later one: a
        # region-mode sidecar keeps what it has not shipped yet (None: no such floor).
        self.keep_from: int | None = None
        # The size cap removes nothing younger than this (records a pack says to keep);
        # and an append that would take the log past `full_at` is refused instead.
        self.min_age_s: float | None = None
        self.full_at: int | None = None
        self.torn = 0  # torn or garbled tails cut off when this log was opened
        self._segments: list[_Segment] = []
        self._subject_last: dict[str, int] = {}
        self._recent = _RecentIds(dedupe_window)
        self._queue: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._fd: int | None = None  # the newest segment, written only by the batch thread
        # The loop its own tasks (the fsync every interval, a roll's follow-up) run on;
        # None: the loop of whoever appends. `append_now` may come from other threads
        # (the in-process SDK's callers): what they change is changed under this lock.
        self._owner: asyncio.AbstractEventLoop | None = None
        self._lock = threading.RLock()
        self._broken: str | None = None  # a failure that left the disk in doubt
        self._closed = False
        if not read_only:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if directory.is_dir():
            self._recover()

    # --- opening -----------------------------------------------------------------

    def _recover(self) -> None:
        names = sorted(
            p for p in self.directory.iterdir() if p.suffix == SUFFIX and p.stem.isdigit()
        )
        if not self.read_only:
            self._tidy(names)
        rescanned: list[_Segment] = []
        for path in names:
            sealed = path != names[-1]
            segment = _read_summary(path, int(path.stem)) if sealed else None
            if segment is None:
                segment = self._load(_Segment(int(path.stem), path), sealed)
                rescanned += [segment] if sealed and segment.count else []
            self._follow(segment)
        for segment in self._segments:
            for subject, (_, last) in segment.subjects.items():
                self._subject_last[subject] = last
        self._rebuild_window()
        if not self.read_only:
            self._summarize_now(rescanned)
        if self._segments and not self.read_only:
            self._open_active()

    def _tidy(self, names: list[Path]) -> None:
        """Summaries left half-written, or outliving their segment (retention removed it
        while the summary was being written): neither is ever read."""
        kept = {p.stem for p in names}
        for path in self.directory.iterdir():
            if path.name.endswith(f"{SUMMARY}.tmp") or (
                path.suffix == SUMMARY and path.stem not in kept
            ):
                path.unlink(missing_ok=True)

    def _follow(self, segment: _Segment) -> None:
        previous = self._segments[-1] if self._segments else None
        if previous and previous.last + 1 != segment.first:
            raise RecordCommitError(
                f"local record log {self.directory}: segment {segment.path.name} does not "
                f"follow sequence {previous.last} (a segment file is missing)"
            )
        self._segments.append(segment)

    def _load(self, segment: _Segment, sealed: bool) -> _Segment:
        size = _survey(segment, check=not sealed)
        if segment.size < size:
            if sealed:
                raise RecordCommitError(
                    f"local record log {self.directory}: sealed segment {segment.path.name} "
                    f"is damaged at byte {segment.size} of {size}"
                )
            if not self.read_only:
                self._cut(segment, size)
        return segment

    def _rebuild_window(self) -> None:
        """The dedupe window as it was: the digests of the last `dedupe_window` ids, from
        the newest segments' summaries (or scans)."""
        start = max(1, self.next_seq - self._recent.size)
        for segment in self._segments:
            if segment.last < start or not self._recent.size:
                continue
            digests = self._digests_of(segment)
            skip = max(0, start - segment.first)
            for seq, key in enumerate(digests[skip:], segment.first + skip):
                self._recent.add_digest(key, seq)

    def _digests_of(self, segment: _Segment) -> array[int]:
        if segment.digests is not None:
            return segment.digests
        digests = _read_digests(segment)
        if digests is not None:
            return digests
        # The summary's meta held but not its digests: the segment itself has them.
        log.warning("local record log %s: summary of %s rescanned", self.directory, segment.path)
        try:
            again = self._load(_Segment(segment.first, segment.path), sealed=True)
        except FileNotFoundError:  # a read-only opening, retention took it meanwhile
            return array("Q")
        digests = again.digests if again.digests is not None else array("Q")
        if not self.read_only:
            self._summarize_now([again])
        return digests

    def _summarize_now(self, segments: list[_Segment]) -> None:
        """Summaries of finished segments that had none (or a stale one), at opening."""
        for segment in segments:
            try:
                _write_summary(segment.path, _summary_bytes(segment))
            except OSError as exc:  # the next opening scans that segment again
                log.warning("local record log %s: no summary written: %s", self.directory, exc)
            segment.digests = None
        try:
            if segments:
                _fsync_directory(self.directory)
        except OSError as exc:
            log.warning("local record log %s: directory not synced: %s", self.directory, exc)

    def _cut(self, segment: _Segment, size: int) -> None:
        """A crash in the middle of a write (or garbage after it): never acknowledged,
        so cut back to the last whole frame before anything is appended after it."""
        log.error(
            "local record log %s: torn tail of %s cut at byte %d (%d bytes)",
            self.directory,
            segment.path.name,
            segment.size,
            size - segment.size,
        )
        self.torn += 1
        fd = os.open(segment.path, os.O_WRONLY)
        try:
            os.ftruncate(fd, segment.size)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _open_active(self) -> None:
        self._fd = os.open(self._segments[-1].path, os.O_WRONLY | os.O_APPEND)

    # --- positions ---------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        """The sequence the next stored record takes."""
        return self._segments[-1].first + self._segments[-1].count if self._segments else 1

    @property
    def last_seq(self) -> int:
        return self.next_seq - 1

    @property
    def first_seq(self) -> int:
        """The oldest kept record; `last_seq + 1` once everything kept was cut away, 0
        while nothing was ever stored (as a stream reports it)."""
        if self.next_seq == 1:
            return 0
        return next((s.first for s in self._segments if s.count), self.next_seq)

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    # --- appending ---------------------------------------------------------------

    def serve_from(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run this log's own tasks on `loop` (the one its owner keeps running), whoever
        appends: `append_now` may then be called from any thread."""
        self._owner = loop

    @property
    def in_line(self) -> bool:
        """Whether an append is written and answered at once (`sync_interval_s`), so
        `append_now` may be used."""
        return self.sync_interval_s is not None

    async def append(self, subject: str, data: bytes, msg_id: str) -> int:
        """Store `data` once on `subject`; its sequence once the frame is fsynced (with
        `sync_interval_s`: written). An id seen within the dedupe window stores nothing
        and answers the earlier sequence."""
        if self.in_line:
            # No fsync to share, so no batch to gather: written in-line, answered now.
            return self.append_now(subject, data, msg_id)
        self._check_open()
        _check_sizes(subject, msg_id, data)
        self._check_room(len(data))
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        pending = _Pending(subject, data, msg_id, done)
        self._queue.append(pending)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        # Shielded: a caller that gives up does not stop the batch its frame is in; the
        # frame may still land, and a retry with the same id finds it.
        return await asyncio.shield(done)

    def append_now(self, subject: str, data: bytes, msg_id: str) -> int:
        """`append` with `sync_interval_s`, from any thread: written and answered before
        it returns (a roll's summary and retention follow on the owner's loop)."""
        assert self.in_line, "only a log that writes in-line answers at once"
        with self._lock:
            self._check_open()
            _check_sizes(subject, msg_id, data)
            self._check_room(len(data))
            seq = self._append_one(subject, data, msg_id)
            if seq is not None:
                return seq
            answer: concurrent.futures.Future[int] = concurrent.futures.Future()
            try:
                rolled = self._commit_inline([_Pending(subject, data, msg_id, answer)])
            except BaseException as exc:
                if not isinstance(exc, Exception):  # interrupted mid-roll: disk in doubt
                    self._broken = f"local record log {self.directory}: an append was interrupted"
                raise
            if rolled:
                call_on(self._owner, self._follow_roll)
            return answer.result()

    def _append_one(self, subject: str, data: bytes, msg_id: str) -> int | None:
        """The common in-line append, a new id into the active segment, without a
        batch's bookkeeping (it is on every call's path); None where it is not that
        (a repeat of an id, a roll, a broken log): the batch path takes it."""
        active = self._segments[-1] if self._segments else None
        if active is None or self._broken is not None or self._fd is None:
            return None
        key = _digest(msg_id.encode())
        if self._recent.get_digest(key) is not None:
            return None  # maybe a repeat: checked on disk there
        seq, now_ms = active.first + active.count, int(time.time() * 1000)
        frame = _encode(seq, now_ms, subject, msg_id, data)
        start = active.size
        if start and start + len(frame) > self.segment_bytes:
            return None  # a roll
        before = active.snapshot(subject)
        try:
            _write_all(self._fd, frame)
            # Accounted for at once: a frame on disk that memory does not know of would
            # take the next one's number (an interrupt here undoes both instead).
            active.add(seq, subject, (start, start + len(frame)), now_ms, _crc(frame))
        except OSError as exc:
            self._undo([_Chunk(active, new=False, start=start)], [])
            raise RecordCommitError(self._describe(exc)) from exc
        except BaseException:
            active.restore(subject, before)
            self._undo([_Chunk(active, new=False, start=start)], [])
            raise
        self._remember(active, seq, subject, key)
        self._written_unsynced()
        return seq

    def _check_open(self) -> None:
        if self._closed or self.read_only:
            state = "closed" if self._closed else "open read-only"
            raise RecordCommitError(f"local record log {self.directory} is {state}")

    def _follow_roll(self) -> None:
        """A roll's summary and retention, in a task; one already under way takes this
        roll too (in-line appends do not wait for it: `close` does)."""
        if self._closed:
            return  # the next opening summarizes what this one did not
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._after_roll())
        else:
            self._rolled_again = True

    def _start_syncer(self) -> None:
        if self._syncer is None and not self._closed:
            self._syncer = asyncio.create_task(self._sync_now_and_then())

    async def _flush(self) -> None:
        """Write batches until the queue is empty: whatever arrives during one batch's
        write and fsync goes in the next."""
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                await self._commit(batch)
            except BaseException as exc:  # never leave an append waiting forever
                error = exc if isinstance(exc, Exception) else RecordCommitError(str(exc))
                for pending in batch:
                    if not pending.done.done():
                        pending.done.set_exception(error)
                raise

    async def _commit(self, batch: list[_Pending]) -> None:
        chunks, waiting = self._plan(batch)
        if not chunks:
            return
        try:
            if self._broken:
                raise RecordCommitError(self._broken)
            await asyncio.to_thread(self._write, chunks)
        except asyncio.CancelledError:
            # The thread may still finish the write that memory will not account for:
            # numbering on from here would store a sequence twice.
            self._broken = f"local record log {self.directory}: a write was interrupted"
            raise
        except RecordCommitError as exc:
            _fail(waiting, exc)
            return
        if self._answer(chunks, waiting):
            await self._after_roll()

    def _commit_inline(self, batch: list[_Pending]) -> bool:
        """With `sync_interval_s`, a batch written and answered without leaving the
        caller's turn of the loop; whether it finished a segment."""
        chunks, waiting = self._plan(batch)
        if not chunks:
            return False
        try:
            if self._broken:
                raise RecordCommitError(self._broken)
            self._write_unsynced(chunks)
        except RecordCommitError as exc:
            _fail(waiting, exc)
            return False
        return self._answer(chunks, waiting)

    def _write_unsynced(self, chunks: list[_Chunk]) -> None:
        self._write(chunks, sync=False)
        self._written_unsynced()

    def _written_unsynced(self) -> None:
        """Frames were written without an fsync: the interval's syncer sees to them."""
        self._unsynced = True
        if not self._syncer_asked:
            self._syncer_asked = True
            call_on(self._owner, self._start_syncer)

    def _answer(self, chunks: list[_Chunk], waiting: list[tuple[_Pending, int]]) -> bool:
        """The batch's frames are written: account for them and answer their appends;
        whether a segment was finished."""
        rolled = self._apply(chunks)
        for pending, seq in waiting:
            if not pending.done.done():
                pending.done.set_result(seq)
        return rolled

    async def _after_roll(self) -> None:
        """A finished segment's summary, then retention, again for each roll made
        meanwhile."""
        self._rolled_again = True
        while self._rolled_again:
            self._rolled_again = False
            await self._summarize()
            if self.max_bytes is not None or self.max_age_s is not None:
                self.enforce_retention()

    async def _summarize(self) -> None:
        """Summaries of the segments a roll finished, once their appends are answered: a
        failure costs only a scan of that segment at the next opening."""
        for segment in self._segments[:-1]:
            if segment.digests is None:
                continue
            data = _summary_bytes(segment)
            segment.digests = None  # the window holds the recent ones; the summary, all
            try:
                await asyncio.to_thread(_write_summary, segment.path, data)
                if segment not in self._segments:  # retention took it meanwhile
                    _summary_path(segment.path).unlink(missing_ok=True)
                await asyncio.to_thread(_fsync_directory, self.directory)
            except OSError as exc:
                log.warning("local record log %s: no summary written: %s", self.directory, exc)

    def _plan(self, batch: list[_Pending]) -> tuple[list[_Chunk], list[tuple[_Pending, int]]]:
        """Number the batch's new records and place them in segments; answer the repeats
        of an id at once. Nothing is changed until the frames are on disk."""
        seq = self.next_seq
        now_ms = int(time.time() * 1000)
        chunks: list[_Chunk] = []
        waiting: list[tuple[_Pending, int]] = []
        in_batch: dict[str, int] = {}
        for pending in batch:
            if pending.done.done():
                continue  # cancelled before its turn: never stored
            if (same := in_batch.get(pending.msg_id)) is not None:
                waiting.append((pending, same))  # stored with its twin, or failed with it
                continue
            if (earlier := self._stored(pending.msg_id)) is not None:
                pending.done.set_result(earlier)
                continue
            frame = _encode(seq, now_ms, pending.subject, pending.msg_id, pending.data)
            self._place(chunks, seq, pending.subject, frame)
            in_batch[pending.msg_id] = seq
            waiting.append((pending, seq))
            seq += 1
        return chunks, waiting

    def seq_of(self, msg_id: str) -> int | None:
        """Where `msg_id` was stored, if it is within the dedupe window; else None."""
        with self._lock:
            return self._stored(msg_id)

    def _stored(self, msg_id: str) -> int | None:
        seq = self._recent.get(msg_id)
        if seq is None:
            return None
        # The window keeps a 64-bit digest of each id: a match is confirmed on disk,
        # unless retention already took the record (a digest collision is then 2^-64).
        entry = self.entry(seq)
        return seq if entry is None or entry.msg_id == msg_id else None

    def _place(self, chunks: list[_Chunk], seq: int, subject: str, frame: bytes) -> None:
        chunk = chunks[-1] if chunks else None
        if chunk is None:
            active = self._segments[-1] if self._segments else None
            if active is None:
                chunk = _Chunk(_Segment(seq, self._path(seq)), new=True, start=0)
            else:
                chunk = _Chunk(active, new=False, start=active.size)
            chunks.append(chunk)
        if chunk.filled and chunk.filled + len(frame) > self.segment_bytes:
            chunk = _Chunk(_Segment(seq, self._path(seq)), new=True, start=0)
            chunks.append(chunk)
        chunk.add(seq, subject, frame)

    def _path(self, first: int) -> Path:
        return self.directory / f"{first:020d}{SUFFIX}"

    def _write(self, chunks: list[_Chunk], sync: bool = True) -> None:
        """The batch thread: every chunk written and fsynced (the directory too, for a
        new file's name) before any append is answered. On failure nothing of the batch
        stays: new files are removed, the active one is cut back. Unless `sync`, only a
        segment the batch finishes is fsynced (in-line, on the loop: rare)."""
        opened: list[int] = []
        try:
            if not sync and chunks[0].new and self._fd is not None:
                self._sync_finished(self._fd)  # the segment it finishes, written in-line
            for chunk in chunks:
                fd = self._fd if not chunk.new else self._create(chunk.segment.path, opened)
                assert fd is not None
                _write_all(fd, b"".join(frame for _, _, frame in chunk.frames))
                if sync:
                    os.fsync(fd)
                elif chunk is not chunks[-1]:
                    self._sync_finished(fd)
                if chunk.new:
                    _fsync_directory(self.directory)
        except OSError as exc:
            self._undo(chunks, opened)
            raise RecordCommitError(self._describe(exc)) from exc
        if opened:
            if self._fd is not None:
                os.close(self._fd)
            for fd in opened[:-1]:
                os.close(fd)
            self._fd = opened[-1]

    def _sync_finished(self, fd: int) -> None:
        """Without per-call sync, a finished segment's fsync covers records already
        acknowledged: if it fails they are in doubt (a retry may "succeed" on pages the
        kernel dropped), so nothing more is taken, as when the interval's fsync fails."""
        try:
            os.fsync(fd)
        except OSError as exc:
            self._broken = f"local record log {self.directory}: fsync failed ({exc})"
            log.error("%s", self._broken)
            raise

    def _create(self, path: Path, opened: list[int]) -> int:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        opened.append(fd)
        return fd

    def _undo(self, chunks: list[_Chunk], opened: list[int]) -> None:
        try:
            for fd in opened:
                os.close(fd)
            for chunk in chunks:
                if chunk.new:
                    chunk.segment.path.unlink(missing_ok=True)
            if opened:
                _fsync_directory(self.directory)
            if self._fd is not None and not chunks[0].new:
                os.ftruncate(self._fd, chunks[0].start)
                os.fsync(self._fd)
        except OSError as exc:
            # A partial frame may stay on disk: appending after it would hide every later
            # frame from the next opening, so nothing more is taken until then.
            self._broken = (
                f"local record log {self.directory}: a failed write could not be undone "
                f"({exc}); reopen the log"
            )
            log.error("%s", self._broken)

    def _describe(self, exc: OSError) -> str:
        if exc.errno in DISK_FULL:
            return f"local record log {self.directory}: disk full ({exc.strerror})"
        return f"local record log {self.directory}: write failed ({exc})"

    def _apply(self, chunks: list[_Chunk]) -> bool:
        """The batch is on disk: account for it in memory. Whether a segment rolled."""
        for chunk in chunks:
            if chunk.new:
                self._segments.append(chunk.segment)
            offset, segment = chunk.start, chunk.segment
            for seq, subject, frame in chunk.frames:
                end = offset + len(frame)
                written_ms = BODY.unpack_from(frame, HEADER.size)[1]
                segment.add(seq, subject, (offset, end), written_ms, _crc(frame))
                self._remember(segment, seq, subject, _digest(_id_bytes(frame)))
                offset = end
        return any(chunk.new for chunk in chunks)

    def _remember(self, segment: _Segment, seq: int, subject: str, key: int) -> None:
        """The stored frame's subject and id (its digest `key`), for lookups."""
        self._subject_last[subject] = seq
        self._recent.add_digest(key, seq)
        if segment.digests is not None:
            segment.digests.append(key)

    # --- reading -----------------------------------------------------------------

    def get(self, seq: int) -> tuple[str, bytes] | None:
        """(subject, data) of a record; None if never stored or taken by retention."""
        entry = self.entry(seq)
        return (entry.subject, entry.data) if entry else None

    def written_at_ms(self, seq: int) -> int | None:
        entry = self.entry(seq)
        return entry.written_ms if entry else None

    def entry(self, seq: int) -> Entry | None:
        return next(self.entries(seq, stop=seq), None) if self._holds(seq) else None

    def last_on(self, subject: str) -> tuple[int, bytes] | None:
        seq = self._subject_last.get(subject)
        found = self.get(seq) if seq is not None else None
        return (seq, found[1]) if seq is not None and found else None

    def next_on(self, subject: str, seq: int) -> tuple[int, bytes] | None:
        """The first record on `subject` at or after `seq`; segments without the subject
        are skipped unread."""
        for segment in list(self._segments):
            span = segment.subjects.get(subject)
            if span is None or span[1] < seq:
                continue
            for entry in self.entries(max(seq, span[0]), stop=span[1]):
                if entry.subject == subject:
                    return entry.seq, entry.data
        return None

    def read_from(self, seq: int) -> Iterator[tuple[int, str, bytes]]:
        """Every kept record from `seq` (or the oldest kept) to the end, in order."""
        for entry in self.entries(seq):
            yield entry.seq, entry.subject, entry.data

    def entries(self, seq: int, stop: int | None = None) -> Iterator[Entry]:
        """Records from `seq` to `stop` (or the end), with their ids and write times."""
        seq = max(seq, self.first_seq, 1)
        while seq <= min(self.last_seq, stop if stop is not None else self.last_seq):
            with self._lock:  # what is whole now (another thread may be appending)
                segment = self._segment_of(seq)
                if segment is None:
                    return
                last, size = segment.last, segment.size
            for entry in self._scan(segment, seq, last, size):
                if stop is not None and entry.seq > stop:
                    return
                yield entry
                seq = entry.seq + 1
            if seq <= last and segment.path.exists():
                raise RecordCommitError(
                    f"local record log {self.directory}: {segment.path.name} is damaged "
                    f"at sequence {seq}"
                )
            seq = max(seq, last + 1)

    def _holds(self, seq: int) -> bool:
        return self.first_seq <= seq <= self.last_seq and seq >= 1

    def _segment_of(self, seq: int) -> _Segment | None:
        firsts = [s.first for s in self._segments]
        at = bisect.bisect_right(firsts, seq) - 1
        return self._segments[at] if at >= 0 and self._segments[at].count else None

    def _scan(self, segment: _Segment, seq: int, last: int, size: int) -> Iterator[Entry]:
        """The segment's records from `seq` to `last` (what was whole, `size` bytes, when
        the read began), starting at the nearest indexed offset."""
        slot = (seq - segment.first) // INDEX_EVERY
        try:
            handle = segment.path.open("rb")
        except FileNotFoundError:
            return  # retention took it
        with handle:
            handle.seek(segment.offsets[slot])
            for frame in _frames(handle, segment.first + slot * INDEX_EVERY, check=True):
                if frame.entry.seq > last or frame.end > size:
                    return
                if frame.entry.seq >= seq:
                    yield frame.entry

    # --- retention and closing ---------------------------------------------------

    def _check_room(self, size: int) -> None:
        """Below `full_at` (a hard cap): whatever retention may remove first, then
        `RecordCommitError`, so the caller fails closed rather than the log dropping
        records it must keep (`min_age_s`)."""
        if self.full_at is None or self.size_bytes + size <= self.full_at:
            return
        self.enforce_retention()
        if self.size_bytes + size > self.full_at:
            raise RecordCommitError(
                f"local record log {self.directory} is full ({self.size_bytes} of "
                f"{self.full_at} bytes) and holds nothing old enough to remove"
            )

    def enforce_retention(self, now: float | None = None) -> int:
        """Drop whole oldest segments whose newest record is older than `max_age_s`, or
        while the log is larger than `max_bytes`; never the newest segment. Returns how
        many records went, nor one holding `keep_from` or later. Sequences continue
        where they were."""
        with self._lock:  # an append on another thread may roll meanwhile
            return self._enforce_retention((time.time() if now is None else now) * 1000)

    def _enforce_retention(self, now_ms: float) -> int:
        removed = 0
        while len(self._segments) > 1 and not self.read_only:
            oldest = self._segments[0]
            too_old = self.max_age_s is not None and oldest.last_ms < now_ms - self.max_age_s * 1000
            too_big = self.max_bytes is not None and self.size_bytes > self.max_bytes
            if too_big and not too_old and self.min_age_s is not None:
                too_big = oldest.last_ms < now_ms - self.min_age_s * 1000  # old enough to go
            if not (too_old or too_big) or (
                self.keep_from is not None and oldest.last >= self.keep_from
            ):
                break
            oldest.path.unlink(missing_ok=True)
            _summary_path(oldest.path).unlink(missing_ok=True)
            self._segments.pop(0)
            removed += oldest.count
        if removed:
            _fsync_directory(self.directory)
            self._subject_last = {
                s: seq for s, seq in self._subject_last.items() if seq >= self.first_seq
            }
            log.info("local record log %s: retention removed %d records", self.directory, removed)
        return removed

    async def _sync_now_and_then(self) -> None:
        """With `sync_interval_s`: what was written in-line is fsynced that often. A
        failure is the disk's doubt: nothing more is taken until the log is reopened."""
        assert self.sync_interval_s is not None
        while not self._closed:
            await asyncio.sleep(self.sync_interval_s)
            await self._sync_written()

    async def _sync_written(self) -> None:
        if not self._unsynced or self._fd is None:
            return
        with self._lock:  # an append on another thread may roll and close it meanwhile
            if self._fd is None:
                return
            self._unsynced = False
            # A dup (the batch may roll and close `_fd` meanwhile) that the thread
            # closes, and shielded: close() cancelling the syncer mid-fsync waits for it.
            fd = os.dup(self._fd)
        self._syncing = asyncio.ensure_future(asyncio.to_thread(self._fsync_dup, fd))
        await asyncio.shield(self._syncing)

    def _fsync_dup(self, fd: int) -> None:
        try:
            os.fsync(fd)
        except OSError as exc:
            self._broken = f"local record log {self.directory}: fsync failed ({exc})"
            log.error("%s", self._broken)
        finally:
            os.close(fd)

    async def close(self) -> None:
        """Wait for the batch in flight, then close; later appends are refused."""
        with self._lock:  # an append on another thread finishes first
            self._closed = True
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._syncer is not None:
            self._syncer.cancel()
            await asyncio.gather(self._syncer, return_exceptions=True)
        if self._syncing is not None:
            await asyncio.wait([self._syncing])  # an fsync the cancel interrupted
        await self._sync_written()
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    @property
    def closed(self) -> bool:
        return self._closed


class LocalSink:
    """A `RecordSink` (gateway.records.sink) over one subject of a `LocalLog`: the
    sidecar's recorder commits to its own disk exactly as a replica commits to NATS."""

    def __init__(self, log: LocalLog, subject: str) -> None:
        self.log = log
        self.subject = subject

    @property
    def connected(self) -> bool:
        return not self.log.closed

    @property
    def capacity(self) -> int:
        return MAX_FRAME - HEADROOM

    async def publish(self, data: bytes, msg_id: str) -> int:
        return await self.log.append(self.subject, data, msg_id)

    @property
    def in_line(self) -> bool:
        return self.log.in_line

    def publish_now(self, data: bytes, msg_id: str) -> int:
        return self.log.append_now(self.subject, data, msg_id)

    async def last(self) -> bytes | None:
        found = self.log.last_on(self.subject)
        return found[1] if found else None


class _RecentIds:
    """The ids of the last `size` sequences, for deduplication, in fixed memory: a
    linear-probing table of 64-bit id digests and their sequences (two flat arrays, no
    object per id), and a ring of digests by sequence to forget the oldest."""

    def __init__(self, size: int) -> None:
        self.size = size
        capacity = 1 << max(4, (2 * size).bit_length())  # at most half full
        self._mask = capacity - 1
        self._keys = _zeros(capacity if size else 0)
        self._seqs = _zeros(capacity if size else 0)
        self._ring = _zeros(size)

    def get(self, msg_id: str) -> int | None:
        return self.get_digest(_digest(msg_id.encode())) if self.size else None

    def get_digest(self, key: int) -> int | None:
        """`get` for the id whose `_digest` is `key`."""
        if not self.size:
            return None
        at = key & self._mask
        while self._keys[at]:
            if self._keys[at] == key:
                return self._seqs[at]
            at = (at + 1) & self._mask
        return None

    def add_digest(self, key: int, seq: int) -> None:
        """Remember the id whose `_digest` is `key` as stored at `seq`."""
        if not self.size:
            return
        slot = seq % self.size
        if seq > self.size and self._ring[slot]:
            self._forget(self._ring[slot], seq - self.size)
        self._ring[slot] = key
        at = key & self._mask
        while self._keys[at] and self._keys[at] != key:
            at = (at + 1) & self._mask
        self._keys[at], self._seqs[at] = key, seq  # a repeat of an id moves it forward

    def _forget(self, key: int, seq: int) -> None:
        at = key & self._mask
        while self._keys[at]:
            if self._keys[at] == key and self._seqs[at] == seq:
                self._remove(at)
                return
            at = (at + 1) & self._mask

    def _remove(self, hole: int) -> None:
        """Backward-shift deletion: later entries of the probe run move into the hole,
        so a lookup never stops early and no tombstones pile up."""
        at = hole
        while True:
            at = (at + 1) & self._mask
            key = self._keys[at]
            if not key:
                break
            home = key & self._mask
            if (at - home) & self._mask >= (at - hole) & self._mask:
                self._keys[hole], self._seqs[hole] = key, self._seqs[at]
                hole = at
        self._keys[hole] = 0
        self._seqs[hole] = 0


def _zeros(count: int) -> memoryview:
    """`count` zeroed 64-bit slots in pages the kernel provides on first write: the table
    is sized for the whole window (about 5 MB for 100,000 ids), yet costs memory only as
    ids arrive (a sidecar starting on a small log, and its checkpoint log, stay small)."""
    if not count:
        return memoryview(b"").cast("Q")
    return memoryview(mmap.mmap(-1, 8 * count, flags=mmap.MAP_PRIVATE)).cast("Q")


def _digest(msg_id: bytes) -> int:
    # Stable across processes (summaries keep digests for the next opening's window),
    # unlike the salted str hash; 0 marks an empty slot.
    return int.from_bytes(hashlib.blake2b(msg_id, digest_size=8).digest(), "little") or 1


def _fail(waiting: list[tuple[_Pending, int]], exc: Exception) -> None:
    for pending, _ in waiting:
        if not pending.done.done():
            pending.done.set_exception(exc)


def _check_sizes(subject: str, msg_id: str, data: bytes) -> None:
    subject_len, id_len = len(subject.encode()), len(msg_id.encode())
    if subject_len > 0xFFFF or id_len > 0xFFFF:
        raise RecordCommitError("local record log: subject or record id longer than 65535 bytes")
    if HEADER.size + BODY.size + subject_len + id_len + len(data) > MAX_FRAME:
        raise RecordCommitError(
            f"local record log: a record of {len(data)} bytes exceeds the {MAX_FRAME}-byte cap"
        )


def _encode(seq: int, written_ms: int, subject: str, msg_id: str, data: bytes) -> bytes:
    subject_b, id_b = subject.encode(), msg_id.encode()
    body = BODY.pack(seq, written_ms, len(subject_b), len(id_b)) + subject_b + id_b + data
    return HEADER.pack(MAGIC, len(body), zlib.crc32(body)) + body


def _crc(frame: bytes) -> int:
    return int(HEADER.unpack_from(frame)[2])


def _id_bytes(frame: bytes) -> bytes:
    _, _, subject_len, id_len = BODY.unpack_from(frame, HEADER.size)
    start = HEADER.size + BODY.size + subject_len
    return frame[start : start + id_len]


def _frames(handle: BinaryIO, seq: int, *, check: bool) -> Iterator[_Frame]:
    """Whole frames from the handle's position, numbered from `seq`; stops at the first
    torn, garbled or misnumbered one. Without `check` the CRC is not computed (a sealed
    segment at opening: its frames were fsynced whole before the next file existed)."""
    start = handle.tell()
    while len(header := handle.read(HEADER.size)) == HEADER.size:
        magic, length, crc = HEADER.unpack(header)
        if magic != MAGIC or length < BODY.size or length > MAX_FRAME:
            return
        body = handle.read(length)
        if len(body) < length or (check and zlib.crc32(body) != crc):
            return
        entry = _decode(body)
        if entry is None or entry.seq != seq:
            return
        end = handle.tell()
        yield _Frame(entry, start, end)
        start, seq = end, seq + 1


def _survey(segment: _Segment, *, check: bool) -> int:
    """Account for the segment's whole frames (an opening's scan); the file's size. The
    file is mapped, not read: its pages are the page cache's, not the process's."""
    with segment.path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size:
            with mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ) as buffer:
                _survey_buffer(segment, buffer, check)
    return size


def _survey_buffer(segment: _Segment, buffer: mmap.mmap, check: bool) -> None:
    """The checks of `_frames`, on a mapped file, without building entries."""
    digests = segment.digests = array("Q")
    at, seq, size = 0, segment.first, len(buffer)
    while at + HEADER.size <= size:
        magic, length, crc = HEADER.unpack_from(buffer, at)
        body, end = at + HEADER.size, at + HEADER.size + length
        if magic != MAGIC or length < BODY.size or length > MAX_FRAME or end > size:
            return
        if check and zlib.crc32(buffer[body:end]) != crc:
            return
        number, written_ms, subject_len, id_len = BODY.unpack_from(buffer, body)
        subject_at = body + BODY.size
        id_at = subject_at + subject_len
        if number != seq or id_at + id_len > end:
            return
        try:
            subject = buffer[subject_at:id_at].decode()
            msg_id = buffer[id_at : id_at + id_len]
            msg_id.decode()
        except UnicodeDecodeError:
            return
        segment.add(seq, subject, (at, end), written_ms, crc)
        digests.append(_digest(msg_id))
        at, seq = end, seq + 1


def _summary_path(path: Path) -> Path:
    return path.with_suffix(SUMMARY)


def _summary_bytes(segment: _Segment) -> bytes:
    digests = array("Q", segment.digests or ())
    if sys.byteorder == "big":
        digests.byteswap()
    tail = digests.tobytes()
    meta = {
        "first": segment.first,
        "count": segment.count,
        "size": segment.size,
        "last_ms": segment.last_ms,
        "head_crc": segment.head_crc,
        "tail": segment.tail,
        "tail_crc": segment.tail_crc,
        "offsets": list(segment.offsets),
        "subjects": {s: list(span) for s, span in segment.subjects.items()},
        "digests_crc": zlib.crc32(tail),
    }
    body = json.dumps(meta, separators=(",", ":")).encode()
    return SUMMARY_HEAD.pack(SUMMARY_MAGIC, len(body), zlib.crc32(body)) + body + tail


def _write_summary(path: Path, data: bytes) -> None:
    """Written whole or not at all (the directory is synced by the caller)."""
    final = _summary_path(path)
    temporary = final.with_name(final.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, final)


def _read_summary(path: Path, first: int) -> _Segment | None:
    """The segment as its summary describes it, if the summary is whole and the segment
    still matches it; None: scan the segment."""
    try:
        with _summary_path(path).open("rb") as handle:
            magic, length, crc = SUMMARY_HEAD.unpack(handle.read(SUMMARY_HEAD.size))
            body = handle.read(length)
        if magic != SUMMARY_MAGIC or len(body) != length or zlib.crc32(body) != crc:
            return None
        segment = _from_meta(path, first, jsoncodec.loads(body))
    except (OSError, struct.error, ValueError, KeyError, TypeError):
        return None  # missing, short, or not what this version writes
    return segment if segment is not None and _matches(segment) else None


def _from_meta(path: Path, first: int, meta: dict[str, Any]) -> _Segment | None:
    count = int(meta["count"])
    offsets = array("Q", (int(o) for o in meta["offsets"]))
    if int(meta["first"]) != first or count < 1 or len(offsets) != -(-count // INDEX_EVERY):
        return None
    subjects = {str(s): (int(a), int(b)) for s, (a, b) in meta["subjects"].items()}
    return _Segment(
        first,
        path,
        count=count,
        size=int(meta["size"]),
        last_ms=int(meta["last_ms"]),
        offsets=offsets,
        subjects=subjects,
        head_crc=int(meta["head_crc"]),
        tail_crc=int(meta["tail_crc"]),
        tail=int(meta["tail"]),
        digests=None,
    )


def _matches(segment: _Segment) -> bool:
    """The summary's stamps against the file: its size, and its first and last frames
    whole, numbered as the summary's count says, with the CRCs it recorded."""
    with segment.path.open("rb") as handle:
        if os.fstat(handle.fileno()).st_size != segment.size:
            return False
        head = _frame_at(handle, 0, segment.first)
        tail = _frame_at(handle, segment.tail, segment.last)
    return (
        head is not None
        and tail is not None
        and head[0] == segment.head_crc
        and tail[0] == segment.tail_crc
        and tail[1].end == segment.size
        and tail[1].entry.written_ms == segment.last_ms
    )


def _frame_at(handle: BinaryIO, offset: int, seq: int) -> tuple[int, _Frame] | None:
    """The whole, CRC-checked frame of `seq` at `offset`, and its CRC."""
    handle.seek(offset)
    header = handle.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    handle.seek(offset)
    frame = next(_frames(handle, seq, check=True), None)
    return (HEADER.unpack(header)[2], frame) if frame is not None else None


def _read_digests(segment: _Segment) -> array[int] | None:
    """The id digests a summary holds, if whole; None otherwise."""
    try:
        with _summary_path(segment.path).open("rb") as handle:
            _, length, _ = SUMMARY_HEAD.unpack(handle.read(SUMMARY_HEAD.size))
            meta = jsoncodec.loads(handle.read(length))
            tail = handle.read()
    except (OSError, struct.error, ValueError):
        return None
    if len(tail) != 8 * segment.count or zlib.crc32(tail) != meta.get("digests_crc"):
        return None
    digests = array("Q", tail)
    if sys.byteorder == "big":
        digests.byteswap()
    return digests


def _decode(body: bytes) -> Entry | None:
    seq, written_ms, subject_len, id_len = BODY.unpack_from(body)
    start = BODY.size
    if start + subject_len + id_len > len(body):
        return None
    try:
        subject = body[start : start + subject_len].decode()
        msg_id = body[start + subject_len : start + subject_len + id_len].decode()
    except UnicodeDecodeError:
        return None
    return Entry(seq, subject, msg_id, body[start + subject_len + id_len :], written_ms)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
