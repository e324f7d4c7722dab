"""Durable batches read with our own pull requests, against a real nats-server."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig

from cordon.nats import StreamPublisher, durable_batches, stream_seq

CONFIG = ConsumerConfig(ack_policy=AckPolicy.ALL, deliver_policy=DeliverPolicy.ALL, ack_wait=5)


async def _fill(nc: NATS, stream: str, count: int) -> None:
    await nc.jetstream().add_stream(StreamConfig(name=stream, subjects=[f"{stream}.>"]))
    await StreamPublisher(nc).publish_many(
        [(f"{stream}.x", f"m{i}".encode(), None) for i in range(1, count + 1)]
    )


async def _read(nc: NATS, stream: str, want: int, size: int) -> list[list[tuple[int, bytes]]]:
    """Batches until `want` messages were seen, acknowledging each batch.

    Acknowledged with `ack_sync`: the next reader looks at the consumer's ack floor, and
    a fire-and-forget ack may not have reached the server by then."""
    stop, seen, batches = asyncio.Event(), 0, []
    async for batch in durable_batches(nc, stream, "reader", CONFIG, stop, size, wait_s=0.5):
        batches.append([(stream_seq(m), m.data) for m in batch])
        assert all(stream_seq(m) == m.metadata.sequence.stream for m in batch)
        await batch[-1].ack_sync()
        seen += len(batch)
        if seen >= want:
            stop.set()
    return batches


async def test_every_message_once_in_order_in_batches_of_at_most_size(bare_nats: NATS) -> None:
    await _fill(bare_nats, "BATCHES", 1000)
    batches = await _read(bare_nats, "BATCHES", 1000, size=128)
    flat = [item for batch in batches for item in batch]
    assert flat == [(i, f"m{i}".encode()) for i in range(1, 1001)]
    assert max(len(batch) for batch in batches) == 128


async def test_a_durable_resumes_after_what_was_acknowledged(bare_nats: NATS) -> None:
    await _fill(bare_nats, "RESUME", 300)
    first = await _read(bare_nats, "RESUME", 100, size=100)
    assert first[-1][-1][0] == 100
    rest = await _read(bare_nats, "RESUME", 200, size=64)
    assert [seq for batch in rest for seq, _ in batch] == list(range(101, 301))


async def test_idle_batches_come_while_nothing_is_pending(bare_nats: NATS) -> None:
    await bare_nats.jetstream().add_stream(StreamConfig(name="QUIET", subjects=["QUIET.>"]))
    stop, quiet = asyncio.Event(), 0
    batches = durable_batches(bare_nats, "QUIET", "clock", CONFIG, stop, 16, 0.2, idle=True)
    async for batch in batches:
        assert batch == []
        quiet += 1
        if quiet == 3:
            stop.set()
    assert quiet == 3


async def test_a_durable_with_another_ack_policy_is_replaced_where_it_left_off(
    bare_nats: NATS,
) -> None:
    await _fill(bare_nats, "POLICY", 120)
    explicit = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL)
    sub = await bare_nats.jetstream().pull_subscribe("", "reader", "POLICY", config=explicit)
    for msg in await sub.fetch(50, timeout=2):
        await msg.ack_sync()
    await sub.unsubscribe()
    rest = await _read(bare_nats, "POLICY", 70, size=32)
    assert [seq for batch in rest for seq, _ in batch] == list(range(51, 121))
    info = await bare_nats.jetstream().consumer_info("POLICY", "reader")
    assert info.config.ack_policy == AckPolicy.ALL


async def test_a_reader_that_lost_its_store_is_delivered_again_from_what_it_holds(
    bare_nats: NATS,
) -> None:
    await _fill(bare_nats, "REFILL", 100)
    await _read(bare_nats, "REFILL", 100, size=50)  # all acknowledged
    stop, seqs = asyncio.Event(), []
    async for batch in durable_batches(bare_nats, "REFILL", "reader", CONFIG, stop, 25, have=40):
        seqs += [stream_seq(m) for m in batch]
        await batch[-1].ack()
        if seqs[-1] == 100:
            stop.set()
    assert seqs == list(range(41, 101))
