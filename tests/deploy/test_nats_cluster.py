"""A region's NATS as a real three-node JetStream cluster (the NATS templates rendered with
routes, route TLS and `unique_tag`), R3 `RECORDS`, and a gateway that dials every
node. The stream's leader is SIGKILLed while calls flow: every answered call has
exactly one record, none is recorded twice, and calls are refused (503, fail-closed)
only while the cluster elects a new leader."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest

from cordon.log import envelope
from cordon.nats import subjects
from cordon_dev import certs
from cordon_dev.stack import DEV_API_KEY, DevStack
from tests.helpers import nats_as, stream_messages

pytestmark = pytest.mark.servers  # three-node JetStream clusters of real nats-server processes

REGION = "eu-west"
NODES = (f"{REGION}-a", f"{REGION}-b", f"{REGION}-c")


@pytest.fixture(scope="module")
def clustered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    dev = DevStack(tmp_path_factory.mktemp("cluster"), regions=(REGION,), cluster_sizes={REGION: 3})
    try:
        dev.start()
        yield dev
    finally:
        dev.stop()


def _audit_provision(stack: DevStack) -> dict[str, Any]:
    described: dict[str, Any] = json.loads((stack.root / "endpoints.json").read_text())
    setting: dict[str, Any] = described["nats"]["regions"][REGION]["audit"]["provision"]
    return setting


def _xr_provision(stack: DevStack) -> dict[str, Any]:
    described: dict[str, Any] = json.loads((stack.root / "endpoints.json").read_text())
    setting: dict[str, Any] = described["nats"]["regions"][REGION]["xr"]["provision"]
    return setting


async def _records_cluster(stack: DevStack) -> Any:
    nc = await nats_as(_audit_provision(stack))
    try:
        info = await nc.jetstream().stream_info(subjects.RECORDS_STREAM)
    finally:
        await nc.close()
    return info


async def _stored_ids(stack: DevStack) -> list[tuple[str, str, str]]:
    """(kind, id, the id a void stands for) of every record in RECORDS, in order."""
    nc = await nats_as(_audit_provision(stack))
    try:
        js = nc.jetstream()
        last = (await js.stream_info(subjects.RECORDS_STREAM)).state.last_seq
        found = []
        for message in await stream_messages(js, subjects.RECORDS_STREAM, 1, last):
            if message.subject == subjects.enrolment_subject(REGION):
                continue
            payload = msgpack.unpackb(envelope.decode(message.data or b"").payload)
            found.append((str(payload.get("kind")), str(payload["id"]), payload.get("voids", "")))
    finally:
        await nc.close()
    return found


@dataclass(frozen=True)
class Call:
    sent: float
    done: float
    status: int
    record_id: str | None
    error: str = ""


async def _load(
    gateway: str, stop: asyncio.Event, calls: list[Call], workers: int = 4
) -> list[Call]:

    async def worker(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                response = await client.post(
                    "/v1/chat/completions",
                    json={
                        "model": "mock-gpt",
                        "messages": [{"role": "user", "content": uuid.uuid4().hex}],
                    },
                )
                status, record_id = response.status_code, response.headers.get("x-cordon-record-id")
                error = "" if status == 200 else response.text
            except httpx.TransportError as exc:
                status, record_id, error = 0, None, repr(exc)
            calls.append(Call(sent, time.monotonic(), status, record_id, error))

    headers = {"authorization": f"Bearer {DEV_API_KEY}"}
    async with httpx.AsyncClient(base_url=gateway, headers=headers, timeout=10) as client:
        await asyncio.gather(*(worker(client) for _ in range(workers)))
    return calls


@pytest.mark.timeout(180)
async def test_records_are_kept_three_times_in_three_zones(clustered: DevStack) -> None:
    # `cordon nats provision` as an operator runs it: the region's endpoint names three
    # servers, so every stream and bucket there keeps three copies
    endpoints = str(clustered.root / "endpoints.json")
    subprocess.run(
        [sys.executable, "-m", "cordon_cli", "nats", "provision", "--endpoints", endpoints],
        check=True,
        capture_output=True,
        timeout=60,
    )
    info = await _records_cluster(clustered)
    assert info.config.num_replicas == 3
    peers = {info.cluster.leader, *(peer.name for peer in info.cluster.replicas)}
    assert peers == set(NODES)  # -a, -b, -c: one per zone (`unique_tag: "az:"`)
    nc = await nats_as(_xr_provision(clustered))
    try:
        for stream in (subjects.SUMMARY_STREAM, "KV_policy", "KV_applied"):
            assert (await nc.jetstream().stream_info(stream)).config.num_replicas == 3
    finally:
        await nc.close()


@pytest.mark.timeout(180)
async def test_losing_the_stream_leader_loses_no_answered_call_and_repeats_none(
    clustered: DevStack,
) -> None:
    assert clustered.nats is not None
    gateway = clustered.endpoints.gateways[REGION]
    stop, calls = asyncio.Event(), list[Call]()
    load = asyncio.create_task(_load(gateway, stop, calls))
    await asyncio.sleep(2.0)
    leader = (await _records_cluster(clustered)).cluster.leader
    killed_at = time.monotonic()
    clustered.nats.processes[leader].kill()
    # nats-server elects after 4-9 s without a leader (its Raft election timeout); then
    # let calls flow a while longer
    while sum(c.status == 200 and c.sent > killed_at for c in calls) < 200:
        if time.monotonic() - killed_at > 60:
            break
        await asyncio.sleep(0.2)
    stop.set()
    await load
    await asyncio.to_thread(clustered.nats.start, leader)  # it rejoins and catches up

    answered = [c for c in calls if c.status == 200]
    refused = [c for c in calls if c.status != 200]
    assert answered and all(c.record_id for c in answered)
    assert {c.status for c in refused} <= {503}, Counter(c.error for c in refused)
    after_kill = [c for c in answered if c.sent > killed_at]
    assert after_kill, Counter(c.error for c in refused).most_common(3)

    stored = await _stored_ids(clustered)
    counts = Counter(record_id for _, record_id, _ in stored)
    assert not [i for i, n in counts.items() if n > 1], "a record was stored twice"
    assert all(counts[c.record_id] == 1 for c in answered if c.record_id)
    voided = {voids for kind, _, voids in stored if kind == "void"}
    # a void says "its caller got a 503": never about a call that was answered
    assert not voided & {c.record_id for c in answered}
    window = [c for c in refused if c.done >= killed_at]
    first = min((c.sent for c in window), default=killed_at)
    last = max((c.done for c in window), default=killed_at)
    print(
        f"\nleader {leader} SIGKILLed: {len(calls)} calls, {len(answered)} answered "
        f"({len(after_kill)} after the kill), {len(refused)} refused 503; refusals from "
        f"{first - killed_at:+.2f} s to {last - killed_at:+.2f} s after the kill "
        f"({last - first:.2f} s fail-closed); {len(stored)} records stored, none twice, "
        f"{len(voided)} voids; "
        f"new leader {(await _records_cluster(clustered)).cluster.leader}"
    )

    async def caught_up() -> bool:
        info = await _records_cluster(clustered)
        return all(peer.current for peer in info.cluster.replicas)

    deadline = time.monotonic() + 30
    while not await caught_up():
        assert time.monotonic() < deadline, f"{leader} did not catch up after it restarted"
        await asyncio.sleep(0.2)


def _route_port_answers(host: str, port: int, cert: str, key: str, ca: str) -> bytes:
    """What a node's route port says to a would-be peer presenting `cert` (routes speak
    TLS first; a node that accepts the peer sends its INFO), b"" if it refused it."""
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
    with socket.create_connection((host, port), timeout=5) as raw:
        try:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                return tls.recv(4096)
        except (ssl.SSLError, OSError):
            return b""


@pytest.mark.timeout(60)
def test_only_the_regions_own_nodes_can_join_its_cluster(clustered: DevStack) -> None:
    """The route port takes only certificates of the region's own route CA: a node of
    another region's cluster cannot join and so read what this one carries."""
    assert clustered.topology is not None
    node = clustered.topology.regions[REGION].nodes[0]
    pki = Path(clustered.topology.root) / "pki"
    ca = str(pki / REGION / "ca.crt")
    other = certs.route_pki(pki / "foreign", clustered.host, "us-east", ("us-east-a",))
    own = (str(pki / REGION / f"route-{NODES[1]}.crt"), str(pki / REGION / f"route-{NODES[1]}.key"))
    foreign = (other.nodes["us-east-a"].cert_file, other.nodes["us-east-a"].key_file)
    assert _route_port_answers(node.host, node.cluster_port, *own, ca).startswith(b"INFO ")
    assert _route_port_answers(node.host, node.cluster_port, *foreign, ca) == b""
