"""What the gateway adds to a call: gateway vs a direct call to the same mock provider.

Starts the real topology (central + one region, nats-server, sealer, replicator,
aggregator, mock provider), activates a pack with output redaction so policy runs
on every answer, then drives chat completions at each concurrency, first straight
at the mock provider and then through the gateway (policy + signed record committed
to JetStream before the answer). The gateway process is pinned to CPU 0; the load
generator, the mock and nats-server share CPU 1.

    .venv/bin/python bench/overhead.py [--requests 3000] [--concurrency 1 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cordon.devstack import DevStack
from replicator.publish import publish

PACK = {
    "pack": {"name": "default", "version": "1.0.0", "enabled": True},
    "policies": [
        {
            "name": "pii",
            "type": "output_filter",
            "action": "redact",
            "patterns": ["email", "phone", "ssn"],
        }
    ],
}
BODY = (
    b'{"model": "mock-gpt", "messages": [{"role": "user", "content": '
    b'"Summarise the quarterly figures for the board and mail them to cfo@example.com"}]}'
)


@dataclass
class Run:
    label: str
    concurrency: int
    latencies_ms: list[float]
    wall_s: float

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.wall_s


async def drive(
    url: str, headers: dict[str, str], requests: int, concurrency: int, label: str
) -> Run:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> float:
            started = time.perf_counter()
            async with session.post(url, data=BODY, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{label}: HTTP {response.status}")
            return (time.perf_counter() - started) * 1000

        for _ in range(min(200, requests)):  # warm up connections and code paths
            await one()
        latencies: list[float] = []
        remaining = requests

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                latencies.append(await one())

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return Run(label, concurrency, latencies, time.perf_counter() - started)


def wait_for_pack(stack: DevStack, timeout: float = 10.0) -> None:
    import json
    import urllib.request

    status_url = stack.endpoints.gateways["eu-west"] + "/v1/cordon/policy"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(status_url) as response:
            if json.load(response)["active_revision"] >= 1:
                return
        time.sleep(0.1)
    raise RuntimeError("the bench pack was not activated")


def stop_off_path(stack: DevStack) -> None:
    """Stop what is not on the request path, so the figure is the gateway's own.

    On a real deployment the sealer, the central region and its processes run on
    other machines; here they would share the load generator's core.
    """
    for name in list(stack.processes):
        if not name.startswith(("gateway-", "mock-provider")):
            stack.processes[name].stop()
    assert stack.nats is not None
    stack.nats.stop("central")


def pin(pid: int, cpus: set[int]) -> None:
    try:
        os.sched_setaffinity(pid, cpus)
    except (AttributeError, OSError) as exc:
        print(f"(could not pin pid {pid} to {cpus}: {exc})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10])
    parser.add_argument(
        "--full-topology",
        action="store_true",
        help="keep sealer, replicator, aggregator and central NATS running on these 2 cores",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cordon-bench-") as root:
        stack = DevStack(Path(root), regions=("eu-west",))
        stack.start()
        try:
            asyncio.run(publish(stack.topology.central_url, PACK))  # type: ignore[union-attr]
            wait_for_pack(stack)
            if not args.full_topology:
                stop_off_path(stack)
            cpus = sorted(os.sched_getaffinity(0))
            gateway_cpu, rest = {cpus[0]}, set(cpus[1:]) or {cpus[0]}
            pin(stack.processes["gateway-eu-west"].proc.pid, gateway_cpu)  # type: ignore[union-attr]
            for name, proc in stack.processes.items():
                if name != "gateway-eu-west" and proc.running:
                    pin(proc.proc.pid, rest)
            assert stack.nats is not None
            for proc in stack.nats.processes.values():
                if proc.running:
                    pin(proc.proc.pid, rest)  # type: ignore[union-attr]
            pin(os.getpid(), rest)
            results = asyncio.run(measure(stack, args.requests, args.concurrency))
        finally:
            stack.stop()
    topology = (
        "full topology running" if args.full_topology else "sealer/central stopped (off the path)"
    )
    report(results, args.requests, topology)


async def measure(stack: DevStack, requests: int, levels: list[int]) -> list[tuple[Run, Run]]:
    direct_url = stack.endpoints.mock_provider + "/chat/completions"
    gateway_url = stack.endpoints.gateways["eu-west"] + "/v1/chat/completions"
    headers = {
        "content-type": "application/json",
        "authorization": f"Bearer {stack.endpoints.api_key}",
    }
    pairs = []
    for concurrency in levels:
        direct = await drive(direct_url, headers, requests, concurrency, "direct")
        gateway = await drive(gateway_url, headers, requests, concurrency, "gateway")
        pairs.append((direct, gateway))
    return pairs


def report(pairs: list[tuple[Run, Run]], requests: int, topology: str) -> None:
    print(f"\nchat completions, {requests} requests per row, {topology}")
    print("policy (output redaction) on, signed record committed to RECORDS before each answer")
    print(f"{'target':<10}{'c':>4}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}")
    for direct, gateway in pairs:
        for run in (direct, gateway):
            print(
                f"{run.label:<10}{run.concurrency:>4}{run.pct(0.5):>10.3f}{run.pct(0.99):>10.3f}{run.rps:>10.0f}"
            )
    print("\nadded by the gateway (gateway minus direct)")
    print(f"{'c':>4}{'p50 ms':>10}{'p99 ms':>10}")
    for direct, gateway in pairs:
        print(
            f"{gateway.concurrency:>4}{gateway.pct(0.5) - direct.pct(0.5):>10.3f}"
            f"{gateway.pct(0.99) - direct.pct(0.99):>10.3f}"
        )
    print(f"\n(mean gateway latency c=1: {statistics.mean(pairs[0][1].latencies_ms):.3f} ms)")


if __name__ == "__main__":
    main()
