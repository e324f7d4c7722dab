"""Consume `AUDIT_SUMMARY` into the view store with a durable consumer."""

from __future__ import annotations

import asyncio
import logging

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from aggregator import metrics
from aggregator.errors import BadSummaryError
from aggregator.store import ViewStore
from gateway import subjects
from gateway.natsio import durable_batches, keep_running

log = logging.getLogger("cordon.aggregator")
DURABLE = "aggregator"
CHECKPOINT_PREFIX = subjects.checkpoint_subject("")
BATCH = 512


async def consume(nc: NATS, store: ViewStore, stop: asyncio.Event) -> None:
    """Store every summary and checkpoint sourced into `AUDIT_SUMMARY`, through reconnects."""
    config = ConsumerConfig(ack_policy=AckPolicy.ALL, deliver_policy=DeliverPolicy.ALL, ack_wait=30)

    async def store_batches() -> None:
        batches = durable_batches(nc, subjects.AUDIT_SUMMARY_STREAM, DURABLE, config, stop, BATCH)
        async for batch in batches:
            _store(store, batch)
            await batch[-1].ack()  # AckPolicy.ALL: acknowledges the whole batch

    await keep_running("summary consumer", store_batches, stop)


def _store(store: ViewStore, batch: list[Msg]) -> None:
    stored = 0
    for msg in batch:
        try:
            if msg.subject.startswith(CHECKPOINT_PREFIX):
                store.add_checkpoint(msg.subject[len(CHECKPOINT_PREFIX) :], msg.data)
            else:
                store.add([msg.data])
            stored += 1
        except BadSummaryError as exc:
            metrics.BAD_SUMMARIES.inc()
            log.error(
                "dropping unreadable summary at seq %s: %s", msg.metadata.sequence.stream, exc
            )
    metrics.CONSUMED.inc(stored)
