"""Number, sign and commit a replica's records to its sink, and void every number
spent without a record.

The sink is the regional `RECORDS` stream in production (`sink.NatsSink`); the record
id doubles as its de-duplication id there.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import msgpack

from cordon import jsoncodec
from cordon.errors import RecordCommitError, RecordEncodeError, SpoolFullError
from cordon.ids import uuid7
from cordon.log import envelope
from cordon.log.keys import SigningKey
from gateway.records.record import rfc3339_now
from gateway.records.spool import Spool

if TYPE_CHECKING:  # the sink module loads the NATS client (a sidecar's sink is local)
    from gateway.records.sink import InLineSink, RecordSink

__all__ = ["Recorder", "content_hashed"]


class Recorder:
    def __init__(
        self,
        sink: RecordSink,
        region: str,
        replica: str,
        key: SigningKey,
        max_record_bytes: int = 0,
    ) -> None:
        self._sink = sink
        self._key = key
        self._region = region
        self._replica = replica
        self._next_seq = 1
        # (replica_seq, record id, why) spent without a record
        self._voids: list[tuple[int, str, str]] = []
        # One caller commits the voids at a time: two at once would each pop the first
        # and so drop one still uncommitted (a silent gap in replica_seq).
        self._voids_lock = asyncio.Lock()
        self._max_record_bytes = max_record_bytes  # 0: what the sink takes
        # A sink that stores at once (a local log written in-line) takes records from
        # any thread (the in-process SDK serves calls on its callers' threads): each is
        # numbered, signed and stored under this lock, so numbers are stored in order.
        self._now: InLineSink | None = sink if getattr(sink, "in_line", False) else None  # type: ignore[assignment]
        self._now_lock = threading.Lock()

    def _record_cap(self) -> int:
        sink = self._sink.capacity
        return min(self._max_record_bytes, sink) if self._max_record_bytes else sink

    @property
    def next_replica_seq(self) -> int:
        return self._next_seq

    @property
    def owes_voids(self) -> bool:
        return bool(self._voids)

    @property
    def connected(self) -> bool:
        return self._sink.connected

    async def resume(self, spool: Spool | None = None) -> None:
        """Continue `replica_seq` after the last record this replica committed, or spooled:
        records still waiting in the spool hold numbers the stream has not seen yet."""
        numbers = [_replica_seq(frame.data) for frame in spool.pending()] if spool else []
        last = await self._sink.last()
        if last is not None:
            numbers.append(_replica_seq(last))
        self._next_seq = max(numbers, default=0) + 1

    async def commit(self, record: dict[str, Any], spool: Spool | None = None) -> int | None:
        """Sign and commit `record`; return its stream sequence (the Merkle leaf index).

        A publish that times out is sent once more with the same bytes and id (the
        stream drops the duplicate if the first one landed). If the record still
        cannot be committed, its `replica_seq` is spent: a `void` record for it is
        committed as soon as the stream takes records again, so the sequence an
        auditor sees never has a silent gap.

        With a `spool` (the pack is fail-open) a record that cannot be committed is
        spooled instead and None is returned; while anything is spooled, new records
        queue behind it so they reach the stream in order.
        """
        if self._now is not None:
            return self.commit_now(record, spool)
        connected = self._connected(spool)
        if self._voids and connected:
            await self.commit_voids()
        with self._numbered(record):
            data = self._encoded_unless_spooled(record, spool, connected)
            if data is None:
                return None
            try:
                return await self._sink.publish(data, record["id"])
            except RecordCommitError as exc:
                self._spool_instead(spool, record, data, exc)
                return None

    def commit_now(self, record: dict[str, Any], spool: Spool | None = None) -> int | None:
        """`commit` to a sink that stores at once, from any thread."""
        assert self._now is not None, "only an in-line sink commits at once"
        with self._now_lock:
            connected = self._connected(spool)
            if self._voids and connected:
                self._commit_voids_now(self._now)
            with self._numbered(record):
                data = self._encoded_unless_spooled(record, spool, connected)
                if data is None:
                    return None
                try:
                    return self._now.publish_now(data, record["id"])
                except RecordCommitError as exc:
                    self._spool_instead(spool, record, data, exc)
                    return None

    def _encoded_unless_spooled(
        self, record: dict[str, Any], spool: Spool | None, connected: bool
    ) -> bytes | None:
        """The sealed record to publish; None if it was spooled instead (fail-open: the
        sink is away, or records already wait in the spool and this one queues behind)."""
        data = self._encode(record)
        if spool is not None and (spool.depth > 0 or not connected):
            self._spool(spool, record, data)
            return None
        return data

    def _spool_instead(
        self, spool: Spool | None, record: dict[str, Any], data: bytes, exc: RecordCommitError
    ) -> None:
        """A publish that failed: spooled if the pack is fail-open, else it stands."""
        if spool is None:
            raise exc
        self._spool(spool, record, data)

    def _connected(self, spool: Spool | None) -> bool:
        connected = self._sink.connected
        if spool is None and not connected:
            # Buffering during an outage would commit this record after the caller
            # already got a 503; fail now instead.
            raise RecordCommitError("not connected to the regional NATS")
        return connected

    @contextlib.contextmanager
    def _numbered(self, record: dict[str, Any]) -> Iterator[None]:
        """Give `record` the next number. From here on the number is spent: whatever
        stops the record (encoding, size, spool, publish, even cancellation) owes a
        void, so it never leaves a silent gap."""
        record["replica_seq"] = self._next_seq
        self._next_seq += 1
        try:
            yield
        except BaseException as exc:
            self._voids.append((record["replica_seq"], record["id"], _why(exc)))
            raise

    def _encode(self, record: dict[str, Any]) -> bytes:
        """The sealed record; one too large for the stream keeps its content only as a
        digest (never a 503 after the provider was paid). `RecordEncodeError` if it
        cannot be encoded at all, or does not fit even so."""
        try:
            data = envelope.seal(record, self._key).encode()
            if len(data) > self._record_cap():
                data = envelope.seal(content_hashed(record), self._key).encode()
        except (TypeError, ValueError, OverflowError) as exc:  # msgpack: unencodable value
            raise RecordEncodeError(f"record could not be encoded: {exc}") from exc
        if len(data) > self._record_cap():
            raise RecordEncodeError(
                f"record is {len(data)} bytes even without its content; the stream takes "
                f"{self._record_cap()}"
            )
        return data

    def _spool(self, spool: Spool, record: dict[str, Any], data: bytes) -> None:
        try:
            spool.append(record["id"], data)
        except (SpoolFullError, OSError) as exc:
            raise RecordCommitError(f"record not spooled: {exc}") from exc

    async def ship(self, spool: Spool) -> int:
        """Send what the spool holds, in order, with each record's own id. To an in-line
        sink, under the lock its callers on other threads spool under: nothing in the
        shipping waits, so the lock is never held across a wait."""
        now = self._now
        if now is None:
            return await spool.ship(lambda msg_id, data: self._sink.publish(data, msg_id))

        async def publish(msg_id: str, data: bytes) -> int:
            return now.publish_now(data, msg_id)

        with self._now_lock:
            return await spool.ship(publish)

    async def commit_voids(self) -> None:
        """Commit a void for every number spent without a record, oldest first."""
        if self._now is not None:
            with self._now_lock:
                self._commit_voids_now(self._now)
            return
        async with self._voids_lock:
            while self._voids:
                data, msg_id = self._void(*self._voids[0])
                await self._sink.publish(data, msg_id)
                self._voids.pop(0)

    def _commit_voids_now(self, sink: InLineSink) -> None:
        while self._voids:
            sink.publish_now(*self._void(*self._voids[0]))
            self._voids.pop(0)

    def _void(self, replica_seq: int, record_id: str, why: str) -> tuple[bytes, str]:
        """The sealed void for a spent number, and its message id."""
        void = {
            "v": 1,
            "kind": "void",
            "id": uuid7(),
            "ts": rfc3339_now(),
            "region": self._region,
            "replica": self._replica,
            "replica_seq": replica_seq,
            "voids": record_id,
            "reason": f"this sequence's record could not be committed ({why})",
        }
        return envelope.seal(void, self._key).encode(), f"void-{record_id}"


def _why(exc: BaseException) -> str:
    """A void's reason: which step stopped the record (no caller content, no message
    that could carry it)."""
    if isinstance(exc, RecordEncodeError):
        return "it could not be encoded or did not fit the stream; its caller got an error"
    if isinstance(exc, RecordCommitError):
        return "the stream did not take it; its caller got an error and no model output"
    return f"{type(exc).__name__} while committing; its caller got no model output"


def _replica_seq(data: bytes) -> int:
    payload = msgpack.unpackb(envelope.decode(data).payload)
    return int(payload.get("replica_seq") or 0)


def content_hashed(record: dict[str, Any]) -> dict[str, Any]:
    """`record` with its content replaced by the SHA-256 of its canonical JSON and its
    size, flagged `content_hashed`: what is kept when the whole would not fit the stream."""
    content = jsoncodec.dumps(record.get("content"))
    digest = {"sha256": hashlib.sha256(content).hexdigest(), "bytes": len(content)}
    return {**record, "content": digest, "content_hashed": True}
