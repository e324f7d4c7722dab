"""Consume `AUDIT_SUMMARY` into the view store with a durable consumer."""

from __future__ import annotations

import asyncio
import logging

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from aggregator import metrics
from aggregator.errors import BadSummaryError
from aggregator.store import ViewStore
from gateway import subjects

log = logging.getLogger("cordon.aggregator")
DURABLE = "aggregator"
CHECKPOINT_PREFIX = subjects.checkpoint_subject("")
BATCH = 512


async def consume(nc: NATS, store: ViewStore, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await _consume_once(nc, store, stop)
        except (TimeoutError, NatsError) as exc:
            log.warning("summary consumer interrupted, resuming: %s", exc)
            await asyncio.sleep(0.5)


async def _consume_once(nc: NATS, store: ViewStore, stop: asyncio.Event) -> None:
    sub = await nc.jetstream().pull_subscribe(
        "",
        durable=DURABLE,
        stream=subjects.AUDIT_SUMMARY_STREAM,
        config=ConsumerConfig(
            ack_policy=AckPolicy.ALL, deliver_policy=DeliverPolicy.ALL, ack_wait=30
        ),
    )
    while not stop.is_set():
        try:
            batch = await sub.fetch(BATCH, timeout=1.0)
        except NatsTimeoutError:
            continue
        if not batch:
            continue
        good = []
        for msg in batch:
            try:
                if msg.subject.startswith(CHECKPOINT_PREFIX):
                    store.add_checkpoint(msg.subject[len(CHECKPOINT_PREFIX) :], msg.data)
                else:
                    store.add([msg.data])
                good.append(msg)
            except BadSummaryError as exc:
                metrics.BAD_SUMMARIES.inc()
                log.error(
                    "dropping unreadable summary at seq %s: %s", msg.metadata.sequence.stream, exc
                )
        metrics.CONSUMED.inc(len(good))
        await batch[-1].ack()  # AckPolicy.ALL: acknowledges the whole batch
