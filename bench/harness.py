"""What the latency benches share: the load generator, the pinning of the topology to
the two cores, and the results.

A figure is the gateway's own only if the gateway has a core to itself and what is off
the request path is not competing with the load for the other, so every bench that
compares the gateway with a direct call sets the topology up the same way (here).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.procstat import cpu_seconds
from cordon_dev.stack import DevStack

__all__ = ["Run", "drive", "isolate", "pin", "rss_mb", "stop_off_path"]


@dataclass
class Run:
    label: str
    concurrency: int
    latencies_ms: list[float]
    wall_s: float
    cpu_us: float | None = None  # the measured process's CPU per call, if one was named

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.wall_s

    def extend(self, other: Run) -> None:
        """Add `other`'s calls: one target measured in several blocks, alternating with
        another, is still one row (CPU weighted by the calls of each block)."""
        if other.cpu_us is not None:
            ours = (self.cpu_us or 0.0) * len(self.latencies_ms)
            calls = len(self.latencies_ms) + len(other.latencies_ms)
            self.cpu_us = (ours + other.cpu_us * len(other.latencies_ms)) / calls
        self.latencies_ms.extend(other.latencies_ms)
        self.wall_s += other.wall_s


async def drive(
    url: str,
    headers: dict[str, str],
    body: bytes,
    requests: int,
    concurrency: int,
    label: str,
    *,
    stream: bool = False,
    cpu_of: int | None = None,
    session: aiohttp.ClientSession | None = None,
    warmup: int = 200,
    check: Callable[[bytes], None] | None = None,
) -> Run:
    """Latency per call (to the first body byte when `stream`), `concurrency` at a time;
    with `cpu_of`, also that process's CPU time per call (steadier than latency on a
    shared VM). A `session` given is reused (its connections stay warm between blocks);
    `check` sees each answer's body, as HTTP 200 does not always mean success."""
    if session is None:
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as owned:
            return await drive(
                url,
                headers,
                body,
                requests,
                concurrency,
                label,
                stream=stream,
                cpu_of=cpu_of,
                session=owned,
                warmup=warmup,
                check=check,
            )

    async def one() -> float:
        started = time.perf_counter()
        async with session.post(url, data=body, headers=headers) as response:
            if response.status != 200:
                raise RuntimeError(f"{label}: HTTP {response.status}: {await response.text()}")
            if stream:
                await response.content.readany()
                first = time.perf_counter()
                await response.read()
                return (first - started) * 1000
            answer = await response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if check is not None:
            check(answer)
        return elapsed

    for _ in range(min(warmup, requests)):  # warm connections and code paths
        await one()
    latencies: list[float] = []
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            latencies.append(await one())

    cpu_before = cpu_seconds(cpu_of) if cpu_of is not None else None
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    cpu_after = cpu_seconds(cpu_of) if cpu_of is not None else None
    cpu_us = None
    if cpu_before is not None and cpu_after is not None:
        cpu_us = (cpu_after - cpu_before) / requests * 1e6
    return Run(label, concurrency, latencies, wall, cpu_us)


def stop_off_path(stack: DevStack, keep: tuple[str, ...] = ("gateway-", "mock-provider")) -> None:
    """Stop what is not on the request path (every process not named by a prefix in
    `keep`, and central's NATS), so the figure is the gateway's own.

    On a real deployment the sealer, the central region and its processes run on
    other machines; here they would share the load generator's core.
    """
    for name in list(stack.processes):
        if not name.startswith(keep):
            stack.processes[name].stop()
    assert stack.nats is not None
    stack.nats.stop("central")


def pin(pid: int, cpus: Collection[int]) -> None:
    try:
        os.sched_setaffinity(pid, cpus)
    except (AttributeError, OSError) as exc:
        print(f"(could not pin pid {pid} to {set(cpus)}: {exc})")


def isolate(stack: DevStack, region: str = "eu-west") -> tuple[int, set[int], set[int]]:
    """Pin the region's gateway to the first CPU, and everything else still running
    (this process, the upstreams, nats-server) to the others, so the gateway's figures
    are not the load generator's. Returns the gateway's pid, its CPUs and the rest's."""
    gateway = stack.processes[f"gateway-{region}"].proc
    assert gateway is not None and stack.nats is not None
    cpus = sorted(os.sched_getaffinity(0))
    own, rest = {cpus[0]}, set(cpus[1:]) or {cpus[0]}
    pin(gateway.pid, own)
    for managed in [*stack.processes.values(), *stack.nats.processes.values()]:
        proc = managed.proc
        if managed.running and proc is not None and proc is not gateway:
            pin(proc.pid, rest)
    pin(os.getpid(), rest)
    return gateway.pid, own, rest


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")
