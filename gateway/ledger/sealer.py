"""`cordon gateway seal`: read `RECORDS` in order, publish summaries and signed checkpoints.

One sealer per region. It extends the region's Merkle tree (leaf = stream sequence)
with every record, publishes a metadata-only summary per record to `SUMMARY`, and a
signed checkpoint every second or every 1,000 records; each checkpoint also states
the head of the chain the summaries are linked into, which is how the central witness
tells the sealer's summaries from anyone else's. After a crash it resumes from its
last checkpoint and re-reads the records after it, so the tree and the chain come out
identical. A checkpoint is published only if the last one on the subject is the one
this sealer knows, so two sealers started by mistake cannot fork the sequence.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from cordon.errors import ForkError, SignatureError
from cordon.log import checkpoints, merkle, summary_chain
from cordon.log.enrolment import load_signer
from cordon.log.keys import public_bytes
from cordon.nats import (
    Endpoint,
    StreamPublisher,
    connect,
    durable_batches,
    keep_running,
    stream_seq,
    streams,
    subjects,
)
from cordon.settings import load_json
from gateway.ledger import summaries

log = logging.getLogger("cordon.sealer")
DURABLE = "sealer"
BATCH = 256
CHECKPOINT_EVERY_S = 1.0
CHECKPOINT_EVERY_RECORDS = 1000
WRONG_LAST_SEQUENCE = 10071
CONSUMER = ConsumerConfig(
    ack_policy=AckPolicy.ALL,  # one ack per batch: the sealer works strictly in order
    deliver_policy=DeliverPolicy.ALL,
    max_ack_pending=BATCH * 4,
    ack_wait=30,
)


@dataclass(frozen=True)
class SealerSettings:
    region: str
    audit_nats: Endpoint
    xr_nats: Endpoint
    pseudonym_key: bytes
    signing_key_file: Path
    enrolment_file: Path

    @classmethod
    def load(cls, path: Path) -> SealerSettings:
        return load_json(
            path,
            lambda raw: cls(
                region=str(raw["region"]),
                audit_nats=Endpoint.from_settings(raw["audit_nats"], path.parent),
                xr_nats=Endpoint.from_settings(raw["xr_nats"], path.parent),
                pseudonym_key=_pseudonym_key(raw, path.parent),
                signing_key_file=path.parent / str(raw["signing_key_file"]),
                enrolment_file=path.parent / str(raw["enrolment_file"]),
            ),
        )


def _pseudonym_key(raw: dict[str, Any], base: Path) -> bytes:
    """The regional pseudonym secret: from `pseudonym_key_file` (a mounted secret), or
    inline as `pseudonym_key` (the dev stack)."""
    if raw.get("pseudonym_key_file"):
        return (base / str(raw["pseudonym_key_file"])).read_text().strip().encode()
    return str(raw["pseudonym_key"]).encode()


class Sealer:
    def __init__(self, settings: SealerSettings) -> None:
        self.settings = settings
        self.key, self.enrolment = load_signer(settings.signing_key_file, settings.enrolment_file)
        self.tree = merkle.CompactTree()
        self.chain = summary_chain.genesis(settings.region)  # the last summary's link
        self._checkpoint_seq = 0  # SUMMARY sequence of the last checkpoint we know
        self._checkpoint_size = 0
        self._checkpoint_at = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        region = self.settings.region
        audit = await connect(self.settings.audit_nats, f"sealer-{region}-audit")
        xr = await connect(self.settings.xr_nats, f"sealer-{region}-xr")
        self._publisher = StreamPublisher(xr)
        try:
            await streams.publish_enrolment(
                audit.jetstream(), region, self.key.key_id, self.enrolment
            )
            await keep_running(
                "sealer (resuming from the last checkpoint)",
                lambda: self._seal(audit, xr.jetstream(), stop),
                stop,
                retry_on=(TimeoutError, NatsError, ForkError),
            )
        finally:
            await audit.close()
            await xr.close()

    async def _seal(self, audit: NATS, xr_js: JetStreamContext, stop: asyncio.Event) -> None:
        audit_js = audit.jetstream()
        await self._restore(audit_js, xr_js)
        batches = durable_batches(
            audit,
            subjects.RECORDS_STREAM,
            DURABLE,
            CONSUMER,
            stop,
            BATCH,
            wait_s=CHECKPOINT_EVERY_S,
            idle=True,  # checkpoints are due on the clock too
        )
        async for batch in batches:
            if batch:
                await self._publish_batch(audit_js, batch)
            if self._checkpoint_due():
                await self._checkpoint()

    async def _restore(self, audit_js: JetStreamContext, xr_js: JetStreamContext) -> None:
        """Tree and chain state = the last checkpoint, then every record summarised since.

        Only a checkpoint this sealer signed is resumed from. Anyone else's (someone with
        the sealer's NATS credentials but not its key) is stepped over: the tree and the
        chain are rebuilt from RECORDS, and the next checkpoint follows it on the subject."""
        region = self.settings.region
        self.chain = summary_chain.genesis(region)
        self.tree, self._checkpoint_seq, self._checkpoint_size = merkle.CompactTree(), 0, 0
        try:
            last = await xr_js.get_last_msg(
                subjects.SUMMARY_STREAM, subjects.checkpoint_subject(region)
            )
        except NotFoundError:
            last = None
        if last is not None:
            self._checkpoint_seq = last.seq or 0
            if self._signed_by_us(last.data or b""):
                checkpoint, self.tree = checkpoints.resume(last.data or b"")
                self._checkpoint_size = checkpoint.size
                self.chain = checkpoint.summaries or self.chain
            else:
                log.error("the last checkpoint of %s is not this sealer's: rebuilding", region)
        try:
            info = await audit_js.consumer_info(subjects.RECORDS_STREAM, DURABLE)
            acked = info.ack_floor.stream_seq if info.ack_floor else 0
        except NotFoundError:  # the first start: nothing sealed yet
            acked = 0
        await self._extend_to(audit_js, acked)
        self._checkpoint_at = time.monotonic()
        log.info("sealer at tree size %s (checkpoint %s)", self.tree.size, self._checkpoint_size)

    def _signed_by_us(self, data: bytes) -> bool:
        mine = {self.key.key_id: public_bytes(self.key.public_key)}
        try:
            checkpoints.decode(data, mine)
            checkpoints.resume(data)  # and its frontier matches its root
        except (SignatureError, ValueError, KeyError, TypeError):
            return False
        return True

    async def _extend_to(self, audit_js: JetStreamContext, seq: int) -> None:
        """Append leaves and links up to `seq` read straight from RECORDS: records already
        summarised before a restart (at or below the consumer's ack floor)."""
        while self.tree.size < seq:
            msg = await audit_js.get_msg(subjects.RECORDS_STREAM, self.tree.size + 1)
            self._summarize(self.tree.size + 1, msg.data or b"")

    async def _publish_batch(self, audit_js: JetStreamContext, batch: list[Msg]) -> None:
        delivered = {stream_seq(m): m for m in batch}
        fresh = {seq: m.data for seq, m in delivered.items() if seq > self.tree.size}
        if fresh:
            # Records delivered to a sealer that died are redelivered only after ack_wait;
            # take them from the stream now so the tree and the summaries stay in order.
            for seq in range(self.tree.size + 1, max(fresh)):
                if seq not in fresh:
                    fresh[seq] = (await audit_js.get_msg(subjects.RECORDS_STREAM, seq)).data or b""
            await self._seal_records(sorted(fresh.items()))
        # Everything up to the highest sequence is in the tree now: one ack covers it.
        await delivered[max(delivered)].ack()

    async def _seal_records(self, records: list[tuple[int, bytes]]) -> None:
        """Publish the summaries of `records`, in order."""
        # Should the publish fail, the tree and the chain are rebuilt from the last
        # checkpoint (`_restore`) before anything is sealed again.
        await self._publisher.publish_many([self._summarize(seq, data) for seq, data in records])

    def _summarize(self, seq: int, data: bytes) -> tuple[str, bytes, dict[str, str]]:
        """The next summary as published; its leaf and link join the tree and the chain.

        The message id (the stream's deduplication key) names the link, not only the
        sequence: the same summary published again after a restart is dropped, but a
        message someone else sent first under `sum-<seq>` cannot displace it."""
        region = self.settings.region
        summary = summaries.summarize(data, seq, region, self.settings.pseudonym_key)
        body, self.chain = summaries.chained(summary, self.chain)
        self.tree.append(bytes.fromhex(summary["leaf_hash"]))  # hashed once, in summarize
        subject = subjects.summary_subject(region, str(summary.get("replica") or "unknown"))
        return subject, body, {"Nats-Msg-Id": f"sum-{seq}-{self.chain.hex()[:32]}"}

    def _checkpoint_due(self) -> bool:
        grown = self.tree.size - self._checkpoint_size
        waited = time.monotonic() - self._checkpoint_at
        return grown >= CHECKPOINT_EVERY_RECORDS or (grown > 0 and waited >= CHECKPOINT_EVERY_S)

    async def _checkpoint(self) -> None:
        checkpoint = checkpoints.Checkpoint(
            self.settings.region,
            self.tree.size,
            self.tree.root(),
            int(time.time() * 1000),
            self.chain,
        )
        try:
            seq = await self._publisher.publish(
                subjects.checkpoint_subject(self.settings.region),
                checkpoints.encode(checkpoint, self.key, self.tree),
                {"Nats-Expected-Last-Subject-Sequence": str(self._checkpoint_seq)},
            )
        except APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                raise ForkError("a checkpoint we did not write is on the subject") from exc
            raise
        self._checkpoint_seq, self._checkpoint_size = seq, checkpoint.size
        self._checkpoint_at = time.monotonic()


def run(config_path: Path) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = SealerSettings.load(config_path)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Sealer(settings).run(stop)

    asyncio.run(main())
