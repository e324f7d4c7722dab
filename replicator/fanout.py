"""Write verified packs into every region's `policy` KV, one durable consumer each.

A region's write goes through that region's JetStream domain over the leaf
(`$JS.<region>.API...`) and is conditional on the KV's last sequence for the key,
so a stale replicator can never roll a region back.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from cordon.errors import PackError, RegionWriteError
from cordon.nats import durable_batches, keep_running, subjects
from cordon.packs import Pack, signing
from replicator import metrics

log = logging.getLogger("cordon.replicator")
KV_STREAM = f"KV_{subjects.POLICY_BUCKET}"
HEARTBEAT_KEY = "heartbeat"
REQUEST_TIMEOUT_S = 2.0
CONSUMER = ConsumerConfig(
    ack_policy=AckPolicy.EXPLICIT,
    deliver_policy=DeliverPolicy.ALL,
    max_ack_pending=1,  # strictly in order, per region
    ack_wait=30,
)


class Gate(Protocol):
    """Whether a staged revision may go to a region yet (replicator.rollout)."""

    def permits(self, pack: str, revision: int, region: str) -> bool: ...

    async def changed(self) -> None: ...


def _kv_subject(key: str) -> str:
    return f"$KV.{subjects.POLICY_BUCKET}.{key}"


async def region_api(
    nc: NATS, region: str, suffix: str, data: bytes, headers: dict[str, str] | None = None
) -> dict[str, object]:
    """One request to `region`'s JetStream API through its domain; its JSON answer."""
    try:
        reply = await nc.request(
            f"{subjects.domain_api(region)}.{suffix}",
            data,
            timeout=REQUEST_TIMEOUT_S,
            headers=headers,
        )
    except NatsError as exc:
        raise RegionWriteError(f"{region}: {exc.__class__.__name__}: {exc}") from exc
    answer: dict[str, object] = json.loads(reply.data)
    return answer


async def regional_revision(
    nc: NATS, region: str, key: str, trusted: Mapping[str, bytes]
) -> tuple[int, int]:
    """(KV sequence, pack revision) of `key` in `region`, or (0, 0) if absent.

    The revision is read only from a pack that verifies: an entry nobody trusted signed
    (whoever planted it, whatever revision it claims) counts as no pack at all."""
    answer = await region_api(
        nc,
        region,
        f"STREAM.MSG.GET.{KV_STREAM}",
        json.dumps({"last_by_subj": _kv_subject(key)}).encode(),
    )
    if "error" in answer:
        error = answer["error"]
        if isinstance(error, dict) and error.get("code") == 404:
            return 0, 0
        raise RegionWriteError(f"{region}: {error}")
    message = answer["message"]
    assert isinstance(message, dict)
    try:
        revision = signing.decode(base64.b64decode(message["data"]), trusted).revision
    except PackError as exc:
        metrics.ERRORS.labels("unverified_regional_entry").inc()
        log.error("%s: the policy bucket's %s does not verify (%s): replacing it", region, key, exc)
        revision = 0
    return int(message["seq"]), revision


async def write_pack(
    nc: NATS,
    region: str,
    key: str,
    data: bytes,
    revision: int,
    trusted: Mapping[str, bytes],
    may_write: Callable[[], bool] = lambda: True,
) -> bool:
    """Write `data` unless the region already has this revision or a newer one; False if
    it had. `RegionWriteError` if the write was refused (the compare-and-set lost) or
    `may_write()` no longer holds when it is time to write."""
    last_seq, current = await regional_revision(nc, region, key, trusted)
    if current >= revision:
        return False
    if not may_write():
        raise RegionWriteError(f"{region}: not written: this instance no longer holds the lease")
    answer = await region_api(
        nc,
        region,
        _kv_subject(key),
        data,
        headers={"Nats-Expected-Last-Subject-Sequence": str(last_seq)},
    )
    if "error" in answer:
        raise RegionWriteError(f"{region}: {answer['error']}")
    return True


async def take_over_consumer(js: JetStreamContext, durable: str) -> None:
    """Make a durable deliver again what an instance before us took and never acked.

    With one delivery outstanding per region, a replicator that died mid-write holds
    that region's next pack until the ack wait runs out (30 s). The instance taking
    over recreates the consumer at the ack floor, so the pack comes again at once: if
    it was written before the crash, the write is skipped (the region has it), never
    repeated."""
    try:
        info = await js.consumer_info(subjects.POLICY_STREAM, durable)
    except NotFoundError:
        return
    if not info.num_ack_pending:
        return
    floor = info.ack_floor.stream_seq if info.ack_floor and info.ack_floor.stream_seq else 0
    log.info("%s: taking over an unacked delivery, from seq %s", durable, floor + 1)
    await js.delete_consumer(subjects.POLICY_STREAM, durable)
    await js.add_consumer(
        subjects.POLICY_STREAM,
        dataclasses.replace(
            CONSUMER,
            durable_name=durable,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=floor + 1,
        ),
    )


class RegionFanout:
    """Carries `POLICY` into one region, in order, at its own pace.

    Each pack is verified against the replicator's trust root before it goes
    anywhere; a pack that is not for this region, or has expired, is passed over.
    Nothing is written unless `may_write()` says so at that moment (the lease).
    """

    def __init__(
        self,
        nc: NATS,
        region: str,
        trusted: Mapping[str, bytes],
        may_write: Callable[[], bool] = lambda: True,
        rollouts: Gate | None = None,
    ) -> None:
        self.nc = nc
        self.region = region
        self.trusted = trusted
        self.may_write = may_write
        self.rollouts = rollouts
        self._stop = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        # One region's bad day (or a bug tripped by one pack) must not stop the others.
        await keep_running(f"{self.region} fan-out", lambda: self._follow(stop), stop, (Exception,))

    async def _follow(self, stop: asyncio.Event) -> None:
        durable = f"replicate-{self.region}"
        await take_over_consumer(self.nc.jetstream(), durable)
        batches = durable_batches(
            self.nc,
            subjects.POLICY_STREAM,
            durable,
            CONSUMER,
            stop,
            size=1,
            idle=True,
        )
        async for batch in batches:
            if not batch:  # nothing pending: this region is caught up
                metrics.LAG_SECONDS.labels(self.region).set(0)
                metrics.LAG_REVISIONS.labels(self.region).set(0)
                continue
            await self._deliver(batch[0])

    async def _deliver(self, msg: Msg) -> None:
        pending = msg.metadata.num_pending + 1
        metrics.LAG_REVISIONS.labels(self.region).set(pending)
        try:
            pack = signing.decode(msg.data, self.trusted)
            if pack.expired(time.time()):
                raise PackError("expired")
        except PackError as exc:
            log.error(
                "%s: refusing pack at POLICY seq %s: %s",
                self.region,
                msg.metadata.sequence.stream,
                exc,
            )
            metrics.ERRORS.labels("invalid_pack").inc()
            await msg.term()
            return
        if not pack.covers(self.region):
            metrics.LAG_REVISIONS.labels(self.region).set(pending - 1)
            await msg.ack()
            return
        committed_at = msg.metadata.timestamp.timestamp() if msg.metadata.timestamp else time.time()
        if not await self._released(msg, pack):
            return
        if not self.may_write():  # the lease ran out under us: the next holder delivers it
            await msg.nak(delay=1)
            return
        try:
            written = await write_pack(
                self.nc,
                self.region,
                subjects.pack_key(pack.name),
                msg.data,
                pack.revision,
                self.trusted,
                self.may_write,
            )
        except RegionWriteError as exc:
            metrics.ERRORS.labels("region_write").inc()
            metrics.LAG_SECONDS.labels(self.region).set(time.time() - committed_at)
            log.warning(
                "%s: pack %s r%s not written yet: %s", self.region, pack.name, pack.revision, exc
            )
            await msg.nak(delay=1)
            return
        metrics.WRITE.labels(self.region).observe(max(0.0, time.time() - committed_at))
        metrics.LAG_REVISIONS.labels(self.region).set(pending - 1)
        await msg.ack()
        if written:
            metrics.WRITES.labels(self.region).inc()
            log.info("%s: pack %s revision %s replicated", self.region, pack.name, pack.revision)
        else:
            log.info(
                "%s: pack %s revision %s not written: the region already has it or a newer one",
                self.region,
                pack.name,
                pack.revision,
            )

    async def _released(self, msg: Msg, pack: Pack) -> bool:
        """Hold a staged revision until its rollout releases it to this region; False
        (and the delivery given back) if this instance stops being the one to wait."""
        if self.rollouts is None or "rollout" not in pack.document:
            return True
        while not self.rollouts.permits(pack.name, pack.revision, self.region):
            if self._stop.is_set() or not self.may_write():
                await msg.nak(delay=1)
                return False
            await msg.in_progress()  # held on purpose: not a delivery to give up on
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.rollouts.changed(), 5.0)
        return True


async def heartbeat(
    nc: NATS,
    regions: list[str],
    stop: asyncio.Event,
    every_s: float = 5.0,
    may_write: Callable[[], bool] = lambda: True,
) -> None:
    """Write a timestamp into every region's policy KV, so lag shows when nothing changes."""
    last_ok: dict[str, float] = {}
    while not stop.is_set():
        for region in regions:
            if not may_write():
                return
            try:
                answer = await region_api(
                    nc, region, _kv_subject(HEARTBEAT_KEY), json.dumps({"ts": time.time()}).encode()
                )
                if "error" not in answer:
                    last_ok[region] = time.time()
            except RegionWriteError as exc:
                log.debug("heartbeat to %s failed: %s", region, exc)
            age = time.time() - last_ok[region] if region in last_ok else float("inf")
            metrics.HEARTBEAT_AGE.labels(region).set(age)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
