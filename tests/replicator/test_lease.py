"""The replicator lease: one holder at a time, a crashed holder replaced after the
TTL, and never two instances that both count themselves active."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from nats.aio.client import Client as NATS

from cordon.nats import streams
from replicator.lease import TTL_S, Lease


async def _run(lease: Lease, stop: asyncio.Event) -> asyncio.Task[None]:
    return asyncio.create_task(lease.run(stop))


@pytest.mark.timeout(30)
async def test_one_holder_and_a_crashed_one_is_replaced_without_overlap(bare_nats: NATS) -> None:
    await streams.ensure_central(bare_nats.jetstream())
    first, second = Lease(bare_nats, "first"), Lease(bare_nats, "second")
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    crash = await _run(first, stop_first)
    await asyncio.wait_for(first.held.wait(), 5)
    standby = await _run(second, stop_second)
    try:
        for _ in range(40):  # two seconds side by side: the first keeps it
            assert first.valid() and not second.valid()
            await asyncio.sleep(0.05)

        crash.cancel()  # dies without giving the lease back
        with contextlib.suppress(asyncio.CancelledError):
            await crash
        crashed_at = time.monotonic()
        while not second.held.is_set():
            assert time.monotonic() - crashed_at < TTL_S + 3
            await asyncio.sleep(0.02)
        assert not first.valid()  # it stopped counting itself active before anyone took over
        print(f"taken over {time.monotonic() - crashed_at:.1f} s after the holder died")
    finally:
        stop_second.set()
        await asyncio.wait_for(standby, 5)


@pytest.mark.timeout(30)
async def test_a_clean_stop_hands_over_at_once(bare_nats: NATS) -> None:
    await streams.ensure_central(bare_nats.jetstream())
    kv = await bare_nats.jetstream().key_value("replicator_lease")
    with contextlib.suppress(Exception):
        await kv.purge("active")
    first, second = Lease(bare_nats, "first"), Lease(bare_nats, "second")
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    holder = await _run(first, stop_first)
    await asyncio.wait_for(first.held.wait(), 5)
    standby = await _run(second, stop_second)
    stop_first.set()
    await asyncio.wait_for(holder, 5)
    stopped_at = time.monotonic()
    await asyncio.wait_for(second.held.wait(), 3)
    assert time.monotonic() - stopped_at < TTL_S - 1
    stop_second.set()
    await asyncio.wait_for(standby, 5)
