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

With --tracing it measures what OpenTelemetry tracing costs instead: a second replica of
the same region runs with OTEL_EXPORTER_OTLP_TRACES_ENDPOINT at a local OTLP/HTTP sink
(bench/otlp_sink.py, a process of its own that counts what it is sent), both replicas on
the gateway's CPU, and "tracing off" and "tracing on" are driven in alternating blocks
(direct, off, on, then on, off, direct at each concurrency). A run whose sink received no
export fails.

    .venv/bin/python bench/overhead.py [--requests 3000] [--concurrency 1 10 50] [--tracing]
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
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Run, drive, isolate, pin, rss_mb, stop_off_path
from bench.otlp_sink import OtlpSink
from cordon_dev.procs import free_port, wait_for_http
from cordon_dev.stack import DevStack
from gateway import telemetry

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


def wait_for_pack(
    stack: DevStack, revision: int, timeout: float = 30.0, gateway: str | None = None
) -> None:
    import urllib.request

    status = urllib.request.Request(
        (gateway or stack.endpoints.gateways["eu-west"]) + "/v1/cordon/policy",
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
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="tracing off vs on: two replicas, one exporting spans to a local OTLP sink, "
        "driven in alternating blocks (no LiteLLM, no streamed figures)",
    )
    args = parser.parse_args()
    if args.tracing:
        main_tracing(args.requests, args.concurrency, args.full_topology)
        return

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
            gateway_pid, gateway_cpus, _ = isolate(stack)
            idle_rss = rss_mb(gateway_pid)
            litellm = start_litellm(stack.endpoints.mock_provider, Path(root))
            if litellm is not None:
                pin(litellm[0].pid, gateway_cpus)
            results = asyncio.run(measure(stack, args.requests, args.concurrency, litellm))
            peak_rss = rss_mb(gateway_pid, "VmHWM")
            results["first_token"] = first_tokens
        finally:
            if litellm is not None:
                litellm[0].terminate()
            stack.stop()
    topology = (
        "full topology running" if args.full_topology else "sealer/central stopped (off the path)"
    )
    report(results, args.requests, topology, idle_rss, peak_rss)


TRACED = "gateway-eu-west-gw-traced"
WARMUP = 200  # calls before each block of the tracing bench (`drive`'s default)


def main_tracing(requests: int, levels: list[int], full_topology: bool) -> None:
    """Tracing off vs on, side by side: the region's gateway as started, and a second
    replica (same settings, own key) whose environment names the OTLP sink."""
    if telemetry.enabled_by(os.environ):  # every child inherits it: "off" would trace
        sys.exit("unset OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT: the 'off' gateway would trace")
    sink = OtlpSink()
    try:
        with tempfile.TemporaryDirectory(prefix="cordon-bench-") as root:
            stack = DevStack(Path(root), regions=("eu-west",))
            stack.start()
            try:
                traced_url = stack.start_gateway(
                    "eu-west",
                    "gw-traced",
                    stack.endpoints.mock_provider,
                    env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": sink.url + "/v1/traces"},
                )
                wait_for_http(traced_url + "/readyz", 30, stack.processes[TRACED].proc)
                bench_pack = Path(root) / "bench-pack.json"
                bench_pack.write_text(json.dumps(PACK))
                revision = publish_pack(stack, bench_pack)
                wait_for_pack(stack, revision)
                wait_for_pack(stack, revision, gateway=traced_url)
                if not full_topology:
                    stop_off_path(stack)
                off_pid, gateway_cpus, rest = isolate(stack)
                traced = stack.processes[TRACED].proc
                assert traced is not None
                pin(traced.pid, gateway_cpus)
                assert sink.process.pid is not None
                pin(sink.process.pid, rest)
                idle = {"off": rss_mb(off_pid), "on": rss_mb(traced.pid)}
                before = sink.counts()
                results = asyncio.run(measure_tracing(stack, traced_url, requests, levels))
                time.sleep(6)  # the batch processor exports what is left every 5 s
                after = sink.counts()
                peak = {"off": rss_mb(off_pid, "VmHWM"), "on": rss_mb(traced.pid, "VmHWM")}
            finally:
                stack.stop()
    finally:
        sink.stop()
    topology = "full topology running" if full_topology else "sealer/central stopped (off the path)"
    exported = {k: after[k] - before[k] for k in after}
    report_tracing(results, requests, topology, idle, peak, exported, before)
    if exported["exports"] == 0:
        sys.exit("FAILED: the traced gateway exported nothing to the OTLP sink")


async def measure_tracing(
    stack: DevStack, traced_url: str, requests: int, levels: list[int]
) -> list[Run]:
    """At each concurrency, two rounds of blocks of requests/2 calls each: direct, off,
    on, then on, off, direct; a target's blocks make one row."""
    gateway = stack.processes["gateway-eu-west"].proc
    traced = stack.processes[TRACED].proc
    assert gateway is not None and traced is not None
    urls = {
        "direct": (stack.endpoints.mock_provider + "/chat/completions", None),
        "off": (stack.endpoints.gateways["eu-west"] + "/v1/chat/completions", gateway.pid),
        "on": (traced_url + "/v1/chat/completions", traced.pid),
    }
    headers = {
        "content-type": "application/json",
        "authorization": f"Bearer {stack.endpoints.api_key}",
    }
    block = max(1, requests // 2)
    runs: list[Run] = []
    for concurrency in levels:
        rows: dict[str, Run] = {}
        for label in ("direct", "off", "on", "on", "off", "direct"):
            url, pid = urls[label]
            run = await drive(
                url, headers, BODY, block, concurrency, label, cpu_of=pid, warmup=WARMUP
            )
            if label in rows:
                rows[label].extend(run)
            else:
                rows[label] = run
        runs.extend(rows.values())
    return runs


def report_tracing(
    runs: list[Run],
    requests: int,
    topology: str,
    idle: dict[str, float],
    peak: dict[str, float],
    exported: dict[str, int],
    at_start: dict[str, int],
) -> None:
    print(f"\nchat completions, tracing off vs on, {requests} requests per row, {topology}")
    print("policy (output redaction) on, signed record committed to RECORDS before each answer")
    print(f"{'target':<10}{'c':>4}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}{'CPU µs/call':>13}")
    for run in runs:
        cpu = f"{run.cpu_us:>13.0f}" if run.cpu_us is not None else ""
        print(
            f"{run.label:<10}{run.concurrency:>4}{run.pct(0.5):>10.3f}{run.pct(0.99):>10.3f}"
            f"{run.rps:>10.0f}{cpu}"
        )
    by = {(r.label, r.concurrency): r for r in runs}
    print("\nadded by the gateway (minus direct), and what tracing adds (on minus off)")
    header = f"{'c':>4}{'off p50':>10}{'on p50':>10}{'off p99':>10}{'on p99':>10}"
    print(header + f"{'CPU off µs':>12}{'CPU on µs':>12}{'CPU +µs':>10}")
    for concurrency in sorted({r.concurrency for r in runs}):
        base, off, on = (by[(label, concurrency)] for label in ("direct", "off", "on"))
        assert off.cpu_us is not None and on.cpu_us is not None
        print(
            f"{concurrency:>4}"
            f"{off.pct(0.5) - base.pct(0.5):>10.3f}{on.pct(0.5) - base.pct(0.5):>10.3f}"
            f"{off.pct(0.99) - base.pct(0.99):>10.3f}{on.pct(0.99) - base.pct(0.99):>10.3f}"
            f"{off.cpu_us:>12.0f}{on.cpu_us:>12.0f}{on.cpu_us - off.cpu_us:>+10.0f}"
        )
    print(
        f"gateway resident memory: idle off {idle['off']:.1f} MB, on {idle['on']:.1f} MB; "
        f"peak under load off {peak['off']:.1f} MB, on {peak['on']:.1f} MB"
    )
    # each "on" row is two blocks of requests/2 calls, each after its warm-up calls
    on_rows = [r for r in runs if r.label == "on"]
    warmup = 2 * min(WARMUP, max(1, requests // 2)) * len(on_rows)
    traced_calls = sum(len(r.latencies_ms) for r in on_rows) + warmup
    per_call = exported["spans"] / traced_calls if traced_calls else 0.0
    print(
        f"OTLP sink: {exported['exports']} exports, {exported['spans']} spans, "
        f"{exported['bytes'] / 1e6:.1f} MB during the run (before it: {at_start['exports']} "
        f"exports, {at_start['spans']} spans); {per_call:.2f} spans per traced call "
        f"(warm-up calls included)"
    )


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
        results["calls"].append(
            await drive(direct_url, headers, BODY, requests, concurrency, "direct")
        )
        results["calls"].append(
            await drive(
                gateway_url, headers, BODY, requests, concurrency, "cordon", cpu_of=gateway_pid
            )
        )
        if litellm is not None:
            litellm_headers = {**headers, "authorization": f"Bearer {LITELLM_KEY}"}
            results["calls"].append(
                await drive(litellm[1], litellm_headers, BODY, requests, concurrency, "litellm")
            )
    ttfb_n = max(200, requests // 3)
    results["ttfb"].append(
        await drive(direct_url, headers, STREAM_BODY, ttfb_n, 1, "direct", stream=True)
    )
    results["ttfb"].append(
        await drive(gateway_url, headers, STREAM_BODY, ttfb_n, 1, "cordon", stream=True)
    )
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
