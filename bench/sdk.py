"""The in-process SDK's budget: what `govern()` adds to an application's call and to its
memory, against the bare SDK, side by side in one run.

Each mode is an application process of its own (all pinned to the first CPU; the mock
provider, its own process, to the others) making sequential chat completions with the
real `openai` SDK on a short prompt: bare, or governed by the baseline pack
(`deploy/packs/default.yaml`). The processes are alive together and take turns, `--block`
calls at a time in alternating order, until each has made `--requests` after 200 to warm
up: one runs while the others wait, so a VM whose speed drifts from minute to minute
weighs on every mode alike (separate runs a minute apart differed here by more than the
SDK adds). Reported per mode: p50 and p99 per call, CPU per call (the whole process, the
engine's thread included, over its turns) and VmRSS after its calls; then what governing
adds against bare.

`--decompose` adds two runs that say where the difference goes: `sdk-only` (the bare
SDK with a transport that answers at once: its own cost without the network) and
`bridge` (governed, the engine's app replaced by one that answers at once: serving the
call, in the caller's thread or handed to the engine's for a stream, without policy,
records or network).

    .venv/bin/python bench/sdk.py [--requests 3000] [--block 100] [--runs 1] [--stream]
                                  [--decompose]

`--runs N` repeats the whole comparison with fresh processes and prints the median of
what governing added at p50 (on a VM, runs a minute apart differ by ±15 µs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import pin  # noqa: E402
from cordon_dev.procs import free_port, spawn, stop_group, wait_for_http  # noqa: E402

PACK = ROOT / "deploy" / "packs" / "default.yaml"
WARM_UP = 200
PROMPT = [{"role": "user", "content": "What is the capital of France?"}]
ANSWER = (
    b'{"id":"x","object":"chat.completion","created":0,"model":"mock-gpt","choices":'
    b'[{"index":0,"message":{"role":"assistant","content":"echo: What is the capital of '
    b'France?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":7,'
    b'"total_tokens":14}}'
)
MODES = ("bare", "governed")
DECOMPOSED = ("sdk-only", "bridge")


def _at_once(http: object) -> object:
    """A transport answering every request with ANSWER, for `http` (httpx or httpx2)."""

    def answer(request: object) -> object:
        headers = {"content-type": "application/json"}
        return http.Response(200, content=ANSWER, headers=headers)  # type: ignore[attr-defined]

    return http.MockTransport(answer)  # type: ignore[attr-defined]


class _AnswerAtOnce:
    """An app in the engine's place that answers at once: the bridge alone."""

    async def __call__(self, scope: object, receive: object, send: object) -> None:
        await receive()  # type: ignore[operator]
        start = {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
        await send(start)  # type: ignore[operator]
        await send({"type": "http.response.body", "body": ANSWER, "more_body": False})  # type: ignore[operator]

    async def close_mcp(self) -> None:
        return None


def application(mode: str, url: str, stream: bool, state: str) -> None:
    """One application (in its own process): warmed up, then a turn of calls for each
    `run N` line on its stdin, each answered with the turn's timings as a JSON line;
    `rss` is answered with its VmRSS."""
    import openai

    client = openai.OpenAI(api_key="sk-bench", base_url=f"{url}/v1", max_retries=0)
    if mode == "sdk-only":
        import sys as _sys

        http = _sys.modules["httpx2"] if "httpx2" in _sys.modules else _sys.modules["httpx"]
        inner = http.Client(transport=_at_once(http))
        client = client.with_options(http_client=inner)
    if mode in ("governed", "bridge"):
        from cordon_sdk import govern
        from cordon_sdk.engine import _ENGINES

        client = govern(client, config=PACK, state_dir=state, agent="bench")
        if mode == "bridge":
            (engine,) = _ENGINES.values()
            engine.app = _AnswerAtOnce()  # type: ignore[assignment]

    def call() -> None:
        if stream:
            for _ in client.chat.completions.create(
                model="mock-gpt",
                messages=PROMPT,  # type: ignore[arg-type]
                stream=True,
            ):
                pass
        else:
            client.chat.completions.create(model="mock-gpt", messages=PROMPT)  # type: ignore[arg-type]

    sys.stdin.readline()  # the controller's turn to warm up: one application at a time
    for _ in range(WARM_UP):
        call()
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.split()
        if command[0] == "rss":
            rss = next(
                int(entry.split()[1]) / 1024
                for entry in Path("/proc/self/status").read_text().splitlines()
                if entry.startswith("VmRSS:")
            )
            print(json.dumps({"rss_mb": rss}), flush=True)
            continue
        times = []
        cpu = time.process_time()
        for _ in range(int(command[1])):
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
        cpu = time.process_time() - cpu
        print(json.dumps({"times": times, "cpu_s": cpu}), flush=True)


class App:
    """A running application process, taking its turns when asked."""

    def __init__(self, mode: str, url: str, stream: bool, state: str, cpus: set[int]) -> None:
        argv = [sys.executable, __file__, "--application", mode, "--url", url, "--state", state]
        argv += ["--stream"] if stream else []
        self.mode = mode
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        pin(self.process.pid, cpus)
        self.times: list[float] = []
        self.cpu_s = 0.0

    def _ask(self, line: str) -> dict[str, object]:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(line + "\n")
        stdin.flush()
        return dict(json.loads(_line(stdout, self.mode)))

    def ready(self) -> None:
        """Warmed up (its turn to, and back when done)."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        stdin.write("warm\n")
        stdin.flush()
        if _line(stdout, self.mode) != "ready":
            raise SystemExit(f"the {self.mode} application did not start")

    def turn(self, calls: int) -> None:
        answer = self._ask(f"run {calls}")
        self.times += answer["times"]  # type: ignore[arg-type]
        self.cpu_s += answer["cpu_s"]  # type: ignore[operator]

    def figures(self) -> dict[str, float]:
        ordered = sorted(self.times)
        return {
            "p50_ms": ordered[len(ordered) // 2] * 1000,
            "p99_ms": ordered[int(len(ordered) * 0.99)] * 1000,
            "cpu_us": self.cpu_s / len(ordered) * 1e6,
            "rss_mb": float(self._ask("rss")["rss_mb"]),  # type: ignore[arg-type]
        }

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _line(stream: IO[str], mode: str) -> str:
    line = stream.readline()
    if not line:
        raise SystemExit(f"the {mode} application exited")
    return line.strip()


def side_by_side(url: str, args: argparse.Namespace, cpus: set[int]) -> dict[str, dict[str, float]]:
    """Every mode's application, taking turns; their figures."""
    modes = MODES + (DECOMPOSED if args.decompose else ())
    with tempfile.TemporaryDirectory() as state:
        apps = [App(mode, url, args.stream, f"{state}/{mode}", cpus) for mode in modes]
        try:
            for app in apps:  # one at a time: warming up, they would share the core
                app.ready()
            for n, done in enumerate(range(0, args.requests, args.block)):
                calls = min(args.block, args.requests - done)
                for app in apps if n % 2 == 0 else apps[::-1]:
                    app.turn(calls)
            return {app.mode: app.figures() for app in apps}
        finally:
            for app in apps:
                app.stop()


def report(results: dict[str, dict[str, float]], decompose: bool) -> dict[str, float]:
    """One run's figures per mode, and what governing added; the latter returned."""
    print(f"{'mode':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us':>8} {'RSS MB':>7}")
    for mode, r in results.items():
        print(
            f"{mode:>9} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} "
            f"{r['cpu_us']:>8.0f} {r['rss_mb']:>7.1f}"
        )

    def p50(mode: str) -> float:
        return results[mode]["p50_ms"]

    if decompose:
        bridge = p50("bridge") - p50("sdk-only")
        engine = p50("governed") - p50("bridge")
        network = p50("bare") - p50("sdk-only")
        print(
            f"p50: serving the call {bridge * 1000:+.0f} us; the engine with its provider "
            f"call {engine * 1000:+.0f} us, where the bare SDK's own provider call "
            f"takes {network * 1000:.0f} us"
        )
    added = {k: results["governed"][k] - results["bare"][k] for k in results["bare"]}
    print(
        f"added by govern(): p50 {added['p50_ms'] * 1000:+.0f} us, "
        f"p99 {added['p99_ms'] * 1000:+.0f} us, CPU {added['cpu_us']:+.0f} us per call, "
        f"RSS {added['rss_mb']:+.1f} MB"
    )
    return added


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="calls per mode")
    parser.add_argument("--block", type=int, default=100, help="calls per turn")
    parser.add_argument(
        "--runs", type=int, default=1, help="runs, each with fresh processes; their median"
    )
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--decompose", action="store_true", help="add sdk-only and bridge runs")
    parser.add_argument("--application", choices=MODES + DECOMPOSED, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stream and args.decompose:
        # The stand-ins of the decomposition answer whole, never as a stream.
        raise SystemExit("--decompose measures whole answers only; run it without --stream")
    if args.application:
        application(args.application, args.url, args.stream, args.state)
        return
    cpus = sorted(os.sched_getaffinity(0))
    own, rest = {cpus[0]}, set(cpus[1:]) or {cpus[0]}
    port = free_port()
    mock = spawn([sys.executable, "-m", "cordon_dev", "mock-provider", "--port", str(port)])
    pin(mock.pid, rest)
    pin(os.getpid(), rest)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/mock/stats", 15, mock)
        kind = "streamed" if args.stream else "whole"
        print(
            f"{args.requests} sequential {kind} chat completions per mode, after {WARM_UP}, "
            f"in turns of {args.block}"
        )
        added = [report(side_by_side(url, args, own), args.decompose) for _ in range(args.runs)]
        if args.runs > 1:
            p50s = sorted(run["p50_ms"] * 1000 for run in added)
            print(
                f"over {args.runs} runs, p50 added: median {statistics.median(p50s):+.0f} us "
                f"({', '.join(f'{p:+.0f}' for p in p50s)})"
            )
    finally:
        stop_group(mock, timeout=5)


if __name__ == "__main__":
    main()
