"""What the gateway adds to a call: gateway vs a direct call to the same mock provider.

Starts the real topology (central + one region: nats-server, gateway, sealer,
replicator, aggregator, mock provider), activates a pack with output redaction so
policy runs on every answer, then stops what is off the request path (sealer,
central) unless --full-topology. It then drives chat completions at each
concurrency, straight at the mock and through the gateway (policy + signed record
committed to JetStream before each answer), measures time to first byte of
streamed answers, and reads the gateway's resident memory idle and at its peak.
The gateway is pinned to CPU 0; load generator, mock and nats-server share CPU 1.

If LiteLLM's proxy is installed in this environment (`pip install 'litellm[proxy]'`)
it is started against the same mock and measured the same way, side by side.

    .venv/bin/python bench/overhead.py [--requests 3000] [--concurrency 1 10 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.procstat import cpu_seconds
from cordon_dev.procs import free_port, wait_for_http
from cordon_dev.stack import DevStack

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
PROMPT = "Summarise the quarterly figures for the board and mail them to cfo@example.com"
BODY = json.dumps({"model": "mock-gpt", "messages": [{"role": "user", "content": PROMPT}]}).encode()
STREAM_BODY = BODY[:-1] + b', "stream": true}'
LITELLM_KEY = "sk-cordon-bench-litellm"


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


async def drive(
    url: str,
    headers: dict[str, str],
    requests: int,
    concurrency: int,
    label: str,
    stream: bool = False,
    cpu_of: int | None = None,
) -> Run:
    """Latency per call (to the first body byte when `stream`), `concurrency` at a time;
    with `cpu_of`, also that process's CPU time per call (steadier than latency on a
    shared VM)."""
    body = STREAM_BODY if stream else BODY
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

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
                await response.read()
            return (time.perf_counter() - started) * 1000

        for _ in range(min(200, requests)):  # warm connections and code paths
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


def publish_pack(stack: DevStack, path: Path) -> int:
    """Sign and publish the pack in `path` as a policy owner does (`cordon policy
    publish`); returns its revision."""
    assert stack.topology is not None
    cli = [sys.executable, "-m", "cordon_cli", "policy", "publish", str(path)]
    published = subprocess.run(
        [
            *cli,
            "--nats-url",
            stack.topology.central.url,
            "--nats-seed",
            str(stack.topology.central_identities["publisher"].seed_file),
            "--key",
            str(stack.policy_owner_key),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(published.stdout.split("revision ")[1].split()[0])


def wait_for_pack(stack: DevStack, revision: int, timeout: float = 30.0) -> None:
    import urllib.request

    status = urllib.request.Request(
        stack.endpoints.gateways["eu-west"] + "/v1/cordon/policy",
        headers={"authorization": f"Bearer {stack.tokens['admin']}"},
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(status) as response:
            if json.load(response)["active_revision"] >= revision:
                return
        time.sleep(0.1)
    logs = "\n".join(p.log_path.read_text()[-1500:] for p in stack.processes.values())
    raise RuntimeError(f"the bench pack was not activated\n{logs}")


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


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_litellm(mock_url: str, root: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    """LiteLLM's proxy against the same mock, if it is installed here."""
    binary = shutil.which("litellm", path=str(Path(sys.executable).parent))
    if binary is None:
        return None
    config = root / "litellm.yaml"
    config.write_text(
        "model_list:\n  - model_name: mock-gpt\n    litellm_params:\n"
        f"      model: openai/mock-gpt\n      api_base: {mock_url}\n      api_key: none\n"
        f"general_settings:\n  master_key: {LITELLM_KEY}\n"
    )
    port = free_port()
    log = (root / "litellm.log").open("wb")
    proc = subprocess.Popen(
        [binary, "--config", str(config), "--port", str(port), "--num_workers", "1"],
        stdout=log,
        stderr=log,
    )
    wait_for_http(f"http://127.0.0.1:{port}/health/liveliness", 120, proc)
    return proc, f"http://127.0.0.1:{port}/v1/chat/completions"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument(
        "--full-topology",
        action="store_true",
        help="keep sealer, replicator, aggregator and central NATS running on these 2 cores",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cordon-bench-") as root:
        stack = DevStack(Path(root), regions=("eu-west",))
        stack.start()
        litellm = None
        try:
            # `make run` enforces the baseline pack: time to first token with it first.
            first_tokens = asyncio.run(measure_first_token(stack))
            bench_pack = Path(root) / "bench-pack.json"
            bench_pack.write_text(json.dumps(PACK))
            wait_for_pack(stack, publish_pack(stack, bench_pack))
            if not args.full_topology:
                stop_off_path(stack)
            gateway = stack.processes["gateway-eu-west"].proc
            assert gateway is not None and stack.nats is not None
            cpus = sorted(os.sched_getaffinity(0))
            rest = set(cpus[1:]) or {cpus[0]}
            pin(gateway.pid, {cpus[0]})
            others = [
                p.proc
                for p in [*stack.processes.values(), *stack.nats.processes.values()]
                if p.running
            ]
            for proc in others:
                if proc is not None and proc is not gateway:
                    pin(proc.pid, rest)
            pin(os.getpid(), rest)
            idle_rss = rss_mb(gateway.pid)
            litellm = start_litellm(stack.endpoints.mock_provider, Path(root))
            if litellm is not None:
                pin(litellm[0].pid, {cpus[0]})
            results = asyncio.run(measure(stack, args.requests, args.concurrency, litellm))
            peak_rss = rss_mb(gateway.pid, "VmHWM")
            results["first_token"] = first_tokens
        finally:
            if litellm is not None:
                litellm[0].terminate()
            stack.stop()
    topology = (
        "full topology running" if args.full_topology else "sealer/central stopped (off the path)"
    )
    report(results, args.requests, topology, idle_rss, peak_rss)


async def measure(
    stack: DevStack,
    requests: int,
    levels: list[int],
    litellm: tuple[subprocess.Popen[bytes], str] | None = None,
) -> dict[str, list[Run]]:
    gateway = stack.processes["gateway-eu-west"].proc
    gateway_pid = gateway.pid if gateway is not None else None
    direct_url = stack.endpoints.mock_provider + "/chat/completions"
    gateway_url = stack.endpoints.gateways["eu-west"] + "/v1/chat/completions"
    headers = {
        "content-type": "application/json",
        "authorization": f"Bearer {stack.endpoints.api_key}",
    }
    results: dict[str, list[Run]] = {"calls": [], "ttfb": []}
    for concurrency in levels:
        results["calls"].append(await drive(direct_url, headers, requests, concurrency, "direct"))
        results["calls"].append(
            await drive(gateway_url, headers, requests, concurrency, "cordon", cpu_of=gateway_pid)
        )
        if litellm is not None:
            litellm_headers = {**headers, "authorization": f"Bearer {LITELLM_KEY}"}
            results["calls"].append(
                await drive(litellm[1], litellm_headers, requests, concurrency, "litellm")
            )
    ttfb_n = max(200, requests // 3)
    results["ttfb"].append(await drive(direct_url, headers, ttfb_n, 1, "direct", stream=True))
    results["ttfb"].append(await drive(gateway_url, headers, ttfb_n, 1, "cordon", stream=True))
    return results


async def first_token(url: str, headers: dict[str, str], model: str, n: int, label: str) -> Run:
    """Time from sending a streamed call to the first event carrying answer text."""
    body = json.dumps(
        {"model": model, "stream": True, "messages": [{"role": "user", "content": PROMPT}]}
    ).encode()
    latencies: list[float] = []
    started_all = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        for _ in range(n):
            started = time.perf_counter()
            seen: float | None = None
            async with session.post(url, data=body, headers=headers) as response:
                async for line in response.content:
                    if seen is None and line.startswith(b"data: {"):
                        delta = json.loads(line[6:])["choices"][0]["delta"]
                        if delta.get("content"):
                            seen = time.perf_counter()
            assert seen is not None, f"{label}: no answer text in the stream"
            latencies.append((seen - started) * 1000)
    return Run(label, 1, latencies, time.perf_counter() - started_all)


async def measure_first_token(stack: DevStack) -> list[Run]:
    """Time to first token with the baseline pack, direct and through the gateway, on a
    fast stream and on one that sends a word every 50 ms."""
    headers = {
        "content-type": "application/json",
        "authorization": f"Bearer {stack.endpoints.api_key}",
    }
    direct_url = stack.endpoints.mock_provider + "/chat/completions"
    gateway_url = stack.endpoints.gateways["eu-west"] + "/v1/chat/completions"
    runs = []
    for model, n in (("mock-gpt", 300), ("slow-stream", 30)):
        runs.append(await first_token(direct_url, headers, model, n, f"direct {model}"))
        runs.append(await first_token(gateway_url, headers, model, n, f"cordon {model}"))
    return runs


def report(
    results: dict[str, list[Run]], requests: int, topology: str, idle_rss: float, peak_rss: float
) -> None:
    print(f"\nchat completions, {requests} requests per row, {topology}")
    print("policy (output redaction) on, signed record committed to RECORDS before each answer")
    print(f"{'target':<10}{'c':>4}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}{'CPU µs/call':>13}")
    for run in results["calls"]:
        cpu = f"{run.cpu_us:>13.0f}" if run.cpu_us is not None else ""
        print(
            f"{run.label:<10}{run.concurrency:>4}{run.pct(0.5):>10.3f}{run.pct(0.99):>10.3f}"
            f"{run.rps:>10.0f}{cpu}"
        )
    direct = {r.concurrency: r for r in results["calls"] if r.label == "direct"}
    print("\nadded by the gateway (cordon minus direct)")
    print(f"{'c':>4}{'p50 ms':>10}{'p99 ms':>10}")
    for run in results["calls"]:
        if run.label == "cordon":
            base = direct[run.concurrency]
            p50, p99 = run.pct(0.5) - base.pct(0.5), run.pct(0.99) - base.pct(0.99)
            print(f"{run.concurrency:>4}{p50:>10.3f}{p99:>10.3f}")
    straight, through = results["ttfb"]
    added_p50 = through.pct(0.5) - straight.pct(0.5)
    added_p99 = through.pct(0.99) - straight.pct(0.99)
    print(
        f"\nstreamed time to first byte, c=1: direct p50 {straight.pct(0.5):.3f} ms, "
        f"cordon p50 {through.pct(0.5):.3f} ms "
        f"(added {added_p50:.3f} ms, p99 added {added_p99:.3f} ms)"
    )
    print(f"gateway resident memory: idle {idle_rss:.1f} MB, peak under load {peak_rss:.1f} MB")
    print("\ntime to first token, baseline pack (deploy/packs/default.yaml), c=1")
    runs = results.get("first_token", [])
    for straight, through in zip(runs[::2], runs[1::2], strict=True):
        model = straight.label.split()[-1]
        print(
            f"  {model:<12} direct p50 {straight.pct(0.5):8.3f} ms, cordon p50 "
            f"{through.pct(0.5):8.3f} ms (added {through.pct(0.5) - straight.pct(0.5):.3f} ms)"
        )


if __name__ == "__main__":
    main()
