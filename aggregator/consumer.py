"""Consume `AUDIT_SUMMARY` into the view store with a durable consumer."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from aggregator import metrics
from aggregator.store import ViewStore
from aggregator.witness import RegionWitness, Witness
from cordon.errors import BadSummaryError
from cordon.nats import durable_batches, keep_running, stream_seq, subjects

log = logging.getLogger("cordon.aggregator")
DURABLE = "aggregator"
CHECKPOINT_PREFIX = subjects.checkpoint_subject("")
BATCH = 512


async def consume(nc: NATS, store: ViewStore, stop: asyncio.Event, witness: Witness) -> None:
    """Store every summary and checkpoint sourced into `AUDIT_SUMMARY`, and witness each
    region's checkpoints, through reconnects."""
    config = ConsumerConfig(ack_policy=AckPolicy.ALL, deliver_policy=DeliverPolicy.ALL, ack_wait=30)
    for region, state in store.witness_states().items():
        witness.restore(region, state)

    async def store_batches() -> None:
        batches = durable_batches(nc, subjects.AUDIT_SUMMARY_STREAM, DURABLE, config, stop, BATCH)
        async for batch in batches:
            _store(store, witness, batch)
            await batch[-1].ack()  # AckPolicy.ALL: acknowledges the whole batch

    await keep_running("summary consumer", store_batches, stop)


def _store(store: ViewStore, witness: Witness, batch: list[Msg]) -> None:
    """Summaries and witness verdicts of one batch, then the witness state they lead to:
    all stored before the batch is acknowledged, so a redelivery repeats nothing."""
    parsed: list[dict[str, Any]] = []
    touched: set[str] = set()
    stored = 0
    for msg in batch:
        try:
            if msg.subject.startswith(CHECKPOINT_PREFIX):
                region = msg.subject[len(CHECKPOINT_PREFIX) :]
                store.add_checkpoint(region, msg.data)
                _judge(store, witness.region(region), msg.data)
                touched.add(region)
            else:
                summary = _summary(store, msg)
                parsed.append(summary)
                witness.region(str(summary["region"])).summary(summary)
                touched.add(str(summary["region"]))
            stored += 1
        except BadSummaryError as exc:
            metrics.BAD_SUMMARIES.inc()
            log.error("dropping unreadable summary at seq %s: %s", stream_seq(msg), exc)
    store.add_parsed(parsed)
    for region in touched:
        region_witness = witness.region(region)
        metrics.SUMMARY_GAPS.labels(region).set(region_witness.gaps)
        store.save_witness(region, region_witness.state())
    metrics.CONSUMED.inc(stored)


def _summary(store: ViewStore, msg: Msg) -> dict[str, Any]:
    """A summary, whose region is the one its subject names.

    Only a region's sealer may publish on `cordon.sum.<region>.>` (its NATS identity
    allows no other region's), so the subject says where a summary came from; a body
    that claims another region is refused, not believed."""
    region = subjects.summary_region(msg.subject)
    if region is None:
        raise BadSummaryError(f"not a summary subject: {msg.subject}")
    summary = store.parse(msg.data)
    if summary.get("region") != region:
        claimed = summary.get("region")
        raise BadSummaryError(f"summary claims region {claimed!r} on {region}'s subject")
    return summary


def _judge(store: ViewStore, region: RegionWitness, raw: bytes) -> None:
    verdict = region.checkpoint(raw)
    if verdict is None:
        return
    store.add_verdict(verdict)
    if verdict.verified:
        metrics.CHECKPOINTS_VERIFIED.labels(verdict.region).inc()
    else:
        metrics.CHECKPOINTS_FAILED.labels(verdict.region).inc()
        log.error(
            "witness: %s checkpoint %s failed: %s", verdict.region, verdict.size, verdict.reason
        )
