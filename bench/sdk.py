"""The in-process SDK's budget: what `govern()` adds to an application's call and to its
memory, against the bare SDK, side by side in one run.

An application is a fresh Python process (pinned to the first CPU; the mock provider,
its own process, to the others) that makes `--requests` sequential chat completions with
the real `openai` SDK on a short prompt after 200 to warm up, bare or governed by the
baseline pack (`deploy/packs/default.yaml`). Bare and governed alternate for `--rounds`
rounds. Reported per round: p50 and p99 per call, CPU per call (the whole process,
the engine's thread included), and VmRSS after the calls; then the medians' differences.

`--decompose` adds two runs that say where the difference goes: `sdk-only` (the bare
SDK with a transport that answers at once: its own cost without the network) and
`bridge` (governed, the engine's app replaced by one that answers at once: the hand-over
to the engine's thread and back, without policy, records or network).

    .venv/bin/python bench/sdk.py [--requests 2000] [--rounds 3] [--stream] [--decompose]
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


def application(mode: str, url: str, requests: int, stream: bool, state: str) -> dict[str, float]:
    """One application's run (in its own process): its calls' figures and its memory."""
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
                messages=PROMPT,
                stream=True,  # type: ignore[arg-type]
            ):
                pass
        else:
            client.chat.completions.create(model="mock-gpt", messages=PROMPT)  # type: ignore[arg-type]

    for _ in range(WARM_UP):
        call()
    times = []
    cpu = time.process_time()
    for _ in range(requests):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    cpu = time.process_time() - cpu
    times.sort()
    rss = next(
        int(line.split()[1]) / 1024
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    return {
        "p50_ms": times[len(times) // 2] * 1000,
        "p99_ms": times[int(len(times) * 0.99)] * 1000,
        "cpu_us": cpu / requests * 1e6,
        "rss_mb": rss,
    }


def run_one(mode: str, url: str, args: argparse.Namespace, cpus: set[int]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as state:
        argv = [
            sys.executable,
            __file__,
            "--application",
            mode,
            "--url",
            url,
            "--requests",
            str(args.requests),
            "--state",
            state,
            *(["--stream"] if args.stream else []),
        ]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        pin(process.pid, cpus)
        out, _ = process.communicate(timeout=600)
        if process.returncode:
            raise SystemExit(f"the {mode} application failed ({process.returncode})")
        result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--decompose", action="store_true", help="add sdk-only and bridge runs")
    parser.add_argument("--application", choices=MODES + DECOMPOSED, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.application:
        figures = application(args.application, args.url, args.requests, args.stream, args.state)
        print(json.dumps(figures))
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
        modes = MODES + (DECOMPOSED if args.decompose else ())
        results: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
        kind = "streamed" if args.stream else "whole"
        print(f"{args.requests} sequential {kind} chat completions per run, after {WARM_UP}")
        print(f"{'round':>5} {'mode':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us':>8} {'RSS MB':>7}")
        for n in range(1, args.rounds + 1):
            for mode in modes:
                r = run_one(mode, url, args, own)
                results[mode].append(r)
                print(
                    f"{n:>5} {mode:>9} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} "
                    f"{r['cpu_us']:>8.0f} {r['rss_mb']:>7.1f}"
                )

        def median(mode: str, key: str) -> float:
            return statistics.median(r[key] for r in results[mode])

        if args.decompose:
            bridge = median("bridge", "p50_ms") - median("sdk-only", "p50_ms")
            engine = median("governed", "p50_ms") - median("bridge", "p50_ms")
            network = median("bare", "p50_ms") - median("sdk-only", "p50_ms")
            print(
                f"p50: the hand-over {bridge * 1000:+.0f} us; the engine with its provider "
                f"call {engine * 1000:+.0f} us, where the bare SDK's own provider call "
                f"takes {network * 1000:.0f} us"
            )
        added = {k: median("governed", k) - median("bare", k) for k in results["bare"][0]}
        print(
            f"added by govern(), medians: p50 {added['p50_ms'] * 1000:+.0f} us, "
            f"p99 {added['p99_ms'] * 1000:+.0f} us, CPU {added['cpu_us']:+.0f} us per call, "
            f"RSS {added['rss_mb']:+.1f} MB"
        )
    finally:
        stop_group(mock, timeout=5)


if __name__ == "__main__":
    main()
