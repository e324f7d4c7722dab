"""Durable pull consumers read batch by batch, without a task per message."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from cordon import jsoncodec

log = logging.getLogger("cordon.nats")


async def durable_batches(
    nc: NATS,
    stream: str,
    durable: str,
    config: ConsumerConfig,
    stop: asyncio.Event,
    size: int,
    wait_s: float = 1.0,
    idle: bool = False,
    have: int | None = None,
) -> AsyncIterator[list[Msg]]:
    """Batches from a durable pull consumer until `stop`; with `idle`, an empty batch
    each `wait_s` that passes quietly (for work on a clock, like checkpoints). `have`:
    the stream sequence up to which the reader already holds everything, for readers
    that keep their own store (see `_ensure_consumer`)."""
    await _ensure_consumer(nc.jetstream(), stream, durable, config, have)
    puller = _Puller(nc, f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}")
    await puller.start()
    try:
        while not stop.is_set():
            batch = await puller.fetch(size, wait_s)
            if batch or idle:
                yield batch
    finally:
        await puller.close()


async def _ensure_consumer(
    js: JetStreamContext,
    stream: str,
    durable: str,
    config: ConsumerConfig,
    have: int | None,
) -> None:
    """Create the durable, or replace it by one that starts where the reader must go on:
    after the old one's ack floor when the ack policy differs (the server cannot change
    it in place), or after `have` when the reader holds less than was acked (its own
    store was lost or rolled back)."""
    wanted = dataclasses.replace(config, durable_name=durable)
    try:
        info = await js.consumer_info(stream, durable)
    except NotFoundError:
        if have:
            wanted = _starting_at(wanted, have + 1)
        await js.add_consumer(stream, wanted)
        return
    acked = info.ack_floor.stream_seq if info.ack_floor and info.ack_floor.stream_seq else 0
    if have is not None and have < acked:
        start, why = have + 1, f"the reader holds only up to {have}"
    elif info.config.ack_policy != config.ack_policy:
        start, why = acked + 1, "the ack policy changes"
    else:
        return
    log.warning("replacing consumer %s on %s (%s); delivering from %s", durable, stream, why, start)
    await js.delete_consumer(stream, durable)
    await js.add_consumer(stream, _starting_at(wanted, start))


def _starting_at(config: ConsumerConfig, seq: int) -> ConsumerConfig:
    return dataclasses.replace(
        config, deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=seq
    )


def stream_seq(msg: Msg) -> int:
    """The stream sequence of a consumer delivery, read off its ack subject
    (`msg.metadata` builds a timestamp and dataclasses for it: a tenth of the audit
    index's CPU). `$JS.ACK.<stream>.<consumer>.<delivered>.<seq>.<cseq>.<ts>.<pending>`,
    or with `<domain>.<account hash>` after ACK and a random token at the end."""
    tokens = (msg.reply or "").split(".")
    return int(tokens[5] if len(tokens) == 9 else tokens[-5])


class _Puller:
    """Pull requests answered on one inbox subscription.

    nats-py's `fetch` waits for each message of a batch in a task of its own (~25 µs
    of CPU per message here); the sealer, the audit index and the aggregator read
    every record or summary, so they collect deliveries in a callback instead. A
    delivery that comes after its fetch gave up is kept for the next one, not lost.
    """

    def __init__(self, nc: NATS, next_subject: str) -> None:
        self._nc = nc
        self._next_subject = next_subject
        self._inbox = nc.new_inbox()
        self._ready: list[Msg] = []
        self._want = 0
        self._request = 0
        self._over = asyncio.Event()
        self._refusal: str | None = None
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(self._inbox + ".*", cb=self._on_msg)

    async def close(self) -> None:
        if self._sub is not None and self._nc.is_connected:
            await self._sub.unsubscribe()

    async def fetch(self, size: int, wait_s: float) -> list[Msg]:
        # What is there now (no_wait); only if that is nothing, wait for the first arrival.
        if len(self._ready) < size:
            await self._ask({"batch": size - len(self._ready), "no_wait": True}, size, wait_s)
        if not self._ready:
            await self._ask({"batch": size, "expires": int(wait_s * 1e9)}, 1, wait_s)
        batch, self._ready = self._ready, []
        return batch

    async def _ask(self, request: dict[str, object], want: int, wait_s: float) -> None:
        self._request += 1
        self._want, self._refusal = want, None
        self._over.clear()
        reply = f"{self._inbox}.{self._request}"
        await self._nc.publish(self._next_subject, jsoncodec.dumps(request), reply=reply)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._over.wait(), wait_s + 1.0)
        if self._refusal is not None:
            raise NatsError(f"pull request refused: {self._refusal}")

    async def _on_msg(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is None:
            self._ready.append(msg)
            if len(self._ready) >= self._want:
                self._over.set()
        elif status != "100" and msg.subject == f"{self._inbox}.{self._request}":
            # 404 no messages / 408 expired end the request; 409 says why it was refused.
            if status == "409":
                self._refusal = msg.headers.get("Description", "409") if msg.headers else "409"
            self._over.set()
