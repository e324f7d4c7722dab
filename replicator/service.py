"""`cordon replicator run`: one fan-out per region, a heartbeat, and /metrics.

Run two or more for availability: all of them contend for the lease
(replicator.lease), and only the holder does the work; the others stand by and take
over within a few seconds of the holder dying (at once when it stops cleanly).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from nats.aio.client import Client as NATS
from prometheus_client import start_http_server

from cordon.errors import ConfigError, PackError
from cordon.nats import Endpoint, connect
from cordon.packs import signing
from cordon.settings import load_json
from replicator.fanout import RegionFanout, heartbeat
from replicator.lease import Lease, default_holder
from replicator.observer import observe_replicas
from replicator.rollout import RolloutController

__all__ = ["Replicator", "ReplicatorSettings", "build_replicator", "run", "serve"]

log = logging.getLogger("cordon.replicator")


@dataclass(frozen=True)
class ReplicatorSettings:
    central_nats: Endpoint
    regions: list[str]
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9480
    pack_trust: tuple[str, ...] = ()
    instance: str = ""  # names the lease holder; default host-pid

    @classmethod
    def load(cls, path: Path) -> ReplicatorSettings:
        return load_json(
            path,
            lambda raw: cls(
                central_nats=Endpoint.from_settings(raw["central_nats"], path.parent),
                regions=[str(r) for r in raw["regions"]],
                metrics_host=str(raw.get("metrics_host", "127.0.0.1")),
                metrics_port=int(raw.get("metrics_port", 9480)),
                pack_trust=tuple(str(k) for k in raw.get("pack_trust", ())),
                instance=str(raw.get("instance") or default_holder()),
            ),
        )


@dataclass(frozen=True)
class Replicator:
    """One replicator instance, given its collaborators: the central NATS connection
    (through which it reaches every region's domain), the lease it contends for, the
    packs' trust root and the regions it serves. `build_replicator` makes the
    production set from settings."""

    nc: NATS
    lease: Lease
    trusted: Mapping[str, bytes]
    regions: list[str]
    instance: str

    async def run(self, stop: asyncio.Event) -> None:
        # The lease is given back only after the work has stopped, never with a write
        # still in flight.
        released = asyncio.Event()

        async def work() -> None:
            try:
                await self._while_active(stop)
            finally:
                released.set()

        await asyncio.gather(self.lease.run(released), work())

    async def _while_active(self, stop: asyncio.Event) -> None:
        """Do the replicator's work for as long as this instance holds the lease, every
        time it does."""
        while not stop.is_set():
            await _first(self.lease.held, stop)
            if stop.is_set():
                return
            duty = asyncio.Event()
            guard = asyncio.create_task(_guard(self.lease, stop, duty))
            try:
                await self._serve_term(duty)
            finally:
                guard.cancel()
            log.info("%s: replication stopped", self.instance)

    async def _serve_term(self, duty: asyncio.Event) -> None:
        nc, regions, valid = self.nc, self.regions, self.lease.valid
        rollouts = RolloutController(nc, regions, self.trusted, valid)
        await asyncio.gather(
            *(RegionFanout(nc, r, self.trusted, valid, rollouts).run(duty) for r in regions),
            rollouts.run(duty),
            heartbeat(nc, regions, duty, may_write=valid),
            observe_replicas(nc, regions, duty),
        )


async def build_replicator(settings: ReplicatorSettings) -> Replicator:
    """The production replicator: connected to central as its own NATS identity."""
    try:
        trusted = signing.trust_root(settings.pack_trust)
    except PackError as exc:
        raise ConfigError(f"pack_trust: {exc}") from exc
    nc = await connect(settings.central_nats, "replicator")
    instance = settings.instance or default_holder()
    return Replicator(nc, Lease(nc, instance), trusted, settings.regions, instance)


async def serve(settings: ReplicatorSettings, stop: asyncio.Event) -> None:
    replicator = await build_replicator(settings)
    try:
        await replicator.run(stop)
    finally:
        await replicator.nc.close()


async def _guard(lease: Lease, stop: asyncio.Event, duty: asyncio.Event) -> None:
    """End this term of duty as soon as the lease is no longer valid (or we stop)."""
    while not stop.is_set() and lease.valid():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)
    duty.set()


async def _first(event: asyncio.Event, stop: asyncio.Event) -> None:
    waits = [asyncio.create_task(event.wait()), asyncio.create_task(stop.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()


def run(config_path: Path) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = ReplicatorSettings.load(config_path)
    start_http_server(settings.metrics_port, settings.metrics_host)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    asyncio.run(main())
