"""The fail-open spool: records of answers released while NATS was away, kept on disk
until the stream takes them, then shipped in order with their own ids (so a record
shipped twice is stored once).

Append-only file of frames `[u32 length][u16 id length][id][envelope bytes]`, fsynced
per write; a sidecar file holds how far shipping got, replaced atomically and fsynced
(a torn offset would point into the middle of a frame). Bounded: when full, appends
fail loudly and the gateway falls back to failing closed.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from cordon.errors import SpoolFullError

log = logging.getLogger("cordon.gateway.spool")
HEADER = struct.Struct(">IH")


class Spool:
    def __init__(self, path: Path, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._offset_path = path.with_suffix(".shipped")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")
        self.depth = sum(1 for _ in self._frames())

    @property
    def shipped_offset(self) -> int:
        try:
            return int(self._offset_path.read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def append(self, msg_id: str, data: bytes) -> None:
        encoded = msg_id.encode()
        frame = HEADER.pack(len(data), len(encoded)) + encoded + data
        if self._file.tell() + len(frame) > self.max_bytes:
            log.error(
                "fail-open spool %s is full (%d bytes): failing closed", self.path, self.max_bytes
            )
            raise SpoolFullError(f"spool full at {self.max_bytes} bytes")
        self._file.write(frame)
        self._file.flush()
        os.fsync(self._file.fileno())
        self.depth += 1

    def _frames(self) -> Iterator[tuple[int, str, bytes]]:
        """(offset after the frame, id, data) for every frame not yet shipped."""
        with self.path.open("rb") as handle:
            handle.seek(self.shipped_offset)
            while header := handle.read(HEADER.size):
                if len(header) < HEADER.size:
                    return  # a torn last write: never acknowledged, so never answered
                length, id_length = HEADER.unpack(header)
                msg_id = handle.read(id_length).decode()
                data = handle.read(length)
                if len(data) < length:
                    return
                yield handle.tell(), msg_id, data

    async def ship(self, publish: Callable[[str, bytes], Awaitable[object]]) -> int:
        """Publish pending records in order; stop at the first failure. Returns how many."""
        shipped = 0
        for offset, msg_id, data in list(self._frames()):
            await publish(msg_id, data)
            self._save_offset(offset)
            shipped += 1
            self.depth -= 1
        if self.depth == 0 and shipped:
            # Offset first: a crash before the truncation re-ships records under their
            # own ids (the stream drops them); the other order would skip new ones.
            self._save_offset(0)
            self._empty()
        return shipped

    def _save_offset(self, offset: int) -> None:
        temporary = self._offset_path.with_suffix(".shipped.tmp")
        with temporary.open("w") as handle:
            handle.write(str(offset))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self._offset_path)
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
