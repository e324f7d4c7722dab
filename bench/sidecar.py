"""The local sidecar's budget: ready time, resident memory idle and under load, and
what it adds to a call, side by side with a regional replica.

Starts the regional topology (as bench/overhead.py does: central + eu-west, the sealer
and central then stopped, being off the request path) for its mock provider and its
gateway, with the same pack as overhead.py (output redaction). The sidecar is the
product as our users run it, `python -m cordon_cli sidecar --config sidecar.yaml
--config local.yaml`: the seed's sidecar file (tests/seed_configs/sidecar.yaml, same
redaction policy) with its provider URL pointed at the mock, and a local fragment
naming the port. Sidecar and replica are pinned (taskset / sched_setaffinity) to the
first CPU, everything else to the others.

Reported: the sidecar's ready time (spawn to the first 200 on /readyz, `--starts`
times; the first start also makes its keys), VmRSS idle (1 s after ready) and the
peak VmRSS while c=10 drives it (VmHWM, reset through /proc/PID/clear_refs after the
idle reading so a start-up peak does not count), and p50/p99 added to a direct call
to the mock at each concurrency; the same for the regional gateway.

    .venv/bin/python bench/sidecar.py [--requests 3000] [--load-requests 15000] [--starts 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Run, drive, isolate, pin, rss_mb, stop_off_path
from bench.overhead import BODY, PACK, publish_pack, wait_for_pack
from cordon_dev.procs import ManagedProcess, free_port
from cordon_dev.stack import DevStack
from gateway.sidecar.config import CALLER_KEY_FILE

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "tests" / "seed_configs" / "sidecar.yaml"
SEED_PROVIDER = "https://api.openai.com/v1"


@dataclass
class Footprint:
    """One target's figures: memory and, per concurrency, its calls."""

    idle_mb: float = 0.0
    peak_mb: float = 0.0
    runs: dict[int, Run] = field(default_factory=dict)


def sidecar_files(root: Path, mock_url: str) -> list[Path]:
    """The seed's sidecar file, its provider pointed at the mock (the policy as printed),
    and a local fragment: a free port, loopback upstreams for the mock."""
    seed = root / "sidecar.yaml"
    seed.write_text(SEED.read_text().replace(SEED_PROVIDER, mock_url))
    local = root / "local.yaml"
    local.write_text(
        "gateway:\n"
        f"  listen_port: {free_port()}\n"
        "  allow_loopback_upstreams: true\n"
        "  allowed_upstreams: ['http://127.0.0.1:*']\n"
    )
    return [seed, local]


def sidecar_process(root: Path, files: list[Path], cpus: Collection[int]) -> ManagedProcess:
    """`cordon sidecar`, pinned from its first instruction when taskset is here."""
    argv = [sys.executable, "-m", "cordon_cli", "sidecar"]
    argv += [a for path in files for a in ("--config", str(path))]
    if shutil.which("taskset"):
        argv = ["taskset", "-c", ",".join(map(str, sorted(cpus))), *argv]
    env = {"OPENAI_API_KEY": "sk-provider-bench"}
    return ManagedProcess("sidecar", argv, root / "sidecar.log", env)


def port_of(files: list[Path]) -> int:
    return int(files[1].read_text().split("listen_port: ")[1].split()[0])


def wait_ready(url: str, process: ManagedProcess, started: float, timeout: float = 30.0) -> float:
    """Seconds from `started` until /readyz answers 200 (polled every 5 ms)."""
    while time.monotonic() - started < timeout:
        if not process.running:
            raise RuntimeError(f"the sidecar exited:\n{process.log_tail()}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.005)
    raise RuntimeError(f"the sidecar was not ready in {timeout} s:\n{process.log_tail()}")


def start_sidecar(
    root: Path, files: list[Path], cpus: Collection[int]
) -> tuple[ManagedProcess, float]:
    process = sidecar_process(root, files, cpus)
    spawned = time.monotonic()
    process.start()
    assert process.proc is not None
    pin(process.proc.pid, cpus)  # without taskset: pinned just after the spawn
    return process, wait_ready(f"http://127.0.0.1:{port_of(files)}", process, spawned)


def reset_peak(pid: int) -> None:
    """Reset VmHWM to the current RSS (Linux: `5` to clear_refs), so the peak read after
    the load is the load's, not the start-up's."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError as exc:
        print(f"(could not reset the peak RSS of {pid}: {exc}; the peak includes start-up)")


async def measure(
    targets: dict[str, tuple[str, dict[str, str], int | None]],
    requests: int,
    load_requests: int,
    levels: list[int],
) -> dict[str, dict[int, Run]]:
    """Each target at each concurrency, in turn (direct first); the c=10 block is the
    long one, under which the peak memory is read."""
    runs: dict[str, dict[int, Run]] = {name: {} for name in targets}
    for concurrency in levels:
        n = load_requests if concurrency == 10 else requests
        for name, (url, headers, pid) in targets.items():
            run = await drive(url, headers, BODY, n, concurrency, name, cpu_of=pid)
            runs[name][concurrency] = run
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000, help="calls per row at c=1")
    parser.add_argument(
        "--load-requests", type=int, default=15000, help="calls at c=10 (about 10 s)"
    )
    parser.add_argument("--starts", type=int, default=5, help="sidecar starts timed")
    args = parser.parse_args()
    levels = [1, 10]
    with tempfile.TemporaryDirectory(prefix="cordon-bench-sidecar-") as tmp:
        root = Path(tmp)
        stack = DevStack(root / "stack", regions=("eu-west",))
        stack.start()
        sidecar: ManagedProcess | None = None
        try:
            pack = root / "bench-pack.json"
            pack.write_text(json.dumps(PACK))
            wait_for_pack(stack, publish_pack(stack, pack))
            stop_off_path(stack)
            gateway_pid, own, _rest = isolate(stack)
            files = sidecar_files(root, stack.endpoints.mock_provider)
            ready_s: list[float] = []
            for _ in range(args.starts):
                sidecar, ready = start_sidecar(root, files, own)
                ready_s.append(ready)
                if len(ready_s) < args.starts:
                    sidecar.stop()
            assert sidecar is not None and sidecar.proc is not None
            sidecar_pid = sidecar.proc.pid
            time.sleep(1.0)
            idle = {"sidecar": rss_mb(sidecar_pid), "regional": rss_mb(gateway_pid)}
            for pid in (sidecar_pid, gateway_pid):
                reset_peak(pid)
            caller = (root / ".cordon" / CALLER_KEY_FILE).read_text().strip()
            json_type = {"content-type": "application/json"}
            targets = {
                "direct": (
                    stack.endpoints.mock_provider + "/chat/completions",
                    {**json_type, "authorization": f"Bearer {stack.endpoints.api_key}"},
                    None,
                ),
                "sidecar": (
                    f"http://127.0.0.1:{port_of(files)}/v1/chat/completions",
                    {**json_type, "authorization": f"Bearer {caller}"},
                    sidecar_pid,
                ),
                "regional": (
                    stack.endpoints.gateways["eu-west"] + "/v1/chat/completions",
                    {**json_type, "authorization": f"Bearer {stack.endpoints.api_key}"},
                    gateway_pid,
                ),
            }
            runs = asyncio.run(measure(targets, args.requests, args.load_requests, levels))
            peak = {
                "sidecar": rss_mb(sidecar_pid, "VmHWM"),
                "regional": rss_mb(gateway_pid, "VmHWM"),
            }
        finally:
            if sidecar is not None:
                sidecar.stop()
            stack.stop()
    report(ready_s, idle, peak, runs, args)


def report(
    ready_s: list[float],
    idle: dict[str, float],
    peak: dict[str, float],
    runs: dict[str, dict[int, Run]],
    args: argparse.Namespace,
) -> None:
    print("\n$ .venv/bin/python bench/sidecar.py " + " ".join(sys.argv[1:]))
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs; target pinned to CPU 0")
    starts = ", ".join(f"{s:.2f}" for s in ready_s)
    print(f"sidecar ready (spawn to first 200 on /readyz), s: {starts} (first makes its keys)")
    print("policy: output redaction (email, phone, ssn); a signed record committed per call")
    header = f"{'':<22}{'sidecar':>12}{'regional':>12}"
    print("\n" + header)
    print(f"{'RSS idle, MB':<22}{idle['sidecar']:>12.1f}{idle['regional']:>12.1f}")
    print(f"{'RSS peak at c=10, MB':<22}{peak['sidecar']:>12.1f}{peak['regional']:>12.1f}")
    direct = runs["direct"]
    for concurrency, base in sorted(direct.items()):
        for q, name in ((0.5, "p50"), (0.99, "p99")):
            added = [runs[t][concurrency].pct(q) - base.pct(q) for t in ("sidecar", "regional")]
            label = f"added {name} c={concurrency}, ms"
            print(f"{label:<22}{added[0]:>12.3f}{added[1]:>12.3f}")
        rps = [runs[t][concurrency].rps for t in ("sidecar", "regional")]
        print(f"{f'req/s c={concurrency}':<22}{rps[0]:>12.0f}{rps[1]:>12.0f}")
        cpu = [runs[t][concurrency].cpu_us or 0.0 for t in ("sidecar", "regional")]
        print(f"{f'CPU µs/call c={concurrency}':<22}{cpu[0]:>12.0f}{cpu[1]:>12.0f}")
    print(f"\n{'direct':<10}{'c':>4}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}")
    for concurrency, base in sorted(direct.items()):
        print(
            f"{'':<10}{concurrency:>4}{base.pct(0.5):>10.3f}{base.pct(0.99):>10.3f}"
            f"{base.rps:>10.0f}"
        )


if __name__ == "__main__":
    main()
