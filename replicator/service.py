"""`cordon replicator run`: one fan-out per region, a heartbeat, and /metrics."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import start_http_server

from cordon.errors import ConfigError, PackError
from cordon.nats import Endpoint, connect
from cordon.packs import signing
from cordon.settings import load_json
from replicator.fanout import RegionFanout, heartbeat
from replicator.observer import observe_replicas


@dataclass(frozen=True)
class ReplicatorSettings:
    central_nats: Endpoint
    regions: list[str]
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9480
    pack_trust: tuple[str, ...] = ()

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
            ),
        )


async def serve(settings: ReplicatorSettings, stop: asyncio.Event) -> None:
    try:
        trusted = signing.trust_root(settings.pack_trust)
    except PackError as exc:
        raise ConfigError(f"pack_trust: {exc}") from exc
    nc = await connect(settings.central_nats, "replicator")
    try:
        await asyncio.gather(
            *(RegionFanout(nc, region, trusted).run(stop) for region in settings.regions),
            heartbeat(nc, settings.regions, stop),
            observe_replicas(nc, settings.regions, stop),
        )
    finally:
        await nc.close()


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
