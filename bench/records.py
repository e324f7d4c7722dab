"""Record commit throughput, sealer catch-up, and auditor query latency at scale.

Starts the topology with one region, then commits N signed records to the region's
`RECORDS` stream from several replica processes, each through the gateway's own
`Recorder` (enrolled key, sign, publish, wait for the ack; 2,000 people over 30
days, many in flight at once), waits for the sealer's checkpoint to cover them all
and for the audit index to catch up, and times person + one-day queries on the
audit API. The region's nats-server, sealer and audit API run on the same machine
throughout, and so does central's nats-server, which sources the region's summaries;
central's aggregator and replicator are stopped once the topology is up, as they run
in another region, unless --with-central.

    .venv/bin/python bench/records.py [--records 1000000] [--replicas 2] [--in-flight 128]
                                      [--with-central]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import nats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.procstat import cpu_seconds
from cordon.ids import uuid7
from cordon.log import checkpoints, enrolment
from cordon.log.keys import SigningKey
from cordon.nats import Endpoint, streams, subjects
from cordon_dev.stack import DevStack
from gateway.records import NatsSink, Recorder

REGION = "eu-west"
PEOPLE = 2000
DAYS = 30
START = datetime(2026, 3, 1, tzinfo=UTC)


def record(replica: str, rng: random.Random, progress: float) -> dict[str, object]:
    """A decision record `progress` of the way through the bench's 30 days: records
    reach a region in time order, as they do from live traffic."""
    at = START + timedelta(seconds=progress * DAYS * 86400 + rng.uniform(0, 60))
    return {
        "v": 1,
        "kind": "decision",
        "id": uuid7(),
        "ts": at.isoformat(timespec="microseconds"),
        "region": REGION,
        "replica": replica,
        "person": f"person-{rng.randrange(PEOPLE)}",
        "agent": "bench-agent",
        "roles": ["analyst"],
        "scopes": ["chat:write"],
        "classification": "internal",
        "pack": {"name": "default", "revision": 1, "hash": "sha256:" + "0" * 64},
        "model": rng.choice(["gpt-4o", "gpt-4o-mini", "claude"]),
        "route": "openai",
        "outcome": rng.choice(["allow", "allow", "allow", "redact", "block"]),
        "rules": [],
        "content": {
            "prompt": {"messages": [{"role": "user", "content": "x" * 200}]},
            "answer": "y" * 200,
        },
    }


async def commit(
    endpoint: Endpoint,
    replica: str,
    key: SigningKey,
    enrolment_bytes: bytes,
    count: int,
    in_flight: int,
) -> tuple[float, float, float]:
    """One replica's share: its enrolment, then `count` records through the gateway's own
    `Recorder` (sign, publish, wait for the ack), `in_flight` at a time."""
    nc = await endpoint.connect()
    await streams.publish_enrolment(nc.jetstream(), REGION, key.key_id, enrolment_bytes)
    recorder = Recorder(NatsSink(nc, REGION, replica, timeout=30), REGION, replica, key)
    rng = random.Random(replica)
    left = count

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await recorder.commit(record(replica, rng, 1 - left / count))

    started, cpu = time.time(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    finished = time.time()
    await nc.close()
    return started, finished, time.process_time() - cpu


def stop_central_apps(stack: DevStack) -> None:
    """Central's aggregator and replicator run in another region on other machines.
    Central's nats-server stays: its source of `SUMMARY` is work the regional server
    does in any deployment (its own CPU here is an overstatement we keep)."""
    for name in ("aggregator", "replicator"):
        stack.processes[name].stop()


def stack_cpu(stack: DevStack) -> dict[str, float]:
    """CPU seconds each process of the topology has used so far (Linux /proc)."""
    assert stack.nats is not None
    procs = {f"nats-server {n}": p.proc for n, p in stack.nats.processes.items()}
    procs.update({name: p.proc for name, p in stack.processes.items()})
    used = {}
    for name, proc in procs.items():
        seconds = cpu_seconds(proc.pid) if proc is not None else None
        if seconds is not None:
            used[name] = seconds
    return used


def replica_process(
    args: tuple[Endpoint, str, str, str, int, int],
) -> tuple[float, float, float]:
    endpoint, replica, seed_hex, enrolment_hex, count, in_flight = args
    key = SigningKey.from_seed_hex(seed_hex)
    enrolment_bytes = bytes.fromhex(enrolment_hex)
    return asyncio.run(commit(endpoint, replica, key, enrolment_bytes, count, in_flight))


async def checkpoint_size(xr: Endpoint) -> int:
    nc = await xr.connect()
    try:
        last = await nc.jetstream().get_last_msg(
            subjects.SUMMARY_STREAM, subjects.checkpoint_subject(REGION)
        )
        return checkpoints.unverified(last.data or b"").size
    except nats.js.errors.NotFoundError:
        return 0
    finally:
        await nc.close()


async def stream_size(audit: Endpoint) -> int:
    nc = await audit.connect()
    try:
        return int((await nc.jetstream().stream_info(subjects.RECORDS_STREAM)).state.last_seq)
    finally:
        await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--replicas", type=int, default=2, help="publishing replica processes")
    parser.add_argument("--in-flight", type=int, default=128, help="commits in flight per replica")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument(
        "--with-central",
        action="store_true",
        help="keep central's aggregator and replicator running on these cores too",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cordon-bench-records-") as root:
        stack = DevStack(Path(root), regions=(REGION,))
        stack.start()
        try:
            run(stack, args)
        finally:
            stack.stop()


def run(stack: DevStack, args: argparse.Namespace) -> None:
    assert stack.topology is not None
    region = stack.topology.regions[REGION]
    stack.processes[f"gateway-{REGION}"].stop()  # this bench commits as the replicas itself
    if not args.with_central:
        stop_central_apps(stack)
    where = (
        "central co-located"
        if args.with_central
        else "central's nats-server sourcing SUMMARY; aggregator and replicator stopped"
    )
    print(f"one region on {os.cpu_count()} cores ({where})")
    regional_key = SigningKey.load(stack.root / "keys" / REGION / "regional.key")
    base = asyncio.run(stream_size(region.audit_endpoint))
    shares = [args.records // args.replicas] * args.replicas
    shares[0] += args.records - sum(shares)
    jobs = []
    for n, share in enumerate(shares, start=1):
        replica, key = f"bench-{n}", SigningKey.generate()
        enrolment_hex = enrolment.enrol(regional_key, REGION, replica, key).hex()
        seed = key.seed_hex()
        jobs.append((region.audit_endpoint, replica, seed, enrolment_hex, share, args.in_flight))
    started = time.perf_counter()
    cpu_before = stack_cpu(stack)
    with multiprocessing.get_context("spawn").Pool(args.replicas) as pool:
        spans = pool.map(replica_process, jobs)
    elapsed = max(end for _, end, _ in spans) - min(begin for begin, _, _ in spans)
    total = base + args.records + args.replicas  # each replica's enrolment is a leaf too
    rate = args.records / elapsed
    print(
        f"committed {args.records:,} signed records from {args.replicas} replica processes "
        f"in {elapsed:.1f} s: {rate:,.0f} records/s"
    )
    while (size := asyncio.run(checkpoint_size(region.xr_endpoint))) < total:
        time.sleep(1.0)
        print(f"  sealer checkpoint at {size:,} / {total:,}", flush=True)
    sealed = time.perf_counter() - started
    cpu = {name: used - cpu_before.get(name, 0.0) for name, used in stack_cpu(stack).items()}
    cpu["replicas (signing and publishing)"] = sum(used for _, _, used in spans)
    print(
        f"sealer: checkpoint covered all {total:,} records {sealed:.1f} s after the first commit "
        f"({total / sealed:,.0f} records/s end to end)"
    )
    print(f"CPU per committed record, commit start to sealed ({os.cpu_count()} cores shared):")
    for name, used in sorted(cpu.items(), key=lambda item: -item[1]):
        if used > 0.5:
            print(f"  {used / args.records * 1e6:6.0f} µs  {name}")
    api = stack.endpoints.audit_apis[REGION]
    auditor = {"authorization": f"Bearer {stack.tokens['auditor']}"}
    search = api + "/v1/records/search"
    while (
        indexed := httpx.get(search, params={"limit": 1}, headers=auditor, timeout=30).json()[
            "indexed"
        ]
    ) < total:
        time.sleep(1.0)
        print(f"  audit index at {indexed:,} / {total:,}", flush=True)
    rng = random.Random(11)
    timings, matches = [], []
    with httpx.Client(timeout=30, headers=auditor) as client:
        for _ in range(args.queries):
            day = START + timedelta(days=rng.randrange(DAYS))
            params = {
                "person": f"person-{rng.randrange(PEOPLE)}",
                "since": day.isoformat(timespec="microseconds"),
                "until": (day + timedelta(days=1)).isoformat(timespec="microseconds"),
                "limit": 1000,
            }
            t0 = time.perf_counter()
            body = client.get(api + "/v1/records/search", params=params).json()
            timings.append(time.perf_counter() - t0)
            matches.append(len(body["items"]))
    timings.sort()
    p95 = timings[int(0.95 * len(timings)) - 1]
    print(
        f"audit API, person + one-day queries over {total:,} records ({args.queries} queries, "
        f"{statistics.mean(matches):.0f} matches on average, each verified):"
    )
    p50, worst = statistics.median(timings) * 1000, timings[-1] * 1000
    print(f"  p50 {p50:.1f} ms, p95 {p95 * 1000:.1f} ms, max {worst:.1f} ms")


if __name__ == "__main__":
    main()
