"""The region's two NATS accounts as a replica's backplane (production): records and
the key's enrolment in AUDIT, the policy and applied buckets in XR.

Apart from the seam (`gateway.backplane`) so that a process with another backplane (a
local sidecar) never loads the NATS client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from cordon.errors import RegionUnreachableError
from cordon.nats import Endpoint, connect, streams, subjects
from cordon.packs import signing
from gateway.backplane import PackUpdate
from gateway.records.sink import NatsSink, RecordSink

__all__ = ["NatsBackplane"]

log = logging.getLogger("cordon.gateway")

# How long a (re)started watch waits for the bucket's kept history before following on.
REPLAY_WAIT_S = 10.0


class NatsBackplane:
    def __init__(
        self, audit: Endpoint, xr: Endpoint, region: str, replica: str, commit_timeout_s: float
    ) -> None:
        self._audit, self._xr = audit, xr
        self._region, self._replica = region, replica
        self._timeout = commit_timeout_s
        self._xr_reconnected = asyncio.Event()
        self._watching = False
        self.audit_nc: NATS | None = None
        self.xr_nc: NATS | None = None

    @property
    def ready(self) -> bool:
        return all(nc is not None and nc.is_connected for nc in (self.audit_nc, self.xr_nc))

    @property
    def watching(self) -> bool:
        return self._watching

    async def connect(self) -> RecordSink:
        name = f"gateway-{self._region}-{self._replica}"
        try:
            self.audit_nc = await connect(self._audit, f"{name}-audit")
            self.xr_nc = await connect(self._xr, f"{name}-xr", self._xr_reconnected)
        except (TimeoutError, OSError, NatsError) as exc:
            await self.close()
            raise RegionUnreachableError(f"regional NATS not reachable: {exc}") from exc
        return NatsSink(self.audit_nc, self._region, self._replica, self._timeout)

    async def pack_updates(self, pack_name: str) -> AsyncIterator[PackUpdate]:
        """A watch is an ephemeral consumer, which a restarted server forgets; a fresh
        watch delivers the current value again (stale revisions are refused above)."""
        while True:
            try:
                async for update in self._watch_once(pack_name):
                    yield update
            except (TimeoutError, NatsError) as exc:
                log.warning("policy watch interrupted: %s", exc)
                await asyncio.sleep(0.5)

    async def _watch_once(self, pack_name: str) -> AsyncIterator[PackUpdate]:
        assert self.xr_nc is not None
        self._xr_reconnected.clear()
        kv = await self.xr_nc.jetstream().key_value(subjects.POLICY_BUCKET)
        key = subjects.pack_key(pack_name)
        # What is history is told by the key's last write before the watch, not by the
        # watcher's None marker: nats.py can put that marker ahead of the history it ends
        # (its callback waits on the consumer info it checks).
        replayed_to = await _last_write(kv, key)
        watcher = await kv.watch(key, include_history=True)
        try:
            # The bucket's kept revisions newest first: a fresh replica takes the newest
            # valid one, not whatever was written last, and enforces no older one on the way.
            kept, newer = await _replay(watcher, replayed_to)
            for value in _newest_first(kept):
                yield PackUpdate(value, replayed=True)
            self._watching = True
            yield PackUpdate(None)  # live: what is enforced can be reported
            if newer is not None:
                yield PackUpdate(newer)
            while not self._xr_reconnected.is_set():
                try:
                    entry = await watcher.updates(timeout=1.0)  # type: ignore[no-untyped-call]
                except NatsTimeoutError:  # nothing new this second
                    continue
                if _is_pack(entry):  # history arriving after the replay's wait is history
                    yield PackUpdate(entry.value, replayed=entry.revision <= replayed_to)
        finally:
            self._watching = False
            with contextlib.suppress(NatsError, asyncio.TimeoutError):
                await watcher.stop()  # type: ignore[no-untyped-call]

    async def enrol(self, key_id: str, enrolment: bytes) -> None:
        assert self.audit_nc is not None
        try:
            await streams.publish_enrolment(
                self.audit_nc.jetstream(), self._region, key_id, enrolment
            )
        except (TimeoutError, NatsError) as exc:
            raise RegionUnreachableError(f"enrolment not published: {exc}") from exc

    async def report_applied(self, replica: str, report: bytes) -> None:
        """Over XR alone: a replica whose records side is away still says what it
        enforces."""
        xr = self.xr_nc
        if xr is None or not xr.is_connected:
            raise RegionUnreachableError("the region's XR side is not connected")
        try:
            applied = await xr.jetstream().key_value(subjects.APPLIED_BUCKET)
            await applied.put(replica, report)
        except (TimeoutError, NatsError) as exc:
            raise RegionUnreachableError(f"applied report not stored: {exc}") from exc

    async def records_retention_days(self) -> float | None:
        assert self.audit_nc is not None
        return await streams.records_retention_days(self.audit_nc.jetstream())

    async def close(self) -> None:
        for nc in (self.audit_nc, self.xr_nc):
            if nc is not None:
                # close, not drain: with NATS gone a drain would wait forever.
                with contextlib.suppress(NatsError, asyncio.TimeoutError):
                    await asyncio.wait_for(nc.close(), 2.0)
        self.audit_nc = self.xr_nc = None


async def _last_write(kv: KeyValue, key: str) -> int:
    """The stream sequence of `key`'s newest write (a delete's marker too), 0 if none.
    Read from the stream's leader: the bucket is made without direct reads
    (`cordon.nats.streams`), which a lagging follower could answer."""
    try:
        entry = await kv.get(key)
    except KeyNotFoundError as exc:  # nats.py says so of a deleted key too, with its marker
        entry = exc.entry
    return int(entry.revision or 0) if entry is not None else 0


async def _replay(watcher: Any, replayed_to: int) -> tuple[list[bytes], bytes | None]:
    """The packs the watch replays up to the key's last write before it began (the kept
    history); and the first newer write, if the history no longer held that one (trimmed
    since). At most `REPLAY_WAIT_S`: what comes later is offered as it arrives."""
    kept: list[bytes] = []
    deadline = time.monotonic() + REPLAY_WAIT_S
    while replayed_to and (left := deadline - time.monotonic()) > 0:
        try:
            entry = await watcher.updates(timeout=min(left, 1.0))
        except NatsTimeoutError:
            continue
        if entry is None:  # nats.py's end-of-history marker, wherever it lands
            continue
        if entry.revision > replayed_to:
            return kept, entry.value if _is_pack(entry) else None
        if _is_pack(entry):
            kept.append(entry.value)
        if entry.revision == replayed_to:
            break
    return kept, None


def _is_pack(entry: Any) -> bool:
    """A write of a value: not nats.py's marker, nor a delete's or a purge's."""
    return (
        entry is not None and entry.value is not None and entry.operation not in (KV_DEL, KV_PURGE)
    )


def _newest_first(values: list[bytes]) -> list[bytes]:
    """By the revision each claims (checked when offered); what claims none, last."""

    def claimed(value: bytes) -> int:
        revision = signing.claimed(value)["revision"]
        return revision if isinstance(revision, int) else -1

    return sorted(values, key=claimed, reverse=True)
