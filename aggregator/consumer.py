"""Consume `AUDIT_SUMMARY` into the view store with a durable consumer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from aggregator import metrics
from aggregator.store import ViewStore
from aggregator.witness import RegionWitness, Witness
from cordon.errors import BadSummaryError, SignatureError
from cordon.log import checkpoints, summary_chain
from cordon.log.summary_chain import Candidate
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
            metrics.PENDING.set(_pending(batch[-1]))

    await keep_running("summary consumer", store_batches, stop)


def _store(store: ViewStore, witness: Witness, batch: list[Msg]) -> None:
    """Candidate summaries and the checkpoints that settle them, then the witness state
    they lead to: all stored before the batch is acknowledged, so a redelivery repeats
    nothing."""
    waiting: list[Candidate] = []
    touched: set[str] = set()
    stored = 0
    for msg in batch:
        try:
            if msg.subject.startswith(CHECKPOINT_PREFIX):
                region = _checkpoint_region(msg)
                store.add_candidates(waiting)  # what the checkpoint may settle
                waiting = []
                _judge(store, witness.region(region), msg.data)
            else:
                candidate = _candidate(msg)
                region = str(candidate.summary["region"])
                if _waits(store, witness.region(region), candidate):
                    waiting.append(candidate)
            touched.add(region)
            stored += 1
        except BadSummaryError as exc:
            metrics.BAD_SUMMARIES.inc()
            log.error("dropping unreadable summary at seq %s: %s", stream_seq(msg), exc)
    store.add_candidates(waiting)
    for region in touched:
        region_witness = witness.region(region)
        metrics.SUMMARY_GAPS.labels(region).set(region_witness.gaps)
        store.save_witness(region, region_witness.state())
    metrics.CONSUMED.inc(stored)


def _pending(msg: Msg) -> int:
    """What the stream still holds for us after `msg`: the last token of its ack subject."""
    tokens = (msg.reply or "").split(".")
    try:
        return int(tokens[8] if len(tokens) == 9 else tokens[-2])  # as in `stream_seq`
    except (ValueError, IndexError):
        return 0


def _candidate(msg: Msg) -> Candidate:
    """A summary, whose region is the one its subject names, and its chain link.

    Only a region's sealer may publish on `cordon.sum.<region>.>` (its NATS identity
    allows no other region's), so the subject says where a summary came from; a body
    that claims another region is refused, not believed. Who in the region sent it is
    for the region's next checkpoint to settle."""
    region = subjects.summary_region(msg.subject)
    if region is None:
        raise BadSummaryError(f"not a summary subject: {msg.subject}")
    summary = ViewStore.parse(msg.data)
    if summary.get("region") != region:
        claimed = summary.get("region")
        raise BadSummaryError(f"summary claims region {claimed!r} on {region}'s subject")
    return summary_chain.candidate(summary, msg.data)


def _checkpoint_region(msg: Msg) -> str:
    """The region a checkpoint's subject names, which its note must name too."""
    region = msg.subject[len(CHECKPOINT_PREFIX) :]
    try:
        stated = checkpoints.unverified(msg.data)
    except SignatureError:
        return region  # the witness reports it as unreadable
    if stated.region != region:
        raise BadSummaryError(f"checkpoint for {stated.region} on {region}'s subject")
    return region


def _waits(store: ViewStore, region: RegionWitness, candidate: Candidate) -> bool:
    """Whether a candidate waits for a checkpoint: not if its sequence is settled, in
    which case it is either the accepted summary again or a forgery."""
    if candidate.stream_seq > region.tree.size:
        region.learn(candidate.summary)
        return True
    if store.accepted_link(region.region, candidate.stream_seq) != candidate.link:
        metrics.SUMMARIES_REJECTED.labels(region.region).inc()
        log.error(
            "witness: %s summary %s is not the one its checkpoint settled: rejected",
            region.region,
            candidate.stream_seq,
        )
    return False


def _judge(store: ViewStore, region: RegionWitness, raw: bytes) -> None:
    judgement = region.checkpoint(
        raw, lambda after, upto: store.candidates(region.region, after, upto)
    )
    if judgement is None:
        return
    store.settle(raw, judgement, region.state())
    verdict = judgement.verdict
    newest = max((str(c.summary.get("ts") or "") for c in judgement.accepted), default="")
    if newest and judgement.settles:
        with contextlib.suppress(ValueError):
            metrics.NEWEST_SUMMARY.labels(verdict.region).set(
                datetime.fromisoformat(newest).timestamp()
            )
    metrics.SUMMARIES_REJECTED.labels(verdict.region).inc(verdict.rejected)
    if verdict.rejected:
        log.error(
            "witness: %s checkpoint %s: %s summaries the sealer's chain does not reach, rejected",
            verdict.region,
            verdict.size,
            verdict.rejected,
        )
    if verdict.verified:
        metrics.CHECKPOINTS_VERIFIED.labels(verdict.region).inc()
    else:
        metrics.CHECKPOINTS_FAILED.labels(verdict.region).inc()
        log.error(
            "witness: %s checkpoint %s failed: %s", verdict.region, verdict.size, verdict.reason
        )
