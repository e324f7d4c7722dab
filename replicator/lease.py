"""Exactly one active replicator: a lease in the central `replicator_lease` bucket.

The bucket's entries age out after `TTL_S` (the bucket's max age, kept by the server),
so a holder that dies stops refreshing and its lease disappears on the server's
clock, not on any instance's. An instance takes the lease by *creating* the key (only
one create can win) and keeps it by compare-and-set updates on the revision it last
wrote; an update that loses means someone else holds it now.

Holding is judged on the holder's own monotonic clock, conservatively: the lease is
valid until `TTL_S - MARGIN_S` after the last refresh was *sent*, which is before the
server stamped it, so an instance that stalls (GC, SIGSTOP, a slow network) stops
counting itself active before the server lets anyone else in. Every regional write
checks `valid()` first; the writes are also compare-and-set, so even a clock that lies
cannot make a region skip or repeat a revision.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from cordon.nats import subjects
from replicator import metrics

__all__ = ["Lease", "default_holder"]

log = logging.getLogger("cordon.replicator.lease")
KEY = "active"
TTL_S = subjects.REPLICATOR_LEASE_TTL_S
MARGIN_S = 1.0
REFRESH_EVERY_S = 1.0
TRY_EVERY_S = 0.5


def default_holder() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Lease:
    """Take, keep and give back the lease; `held` is set while this instance holds it."""

    def __init__(self, nc: NATS, holder: str) -> None:
        self.nc = nc
        self.holder = holder
        self.held = asyncio.Event()
        self.lost = asyncio.Event()
        self._revision = 0
        self._valid_until = 0.0

    def valid(self) -> bool:
        return self.held.is_set() and time.monotonic() < self._valid_until

    async def run(self, stop: asyncio.Event) -> None:
        """Try to take the lease, keep it while we can, and hand it back on `stop`."""
        kv = await self.nc.jetstream().key_value(subjects.REPLICATOR_LEASE_BUCKET)
        try:
            while not stop.is_set():
                await self._step(kv)
                every = REFRESH_EVERY_S if self.held.is_set() else TRY_EVERY_S
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), every)
        finally:
            await self._release(kv)

    async def _step(self, kv: KeyValue) -> None:
        value = json.dumps({"holder": self.holder, "at": time.time()}).encode()
        sent = time.monotonic()
        try:
            if self.held.is_set():
                self._revision = await kv.update(KEY, value, last=self._revision)
            else:
                self._revision = await kv.create(KEY, value)
        except KeyWrongLastSequenceError:
            self._drop("another instance holds the lease")
            return
        except (NatsError, TimeoutError) as exc:
            if self.held.is_set() and time.monotonic() >= self._valid_until:
                self._drop(f"could not refresh the lease in time: {exc}")
            return
        self._valid_until = sent + TTL_S - MARGIN_S
        if not self.held.is_set():
            log.info("%s holds the replicator lease: active", self.holder)
            self.lost.clear()
            self.held.set()
            metrics.ACTIVE.set(1)

    def _drop(self, why: str) -> None:
        if self.held.is_set():
            log.warning("%s lost the replicator lease (%s): standing by", self.holder, why)
            self.held.clear()
            self.lost.set()
            metrics.ACTIVE.set(0)

    async def _release(self, kv: KeyValue) -> None:
        """On a clean stop, delete the key so a standby takes over at once, not after TTL_S."""
        if not self.held.is_set():
            return
        self._drop("stopping")
        with contextlib.suppress(NatsError, TimeoutError, KeyWrongLastSequenceError):
            await kv.delete(KEY, last=self._revision)
