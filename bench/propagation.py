"""How fast a published pack is enforced everywhere: commit in POLICY -> active at
every replica, over a LAN and over an injected WAN delay, and after a partition.

Starts the real topology with each region's leaf connection through a `WanLink`
(cordon_dev.wan), publishes `--publishes` revisions one after another and, for each,
takes the time from its commit in POLICY (the stream's timestamp) to the moment each
replica activated it (the replica's own `activated_at`, same machine clock). Then the
same with `--delay-ms` added each way on every leaf link. Last, cuts eu-west off for
`--partition-s`, publishes one revision meanwhile, heals, and reports how long eu-west
took to enforce it and how long its summaries took to reach the central view again.

    .venv/bin/python bench/propagation.py [--publishes 100] [--delay-ms 40] [--partition-s 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cordon.log.keys import SigningKey
from cordon.nats import subjects
from cordon.packs import signing
from cordon_dev.stack import DEV_API_KEY, DevStack
from replicator.publish import latest_revision, publish_signed

PACK_NAME = "default"


def _document(marker: str) -> dict[str, Any]:
    return {
        "pack": {"name": PACK_NAME, "version": f"bench-{marker}"},
        "policies": [
            {"name": "pii", "type": "output_filter", "action": "redact", "patterns": ["email"]}
        ],
    }


class Bench:
    def __init__(self, stack: DevStack) -> None:
        self.stack = stack
        assert stack.topology is not None
        self.central = stack.topology.central_endpoint("publisher")
        self.key = SigningKey.load(stack.policy_owner_key)
        self.http = httpx.Client(timeout=5)
        self.admin = {"authorization": f"Bearer {stack.tokens['admin']}"}

    def status(self, region: str) -> dict[str, Any]:
        url = self.stack.endpoints.gateways[region] + "/v1/cordon/policy"
        answer: dict[str, Any] = self.http.get(url, headers=self.admin).json()
        return answer

    async def publish(self, revision: int, marker: str) -> float:
        """Publish `revision`; its commit time in POLICY (Unix seconds)."""
        statement = signing.statement_bytes(
            _document(marker), PACK_NAME, revision, int(time.time()) + 86_400, ["*"]
        )
        published = await publish_signed(self.central, signing.sign(statement, [self.key]))
        nc = await self.central.connect()
        try:
            stored = await nc.jetstream().get_msg(subjects.POLICY_STREAM, published.stream_seq)
        finally:
            await nc.close()
        assert stored.time is not None
        return stored.time.timestamp()

    async def until_active(
        self, revision: int, regions: tuple[str, ...], limit_s: float
    ) -> dict[str, float]:
        """Each region's activation time of `revision` (its replica's word)."""
        found: dict[str, float] = {}
        deadline = time.monotonic() + limit_s
        while len(found) < len(regions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"revision {revision} not active in {set(regions) - set(found)}")
            for region in regions:
                if region not in found:
                    status = self.status(region)
                    if status["active_revision"] == revision:
                        found[region] = float(status["activated_at"])
            await asyncio.sleep(0.002)
        return found

    async def series(self, publishes: int, label: str) -> list[float]:
        delays: list[float] = []
        for n in range(publishes):
            revision = await latest_revision(self.central, PACK_NAME) + 1
            committed = await self.publish(revision, f"{label}-{n}")
            active = await self.until_active(revision, self.stack.regions, 30)
            delays += [at - committed for at in active.values()]
        return delays

    def summary_seen(self, record_id: str) -> bool:
        url = self.stack.endpoints.aggregator + "/v1/summaries"
        after = 0
        while True:
            answer = self.http.get(
                url,
                params={"region": "eu-west", "after_seq": after, "limit": 1000},
                headers={"authorization": f"Bearer {self.stack.tokens['auditor']}"},
            ).json()
            items = answer["items"]
            if any(item["id"] == record_id for item in items):
                return True
            if len(items) < 1000:
                return False
            after = items[-1]["stream_seq"]

    async def partition(self, seconds: float) -> tuple[float, float]:
        """(eu-west enforcing the revision published while it was cut off, its summaries
        at central again), each in seconds after the heal."""
        link = self.stack.wan["eu-west"]
        link.partition()
        try:
            await asyncio.sleep(seconds / 2)
            revision = await latest_revision(self.central, PACK_NAME) + 1
            await self.publish(revision, "partition")
            answer = self.http.post(
                self.stack.endpoints.gateways["eu-west"] + "/v1/chat/completions",
                headers={"authorization": f"Bearer {DEV_API_KEY}"},
                json={"model": "mock-gpt", "messages": [{"role": "user", "content": "cut off"}]},
            )
            record_id = answer.headers["x-cordon-record-id"]
            await asyncio.sleep(seconds / 2)
        finally:
            link.heal()
        healed = time.monotonic()
        await self.until_active(revision, ("eu-west",), 120)
        converged = time.monotonic() - healed
        while not self.summary_seen(record_id):
            if time.monotonic() - healed > 300:
                return converged, float("inf")
            await asyncio.sleep(0.25)
        return converged, time.monotonic() - healed


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _line(label: str, delays: list[float]) -> str:
    return (
        f"{label:<28} p50 {_ms(delays, 0.5):7.1f} ms   p99 {_ms(delays, 0.99):7.1f} ms"
        f"   max {max(delays) * 1000:7.1f} ms   ({len(delays)} activations)"
    )


async def run(args: argparse.Namespace, stack: DevStack) -> dict[str, Any]:
    bench = Bench(stack)
    lan = await bench.series(args.publishes, "lan")
    print(_line("commit -> active, LAN", lan), flush=True)
    for link in stack.wan.values():
        link.set_delay(args.delay_ms / 1000)
    wan = await bench.series(args.publishes, "wan")
    print(_line(f"commit -> active, +{args.delay_ms:.0f} ms WAN", wan), flush=True)
    for link in stack.wan.values():
        link.set_delay(0)
    converged, summaries = await bench.partition(args.partition_s)
    print(
        f"after a {args.partition_s:.0f} s partition of eu-west: its pack current"
        f" {converged:.2f} s after the heal, its summaries at central {summaries:.1f} s after"
    )
    return {
        "lan_p50_ms": _ms(lan, 0.5),
        "lan_p99_ms": _ms(lan, 0.99),
        "wan_p50_ms": _ms(wan, 0.5),
        "wan_p99_ms": _ms(wan, 0.99),
        "partition_converge_s": converged,
        "partition_summaries_s": summaries,
        "mean_lan_ms": statistics.mean(lan) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--publishes", type=int, default=100)
    parser.add_argument("--delay-ms", type=float, default=40.0, help="one-way, each leaf link")
    parser.add_argument("--partition-s", type=float, default=60.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    machine = platform.processor() or platform.machine()
    print(f"{platform.node()}: {machine}, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="cordon-propagation-") as root:
        stack = DevStack(Path(root), wan=True)
        try:
            stack.start()
            figures = asyncio.run(run(args, stack))
        finally:
            stack.stop()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
