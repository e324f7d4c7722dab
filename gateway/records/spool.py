"""The fail-open spool: records of answers released while NATS was away, kept on disk
until the stream takes them, then shipped in order with their own ids (so a record
shipped twice is stored once).

Append-only file of frames `[u32 length][u16 id length][u32 CRC-32][u64 unix ms][id]
[envelope bytes]` (the checksum covers the time, the id and the envelope), fsynced per
write; a sidecar file holds how far shipping got, replaced atomically and fsynced (a
torn offset would point into the middle of a frame). A crash in the middle of an
append leaves a torn last frame: opening the spool checks every frame and cuts the file
back to the last whole one (logged and counted) before anything is appended after it.
Bounded: when full, appends fail loudly and the gateway falls back to failing closed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import time
import zlib
from collections.abc import Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cordon.errors import SpoolFullError

log = logging.getLogger("cordon.gateway.spool")
HEADER = struct.Struct(">IHIQ")  # envelope length, id length, CRC-32, unix ms


@dataclass(frozen=True)
class Frame:
    end: int  # file offset just after the frame
    msg_id: str
    data: bytes
    spooled_ms: int


class Spool:
    def __init__(self, path: Path, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.torn = 0  # torn frames cut off when this spool was opened
        self._offset_path = path.with_suffix(".shipped")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._cut_torn_tail()
        self._file = path.open("ab")
        pending = list(self._frames())
        self.depth = len(pending)
        self.oldest_ms = pending[0].spooled_ms if pending else None

    def _cut_torn_tail(self) -> None:
        """Cut the file back to its last whole frame (a crash mid-append), so nothing is
        ever appended after a torn one."""
        if not self.path.exists():
            return
        whole = 0
        with self.path.open("rb") as handle:
            for frame in _read(handle):
                whole = frame.end
            size = handle.seek(0, os.SEEK_END)
        if whole < size:
            log.error("fail-open spool %s: torn frame after byte %d cut off", self.path, whole)
            self.torn += 1
            with self.path.open("r+b") as handle:
                handle.truncate(whole)
                os.fsync(handle.fileno())
        if self.shipped_offset > whole:
            self._save_offset(0)  # points past what survived: nothing is proven shipped

    @property
    def shipped_offset(self) -> int:
        try:
            return int(self._offset_path.read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    @property
    def fill_ratio(self) -> float:
        """How much of `max_bytes` the spool file takes (appends fail beyond it)."""
        try:
            return self._file.tell() / self.max_bytes
        except (OSError, ValueError):  # closed
            return 0.0

    def append(self, msg_id: str, data: bytes) -> None:
        encoded = msg_id.encode()
        now_ms = int(time.time() * 1000)
        body = now_ms.to_bytes(8, "big") + encoded + data
        frame = HEADER.pack(len(data), len(encoded), zlib.crc32(body), now_ms) + encoded + data
        start = self._file.tell()
        if start + len(frame) > self.max_bytes:
            log.error(
                "fail-open spool %s is full (%d bytes): failing closed", self.path, self.max_bytes
            )
            raise SpoolFullError(f"spool full at {self.max_bytes} bytes")
        try:
            self._file.write(frame)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:  # a disk that filled up: leave no torn frame behind
            self._file.truncate(start)
            raise SpoolFullError(f"spool write failed: {exc}") from exc
        self.depth += 1
        self.oldest_ms = self.oldest_ms or now_ms

    def _frames(self) -> Generator[Frame, None, None]:
        """Every whole frame not yet shipped, in order."""
        with self.path.open("rb") as handle:
            handle.seek(self.shipped_offset)
            yield from _read(handle)

    def _first_unshipped(self) -> Frame | None:
        with contextlib.closing(self._frames()) as frames:
            return next(frames, None)

    def pending(self) -> list[Frame]:
        return list(self._frames())

    async def ship(self, publish: Callable[[str, bytes], Awaitable[object]]) -> int:
        """Publish pending records in order; stop at the first failure. Returns how many."""
        shipped = 0
        trying: Frame | None = None
        # Read as shipped: an attempt that fails at once (the stream still away, every
        # half second, under the lock callers spool under) reads one frame, not them all.
        with contextlib.closing(self._frames()) as frames:
            try:
                for trying in frames:
                    self.oldest_ms = trying.spooled_ms  # a long pass's age stays true
                    await publish(trying.msg_id, trying.data)
                    self._replace_offset(trying.end)
                    trying = None  # shipped, as the offset now says: counted so at once
                    shipped += 1
                    self.depth -= 1
                    self._sync_directory()
            finally:
                # Records spooled during the pass were read by it; a reader stopped early
                # (a frame that did not check out) leaves the first one to be read again.
                oldest = trying or (self._first_unshipped() if self.depth else None)
                self.oldest_ms = oldest.spooled_ms if oldest else None
        if self.depth == 0 and shipped:
            # Offset first: a crash before the truncation re-ships records under their
            # own ids (the stream drops them); the other order would skip new ones.
            self._save_offset(0)
            self._empty()
        return shipped

    def _save_offset(self, offset: int) -> None:
        self._replace_offset(offset)
        self._sync_directory()

    def _replace_offset(self, offset: int) -> None:
        temporary = self._offset_path.with_suffix(".shipped.tmp")
        with temporary.open("w") as handle:
            handle.write(str(offset))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self._offset_path)

    def _sync_directory(self) -> None:
        directory = os.open(self._offset_path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def _empty(self) -> None:
        self._file.truncate(0)
        self._file.seek(0)
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def _read(handle: BinaryIO) -> Iterator[Frame]:
    """Whole frames from the handle's position on; stops at the first torn or corrupt one
    (a last write that never completed: never acknowledged, so never answered)."""
    while len(header := handle.read(HEADER.size)) == HEADER.size:
        length, id_length, crc, spooled_ms = HEADER.unpack(header)
        encoded = handle.read(id_length)
        data = handle.read(length)
        body = spooled_ms.to_bytes(8, "big") + encoded + data
        if len(encoded) < id_length or len(data) < length or zlib.crc32(body) != crc:
            return
        try:
            msg_id = encoded.decode()
        except UnicodeDecodeError:
            return
        yield Frame(handle.tell(), msg_id, data, spooled_ms)
