"""`cordon gateway seal`: read `RECORDS` in order, publish summaries to `SUMMARY`.

One sealer per region. It is the only reader of full records besides the audit
API, and what it writes is metadata only (gateway.summaries).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from gateway import subjects, summaries
from gateway.runtime import connect
from gateway.settings import load_json

log = logging.getLogger("cordon.sealer")
DURABLE = "sealer"
BATCH = 256


@dataclass(frozen=True)
class SealerSettings:
    region: str
    audit_nats_url: str
    xr_nats_url: str
    pseudonym_key: bytes

    @classmethod
    def load(cls, path: Path) -> SealerSettings:
        return load_json(
            path,
            lambda raw: cls(
                region=str(raw["region"]),
                audit_nats_url=str(raw["audit_nats_url"]),
                xr_nats_url=str(raw["xr_nats_url"]),
                pseudonym_key=str(raw["pseudonym_key"]).encode(),
            ),
        )


class Sealer:
    def __init__(self, settings: SealerSettings) -> None:
        self.settings = settings

    async def run(self, stop: asyncio.Event) -> None:
        audit = await connect(self.settings.audit_nats_url, f"sealer-{self.settings.region}-audit")
        xr = await connect(self.settings.xr_nats_url, f"sealer-{self.settings.region}-xr")
        try:
            while not stop.is_set():
                try:
                    await self._seal(audit.jetstream(), xr.jetstream(), stop)
                except (TimeoutError, NatsError) as exc:
                    log.warning("sealer interrupted, resuming: %s", exc)
                    await asyncio.sleep(0.5)
        finally:
            await audit.close()
            await xr.close()

    async def _seal(self, audit_js: object, xr_js: object, stop: asyncio.Event) -> None:
        sub = await audit_js.pull_subscribe(  # type: ignore[attr-defined]
            "",
            durable=DURABLE,
            stream=subjects.RECORDS_STREAM,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                max_ack_pending=BATCH * 4,
                ack_wait=30,
            ),
        )
        while not stop.is_set():
            try:
                batch = await sub.fetch(BATCH, timeout=1.0)
            except NatsTimeoutError:
                continue
            await self._publish_batch(xr_js, batch)

    async def _publish_batch(self, xr_js: object, batch: list[Msg]) -> None:
        region = self.settings.region
        summaries_out = [
            summaries.summarize(
                msg.data, msg.metadata.sequence.stream, region, self.settings.pseudonym_key
            )
            for msg in batch
        ]
        await asyncio.gather(
            *(
                xr_js.publish(  # type: ignore[attr-defined]
                    subjects.summary_subject(region, str(s.get("replica") or "unknown")),
                    summaries.encode(s),
                    headers={"Nats-Msg-Id": f"sum-{s['stream_seq']}"},
                )
                for s in summaries_out
            )
        )
        for msg in batch:
            await msg.ack()


def run(config_path: Path) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = SealerSettings.load(config_path)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Sealer(settings).run(stop)

    asyncio.run(main())
