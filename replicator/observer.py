"""What the replicas say they enforce, as metrics: end-to-end propagation (commit in
POLICY to activation at a replica), each replica's revision and report age, and how
many replicas of each region went silent.

Read every couple of seconds from each region's `applied` bucket (replicator.status),
so a slow or stopped replica shows up here whatever the replicator's own writes did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError

from cordon.errors import PublishError, RegionWriteError
from replicator import metrics
from replicator.status import applied_reports, published_packs

__all__ = ["observe_replicas"]

log = logging.getLogger("cordon.replicator.observer")
STALE_AFTER_S = 60.0


async def observe_replicas(
    nc: NATS, regions: list[str], stop: asyncio.Event, every_s: float = 2.0
) -> None:
    seen: set[tuple[str, str, str, int]] = set()  # each activation is observed once
    while not stop.is_set():
        try:
            await _observe(nc, regions, seen)
        except (NatsError, TimeoutError, PublishError, RegionWriteError) as exc:
            log.debug("replica reports not read: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


async def _observe(nc: NATS, regions: list[str], seen: set[tuple[str, str, str, int]]) -> None:
    published = {p.pack: p for p in await published_packs(nc)}
    now = time.time()
    for region in regions:
        stale = 0
        for report in await applied_reports(nc, region):
            metrics.REPLICA_REVISION.labels(region, report.replica).set(report.revision)
            age = now - report.reported_at if report.reported_at else float("inf")
            metrics.REPLICA_REPORT_AGE.labels(region, report.replica).set(age)
            stale += age >= STALE_AFTER_S
            pack = published.get(report.pack)
            key = (region, report.replica, report.pack, report.revision)
            if pack is None or pack.revision != report.revision or report.activated_at is None:
                continue
            if key not in seen:
                seen.add(key)
                delay = max(0.0, report.activated_at - pack.published_at)
                metrics.PROPAGATION.labels(region).observe(delay)
        metrics.STALE_REPLICAS.labels(region).set(stale)
