"""Region mode: a sidecar that is one replica of a region, its local log the buffer.

Calls commit to the embedded log (fsynced before the answer goes out) exactly as in
local mode, so they never wait on NATS and do not fail while the region is away. The
`Shipper` sends the log's records to the region's `RECORDS`, in the log's order, each
under the id it was stored with as `Nats-Msg-Id` (a record sent twice is stored once),
resuming after the last message the stream holds on this replica's subject. The
region's sealer seals shipped records like any replica's; the local sealer still seals
the local log, whose enrolment comes from the regional key, so it verifies offline.

Packs come from the region's policy KV and applied reports go to its bucket through
`NatsBackplane`, the watch every replica runs. Only region mode imports this module:
local mode loads no NATS client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import msgpack
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from cordon.errors import RecordCommitError, RegionUnreachableError, ShippingRefusedError
from cordon.log import envelope
from cordon.log.enrolment import load_signer
from cordon.loops import call_on
from cordon.nats import subjects
from gateway import metrics
from gateway.backplane import PackUpdate
from gateway.nats_backplane import NatsBackplane
from gateway.records.local_log import LocalLog, LocalSink
from gateway.records.sink import HEADROOM, NatsSink
from gateway.settings import GatewaySettings
from gateway.sidecar.backplane import LocalBackplane
from gateway.sidecar.config import SidecarConfig
from gateway.sidecar.keys import LocalKeys

__all__ = ["RegionBackplane", "Shipper", "assemble"]

log = logging.getLogger("cordon.sidecar.region")
POLL_S = 0.1  # the shipper looks for new records at least this often
# How far from where its number points a record may sit in the log: a void is committed
# before the replica's next record, at most a batch of concurrent calls later.
LATE_VOIDS = 4096
# What a record may take before the region said its own max_payload: NATS's default,
# so that nothing committed locally is too large for the region to take.
NATS_DEFAULT_PAYLOAD = 1024 * 1024


def assemble(
    keys: LocalKeys, records: LocalLog, config: SidecarConfig
) -> tuple[LocalKeys, RegionBackplane]:
    """The provisioned, enrolled key in place of the local one, and the region backplane."""
    settings = config.settings
    signer, enrolment = load_signer(settings.signing_key_file, settings.enrolment_file)
    backplane = RegionBackplane(records, settings, config.ship_retry_interval_s)
    return replace(keys, signer=signer, enrolment=enrolment), backplane


class RegionBackplane(LocalBackplane):
    """Records and enrolment to the local log (shipped on), packs from the region."""

    def __init__(self, records: LocalLog, settings: GatewaySettings, retry_s: float) -> None:
        super().__init__(records, settings.region, settings.replica)
        self.region = NatsBackplane(
            settings.audit_nats,
            settings.xr_nats,
            settings.region,
            settings.replica,
            settings.commit_timeout_s,
        )
        self.shipper = Shipper(records, self.region, settings, retry_s)
        self._task: asyncio.Task[None] | None = None

    @property
    def watching(self) -> bool:
        return self.region.watching

    async def connect(self) -> LocalSink:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.shipper.run())
        return ShippingSink(self.log, self.shipper)

    async def pack_updates(self, pack_name: str) -> AsyncIterator[PackUpdate]:
        await self.shipper.reached.wait()
        async for update in self.region.pack_updates(pack_name):
            yield update

    async def enrol(self, key_id: str, enrolment: bytes) -> None:
        """In the local log (it verifies offline) and, by the shipper, in the region."""
        await super().enrol(key_id, enrolment)
        self.shipper.enrolment = (key_id, enrolment)

    async def report_applied(self, replica: str, report: bytes) -> None:
        if not self.shipper.reached.is_set():
            raise RegionUnreachableError("the region's NATS has not been reached yet")
        await self.region.report_applied(replica, report)

    async def records_retention_days(self) -> float | None:
        if not self.region.ready:
            raise RegionUnreachableError("the region's records stream is not reachable")
        return await self.region.records_retention_days()

    def status(self) -> dict[str, Any]:
        return self.shipper.status()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.region.close()


class ShippingSink(LocalSink):
    """The recorder's sink: the local log, records capped to what the region takes (one
    it would refuse could never ship), each append waking the shipper."""

    def __init__(self, records: LocalLog, shipper: Shipper) -> None:
        super().__init__(records, shipper.subject)
        self._shipper = shipper

    @property
    def capacity(self) -> int:
        return self._shipper.capacity

    async def publish(self, data: bytes, msg_id: str) -> int:
        before = self.log.last_seq
        return self._counted(before, await super().publish(data, msg_id))

    def publish_now(self, data: bytes, msg_id: str) -> int:
        before = self.log.last_seq
        return self._counted(before, super().publish_now(data, msg_id))

    def _counted(self, before: int, seq: int) -> int:
        if seq > before:  # not a repeat of a stored id
            self._shipper.appended()
        return seq


class Shipper:
    """Sends the local log's records on this replica's subject to the region's RECORDS."""

    def __init__(
        self, records: LocalLog, region: NatsBackplane, settings: GatewaySettings, retry_s: float
    ) -> None:
        self.log = records
        self._sink: NatsSink | None = None
        self._region = region
        self.subject = subjects.record_subject(settings.region, settings.replica)
        self.retry_s = retry_s
        cap = settings.max_record_bytes
        self.capacity = min(cap, NATS_DEFAULT_PAYLOAD) if cap else NATS_DEFAULT_PAYLOAD
        self.capacity -= HEADROOM
        self._max_record_bytes = cap
        self.reached = asyncio.Event()  # the region answered once: packs can be followed
        self.enrolment: tuple[str, bytes] | None = None  # the key's, set by `enrol`
        self._enrolled = False
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None  # the one `run` runs on
        self._cursor: int | None = None  # where the next record to ship is looked for
        self.backlog = 0  # records on the subject at or after the cursor
        self.shipped = 0  # records shipped since the start
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        records.keep_from = 1  # retention keeps everything until the stream says what it holds
        metrics.SHIP_BACKLOG.set_function(lambda: float(self.backlog))

    def appended(self) -> None:
        """A record was appended, by any thread (the in-process SDK's callers append
        too): counted, and the shipper woken, on the shipper's loop."""
        call_on(self._loop, self._count_appended)

    def _count_appended(self) -> None:
        self.backlog += 1
        self._wake.set()

    async def run(self) -> None:
        """Forever: reach the region, resume after what it holds, ship as records come.
        Whatever goes wrong is said (log, status) and tried again after `retry_s`."""
        self._loop = asyncio.get_running_loop()
        while True:
            try:
                sink = await self._dial()
                await self._ship_while_connected(sink)
            except (RegionUnreachableError, RecordCommitError, ShippingRefusedError) as exc:
                self._failed(exc)
            except (TimeoutError, NatsError) as exc:
                self._failed(RegionUnreachableError(f"shipping interrupted: {exc}"))
            await asyncio.sleep(self.retry_s)

    def _failed(self, exc: Exception) -> None:
        if self.last_error != str(exc):
            log.warning("records not shipped to the region yet (retrying): %s", exc)
        self.last_error, self.last_error_at = str(exc), time.time()

    async def _dial(self) -> NatsSink:
        """The region's AUDIT side; a connection, once made, reconnects by itself."""
        nc = self._region.audit_nc
        if nc is None or nc.is_closed or self._sink is None:
            await self._region.close()
            sink = await self._region.connect()  # RegionUnreachableError if away
            assert isinstance(sink, NatsSink)
            self._sink = sink
            self.capacity = sink.capacity
            if self._max_record_bytes:
                self.capacity = min(self.capacity, self._max_record_bytes - HEADROOM)
            self.reached.set()
            log.info("reached the region's NATS: shipping %s", self.subject)
        return self._sink

    async def _ship_while_connected(self, sink: NatsSink) -> None:
        if self.enrolment is not None and not self._enrolled:
            await self._region.enrol(*self.enrolment)  # records follow their key's enrolment
            self._enrolled = True
        await self._resume()
        while True:
            self._wake.clear()  # before looking: an append from now on wakes the wait
            if not await self._ship_pending(sink):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL_S):
                        await self._wake.wait()

    async def _resume(self) -> None:
        """The cursor after the last message the stream holds on the subject, found by
        its id (the log's order, which voids committed late do not follow by number)."""
        last = await self._last_in_region()
        cursor = 1 if last is None else _after(self.log, self.subject, *last)
        if cursor != self._cursor:
            self._cursor = cursor
            self.backlog = sum(1 for e in self.log.entries(cursor) if e.subject == self.subject)
        self.log.keep_from = cursor
        self.last_error = None

    async def _last_in_region(self) -> tuple[str, bytes] | None:
        nc = self._region.audit_nc
        if nc is None or not nc.is_connected:
            raise RegionUnreachableError("the region's NATS is away (reconnecting)")
        try:
            msg = await nc.jetstream().get_last_msg(subjects.RECORDS_STREAM, self.subject)
        except NotFoundError:
            return None
        except (TimeoutError, NatsError) as exc:
            raise RegionUnreachableError(f"this replica's last record not read: {exc}") from exc
        return str((msg.headers or {}).get("Nats-Msg-Id", "")), msg.data or b""

    async def _ship_pending(self, sink: NatsSink) -> bool:
        """Ship what follows the cursor, one at a time (a record is sent only once the
        one before it is stored: a failure never leaves a later record ahead of a
        missing one). Whether anything was shipped."""
        assert self._cursor is not None
        shipped = False
        for entry in self.log.entries(self._cursor):
            if entry.subject == self.subject:
                if not sink.connected:
                    raise RegionUnreachableError("the region's NATS is away (reconnecting)")
                await sink.publish(entry.data, entry.msg_id)
                self.backlog = max(0, self.backlog - 1)
                self.shipped += 1
                shipped = True
            self._cursor = entry.seq + 1
            self.log.keep_from = self._cursor
        return shipped

    def status(self) -> dict[str, Any]:
        return {
            "mode": "region",
            "subject": self.subject,
            "region_reached": self.reached.is_set(),
            "connected": self._region.ready,
            "backlog": self.backlog,
            "shipped": self.shipped,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
        }


def _after(log: LocalLog, subject: str, msg_id: str, data: bytes) -> int:
    """The local sequence after the record the region holds last, always found by its
    id: from the dedupe window, else near where its `replica_seq` falls (a void committed
    late sits after higher numbers, so the number alone would step over it). A record
    this log does not hold means someone else publishes as this replica, or the log was
    replaced: `ShippingRefusedError`, and nothing is skipped."""
    seq = log.seq_of(msg_id) if msg_id else None
    if seq is not None:
        return seq + 1
    near = _by_replica_seq(log, subject, _replica_seq(data))
    for entry in log.entries(max(log.first_seq or 1, near - LATE_VOIDS), near + LATE_VOIDS):
        if entry.subject == subject and entry.msg_id == msg_id:
            return entry.seq + 1
    raise ShippingRefusedError(
        f"the region's last record on {subject} ({msg_id or 'no id'}) is not in this "
        "sidecar's log: another process publishes as this replica, or the log was "
        "replaced; nothing is shipped until that is resolved"
    )


def _by_replica_seq(log: LocalLog, subject: str, shipped: int) -> int:
    """Where records numbered above `shipped` begin in the log (a binary search)."""
    low, high = log.first_seq or 1, log.next_seq
    while low < high:
        middle = (low + high) // 2
        found = log.next_on(subject, middle)
        if found is None or _replica_seq(found[1]) > shipped:
            high = middle
        else:
            low = found[0] + 1
    return low


def _replica_seq(data: bytes) -> int:
    payload = msgpack.unpackb(envelope.decode(data).payload)
    return int(payload.get("replica_seq") or 0)
