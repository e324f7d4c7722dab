"""What the gateway adds to an MCP tool call: `tools/call` through `/mcp/dev-tools` vs
the same call straight at the dev tool server.

Starts the real topology (one region) with the baseline pack, which declares the dev
tool server (cordon_dev/tool_server.py) as `dev-tools`, stops what is off the request
path (sealer, audit API, replicator, aggregator, mock provider, central), and pins the
gateway to CPU 0 and the load generator, tool server and nats-server to CPU 1, as
bench/overhead.py does. Each call is `echo`: through the gateway it is authenticated,
decided on, its arguments and result pass the pack's rules, and two signed records are
committed to the region's RECORDS stream (the intent before the tool runs, the outcome
before the result is released).

Direct and gateway calls alternate in blocks (direct, gateway, gateway, direct, ...)
so the VM's drift weighs on both alike. Reported: latency percentiles of each, the
latency added per call (gateway p50 minus direct p50 at concurrency 1), the gateway's
CPU per call (from /proc) and so its tool calls per second per core, and its own
`cordon_gateway_tool_overhead_seconds` over the same calls.

    .venv/bin/python bench/tools.py [--requests 3000] [--concurrency 1 10] [--blocks 6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Run, drive, isolate, stop_off_path
from cordon_dev.stack import DEV_TOOLS, DevStack

REGION = "eu-west"
PROTOCOL = "2025-06-18"
TEXT = "quarterly figures for the board"
BODY = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": TEXT}},
    }
).encode()
HEADERS = {
    "content-type": "application/json",
    "accept": "application/json, text/event-stream",
    "mcp-protocol-version": PROTOCOL,
}
OVERHEAD = "cordon_gateway_tool_overhead_seconds"


def answer_of(body: bytes) -> dict[str, object]:
    """The JSON-RPC message in a Streamable HTTP answer: JSON, or (as the dev tool
    server answers) one SSE `message` event carrying it."""
    text = body.decode()
    if text.lstrip().startswith("{"):
        message = json.loads(text)
    else:
        data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
        if not data:
            raise RuntimeError(f"no message in the answer: {text[:300]!r}")
        message = json.loads(data[-1])
    if not isinstance(message, dict):
        raise RuntimeError(f"not a JSON-RPC message: {text[:300]!r}")
    return message


def check_echo(body: bytes) -> None:
    """Each answer must be the tool's result (an error is HTTP 200 too, and would be
    fast for the wrong reason)."""
    result = answer_of(body).get("result")
    if not isinstance(result, dict) or result.get("isError") is not False:
        raise RuntimeError(f"not echo's result: {body[:300]!r}")
    content = result.get("content")
    if not isinstance(content, list) or not content or content[0].get("text") != TEXT:
        raise RuntimeError(f"echo answered something else: {body[:300]!r}")


@dataclass
class Histogram:
    """A Prometheus histogram's cumulative buckets, count and sum, as scraped."""

    buckets: dict[float, float]
    count: float
    total: float

    def minus(self, earlier: Histogram) -> Histogram:
        return Histogram(
            {le: n - earlier.buckets.get(le, 0.0) for le, n in self.buckets.items()},
            self.count - earlier.count,
            self.total - earlier.total,
        )

    def quantile(self, q: float) -> float:
        """Linear within the bucket, as PromQL's histogram_quantile does: coarse (the
        buckets are 0.2, 0.5, 1, 2 ms, ...), so the mean is printed beside it."""
        rank, lower, below = q * self.count, 0.0, 0.0
        for le in sorted(self.buckets):
            cumulative = self.buckets[le]
            if cumulative >= rank and cumulative > below:
                if le == float("inf"):
                    return lower
                return lower + (le - lower) * (rank - below) / (cumulative - below)
            lower, below = le, cumulative
        return float("nan")


def scrape(gateway: str, name: str, server: str = DEV_TOOLS) -> Histogram:
    with urllib.request.urlopen(gateway + "/metrics") as response:
        text = response.read().decode()
    buckets: dict[float, float] = {}
    count = total = 0.0
    label = f'server="{server}"'
    for line in text.splitlines():
        if not line.startswith(name) or label not in line:
            continue
        metric, value = line.rsplit(" ", 1)
        if metric.startswith(name + "_bucket"):
            le = metric.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(le)] = float(value)
        elif metric.startswith(name + "_count"):
            count = float(value)
        elif metric.startswith(name + "_sum"):
            total = float(value)
    return Histogram(buckets, count, total)


@dataclass
class Level:
    direct: Run
    gateway: Run
    overhead: Histogram  # the gateway's own histogram, over this level's calls


async def measure(
    stack: DevStack, gateway_pid: int, requests: int, levels: list[int], blocks: int
) -> list[Level]:
    """Each level's calls in `blocks` blocks per target, alternating direct and gateway
    (ABBA order: neither always goes first), over one warm keep-alive client each."""
    direct_url = stack.endpoints.tool_server
    gateway_url = stack.endpoints.mcp[REGION][DEV_TOOLS]
    gateway_headers = {**HEADERS, "authorization": f"Bearer {stack.endpoints.api_key}"}
    per_block = max(1, requests // blocks)
    results: list[Level] = []
    for concurrency in levels:
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as to_tools,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as to_gw,
        ):
            runs: dict[str, Run] = {}
            before = scrape(stack.endpoints.gateways[REGION], OVERHEAD)
            for block in range(blocks):
                order = ("direct", "gateway") if block % 2 == 0 else ("gateway", "direct")
                for label in order:
                    through = label == "gateway"
                    run = await drive(
                        gateway_url if through else direct_url,
                        gateway_headers if through else HEADERS,
                        BODY,
                        per_block,
                        concurrency,
                        label,
                        cpu_of=gateway_pid if through else None,
                        session=to_gw if through else to_tools,
                        warmup=200 if block == 0 else 0,
                        check=check_echo,
                    )
                    if label in runs:
                        runs[label].extend(run)
                    else:
                        runs[label] = run
            after = scrape(stack.endpoints.gateways[REGION], OVERHEAD)
        # The gateway's histogram also saw the first block's warm-up calls.
        results.append(Level(runs["direct"], runs["gateway"], after.minus(before)))
    return results


def report(levels: list[Level], requests: int) -> None:
    print(f"\nMCP tools/call (echo), ~{requests} calls per row, alternating blocks")
    print("through the gateway: decision, input/output rules, intent + final record committed")
    print(
        f"{'target':<9}{'c':>4}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'calls/s':>9}"
        f"{'gw CPU µs/call':>16}{'calls/s/core':>14}"
    )
    for level in levels:
        for run in (level.direct, level.gateway):
            cpu = per_core = ""
            if run.cpu_us:
                cpu, per_core = f"{run.cpu_us:>16.0f}", f"{1e6 / run.cpu_us:>14,.0f}"
            print(
                f"{run.label:<9}{run.concurrency:>4}{run.pct(0.5):>9.3f}{run.pct(0.9):>9.3f}"
                f"{run.pct(0.99):>9.3f}{run.rps:>9,.0f}{cpu}{per_core}"
            )
    print("\nadded by the gateway (gateway minus direct)")
    print(f"{'c':>4}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}   gateway's own {OVERHEAD}")
    for level in levels:
        d, g, h = level.direct, level.gateway, level.overhead
        mean = h.total / h.count * 1000 if h.count else float("nan")
        print(
            f"{g.concurrency:>4}{g.pct(0.5) - d.pct(0.5):>9.3f}{g.pct(0.9) - d.pct(0.9):>9.3f}"
            f"{g.pct(0.99) - d.pct(0.99):>9.3f}   median {h.quantile(0.5) * 1000:.3f} ms,"
            f" mean {mean:.3f} ms ({h.count:.0f} calls)"
        )
    first = levels[0]
    added = first.gateway.pct(0.5) - first.direct.pct(0.5)
    verdict = "within" if added <= 1.0 else "OVER"
    print(
        f"\nadded p50 per tools/call at c={first.gateway.concurrency}: {added:.3f} ms"
        f" ({verdict} the 1 ms goal, both record commits included)"
    )
    for level in levels:
        if level.gateway.cpu_us:
            print(
                f"tool calls per second per gateway core at c={level.gateway.concurrency}:"
                f" {1e6 / level.gateway.cpu_us:,.0f}"
                f" ({level.gateway.rps:,.0f} calls/s measured, the tool server sharing a"
                " core with the load generator)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000, help="calls per target per level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--blocks", type=int, default=6, help="alternations per level")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cordon-bench-tools-") as root:
        stack = DevStack(Path(root), regions=(REGION,))
        stack.start()
        try:
            stop_off_path(stack, keep=("gateway-", "tool-server"))
            gateway_pid, _, _ = isolate(stack, REGION)
            levels = asyncio.run(
                measure(stack, gateway_pid, args.requests, args.concurrency, args.blocks)
            )
        finally:
            stack.stop()
    report(levels, args.requests)


if __name__ == "__main__":
    main()
