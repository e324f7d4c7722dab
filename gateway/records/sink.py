"""Where a replica's sealed records go: the seam between the recorder and the stream.

The recorder numbers, signs and voids; a sink only takes bytes in order and says
where they landed. `NatsSink` is the regional `RECORDS` stream (production). The
next places Cordon runs (a sidecar's local log, an in-process SDK) plug in here; the
fast test lane uses an in-memory sink (`cordon_dev.inprocess`), while every claim
about the stream itself is tested on real NATS servers.
"""

from __future__ import annotations

from typing import Protocol

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import NotFoundError

from cordon.errors import RecordCommitError
from cordon.nats import StreamPublisher, subjects

__all__ = ["HEADROOM", "InLineSink", "NatsSink", "RecordSink"]

HEADROOM = 8 * 1024  # message headers and framing, within the server's max_payload


class RecordSink(Protocol):
    """An ordered, durable home for one replica's sealed records."""

    @property
    def connected(self) -> bool:
        """Whether a record published now could be taken."""
        ...

    @property
    def capacity(self) -> int:
        """The most bytes one sealed record may take."""
        ...

    async def publish(self, data: bytes, msg_id: str) -> int:
        """Store `data` once (a repeat of `msg_id` is dropped as a duplicate); its
        position in the log. `RecordCommitError` if it was not taken."""
        ...

    async def last(self) -> bytes | None:
        """The last record this replica stored, to continue its numbering; None if none."""
        ...


class InLineSink(Protocol):
    """A sink that may also store a record at once, from any thread (a local log
    written in-line): the in-process SDK commits its callers' records that way."""

    @property
    def in_line(self) -> bool:
        """Whether `publish_now` may be used."""
        ...

    def publish_now(self, data: bytes, msg_id: str) -> int:
        """`RecordSink.publish`, stored before it returns."""
        ...


class NatsSink:
    """The replica's subject of the regional `RECORDS` stream; the record id is the
    `Nats-Msg-Id`, so the stream drops a duplicate of a publish that timed out
    ambiguously and was sent again."""

    def __init__(self, nc: NATS, region: str, replica: str, timeout: float) -> None:
        self._nc = nc
        self._publisher = StreamPublisher(nc, timeout)
        self.subject = subjects.record_subject(region, replica)

    @property
    def connected(self) -> bool:
        return bool(self._nc.is_connected)

    @property
    def capacity(self) -> int:
        return int(getattr(self._nc, "max_payload", 0) or 1024 * 1024) - HEADROOM

    async def publish(self, data: bytes, msg_id: str) -> int:
        for attempt in (1, 2):
            try:
                return await self._publisher.publish(self.subject, data, {"Nats-Msg-Id": msg_id})
            except NatsTimeoutError as exc:
                if attempt == 2:
                    raise RecordCommitError(f"record not committed: {exc}") from exc
                continue  # ambiguous: it may have landed; the same id makes a retry safe
            except (TimeoutError, NatsError) as exc:
                raise RecordCommitError(f"record not committed: {exc}") from exc
        raise RecordCommitError("unreachable")

    async def last(self) -> bytes | None:
        try:
            last = await self._nc.jetstream().get_last_msg(subjects.RECORDS_STREAM, self.subject)
        except NotFoundError:
            return None
        except (TimeoutError, NatsError) as exc:
            raise RecordCommitError(f"could not read this replica's last record: {exc}") from exc
        return last.data or b""
