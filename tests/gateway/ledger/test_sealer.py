"""The sealer: a Merkle tree over RECORDS, signed checkpoints, and restarts that change nothing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from cordon.log import checkpoints, merkle, summary_chain
from cordon.log.enrolment import Keyring
from cordon.log.keys import SigningKey
from cordon.log.summary_chain import Candidate
from cordon.nats import subjects
from cordon_dev.inprocess import wait_for
from cordon_dev.stack import DevStack
from tests.helpers import nats_as, stream_messages


async def _log_state(
    endpoints: dict[str, Any], region: str
) -> tuple[list[bytes], Keyring, list[dict[str, Any]]]:
    """Every leaf of the region's log, a keyring of its enrolled keys, and its summaries."""
    audit = await nats_as(endpoints["nats"]["regions"][region]["audit"]["provision"])
    xr = await nats_as(endpoints["nats"]["regions"][region]["xr"]["provision"])
    try:
        js, xjs = audit.jetstream(), xr.jetstream()
        keyring = Keyring(region, bytes.fromhex(endpoints["regional_public_keys"][region]))
        last = (await js.stream_info(subjects.RECORDS_STREAM)).state.last_seq
        leaves = []
        for msg in await stream_messages(js, subjects.RECORDS_STREAM, 1, last):
            leaves.append(merkle.leaf_hash(msg.data or b""))
            if str(msg.subject).startswith("cordon.enrol."):
                keyring.add_enrolment(msg.data or b"")
        state = (await xjs.stream_info(subjects.SUMMARY_STREAM)).state
        found = [
            {"subject": m.subject, "data": m.data}
            for m in await stream_messages(
                xjs, subjects.SUMMARY_STREAM, state.first_seq, state.last_seq
            )
        ]
    finally:
        await audit.close()
        await xr.close()
    return leaves, keyring, found


async def _traffic(
    endpoints: dict[str, Any], region: str, n: int, sent: list[int] | None = None
) -> None:
    """`n` calls, one after another; `sent[0]` counts them as they are answered."""
    async with httpx.AsyncClient() as client:
        for i in range(n):
            if sent is not None:
                sent[0] = i
            await client.post(
                endpoints["gateways"][region] + "/v1/chat/completions",
                json={"model": "mock-gpt", "messages": [{"role": "user", "content": f"call {i}"}]},
                headers={"authorization": f"Bearer {endpoints['api_key']}"},
            )


async def _settled(
    endpoints: dict[str, Any], region: str
) -> tuple[list[bytes], Keyring, list[dict[str, Any]]]:
    """Wait until the newest checkpoint covers every record, then return the state."""
    for _ in range(100):
        leaves, keyring, found = await _log_state(endpoints, region)
        ckpts = [f for f in found if f["subject"] == subjects.checkpoint_subject(region)]
        if ckpts and checkpoints.decode(ckpts[-1]["data"], keyring.enrolled).size == len(leaves):
            return leaves, keyring, found
        await asyncio.sleep(0.2)
    raise AssertionError("no checkpoint ever covered the whole log")


def _check(region: str, leaves: list[bytes], keyring: Keyring, found: list[dict[str, Any]]) -> None:
    ckpts = [
        checkpoints.decode(f["data"], keyring.enrolled)
        for f in found
        if f["subject"] == subjects.checkpoint_subject(region)
    ]
    sizes = [c.size for c in ckpts]
    assert sizes == sorted(set(sizes)), "checkpoint sizes must only grow, never repeat or fork"
    for c in ckpts:
        assert c.region == region and c.root == merkle.root(leaves[: c.size])
    # The sealer's summaries are the ones its signed chain reaches (an earlier test
    # planted forgeries in this stream): exactly one per record, each published once.
    candidates: dict[int, list[Candidate]] = {}
    for f in found:
        if f["subject"] != subjects.checkpoint_subject(region):
            c = summary_chain.candidate(json.loads(f["data"]), f["data"])
            candidates.setdefault(c.stream_seq, []).append(c)
    head = ckpts[-1].summaries
    assert head is not None, "every checkpoint states its summary chain"
    walk = summary_chain.walk(head, len(leaves), summary_chain.genesis(region), 0, candidates)
    assert walk.broken_at is None, f"the chain breaks at {walk.broken_at}"
    assert [c.stream_seq for c in walk.accepted] == list(range(1, len(leaves) + 1))
    assert [c.summary["leaf_hash"] for c in walk.accepted] == [leaf.hex() for leaf in leaves]
    for c in walk.accepted:
        assert [d.link for d in candidates[c.stream_seq]].count(c.link) == 1, "published twice"


async def test_checkpoints_are_signed_and_match_the_log(endpoints: dict[str, Any]) -> None:
    await _traffic(endpoints, "us-east", 30)
    _check("us-east", *await _settled(endpoints, "us-east"))


async def test_a_killed_sealer_resumes_with_the_identical_tree(
    stack: DevStack, endpoints: dict[str, Any]
) -> None:
    sealer = stack.processes["sealer-us-east"]
    sent = [0]
    load = asyncio.create_task(_traffic(endpoints, "us-east", 150, sent))
    await wait_for(lambda: sent[0] >= 30 or load.done())  # the sealer is mid-log
    sealer.kill()  # mid-stream, no goodbye
    killed_at = sent[0]
    await wait_for(lambda: sent[0] >= killed_at + 30 or load.done())  # records it never saw
    sealer.start()
    await load
    _check("us-east", *await _settled(endpoints, "us-east"))


async def test_two_sealers_do_not_fork_the_checkpoints(
    stack: DevStack, endpoints: dict[str, Any]
) -> None:
    config = stack.root / "config" / "sealer-us-east.json"
    twin = stack._spawn("sealer-us-east-twin", "gateway", "seal", "--config", str(config))
    try:
        await _traffic(endpoints, "us-east", 80)
        _check("us-east", *await _settled(endpoints, "us-east"))
    finally:
        twin.stop()


@pytest.mark.timeout(90)  # reads the region's whole log each round
async def test_a_checkpoint_the_sealer_did_not_sign_does_not_stop_it(
    endpoints: dict[str, Any],
) -> None:
    """With the sealer's NATS credentials (not its key) someone publishes a checkpoint
    far ahead. The sealer does not resume from it: it rebuilds its tree and chain from
    RECORDS and goes on checkpointing after it, and what it signs still verifies."""
    region = "us-east"
    stated = checkpoints.Checkpoint(region, 10**9, b"\0" * 32, 1, b"\0" * 32)
    bogus = checkpoints.encode(stated, SigningKey.generate(), merkle.CompactTree())
    xr = await nats_as(endpoints["nats"]["regions"][region]["xr"]["sealer"])
    try:
        await xr.jetstream().publish(subjects.checkpoint_subject(region), bogus)
    finally:
        await xr.close()
    await _traffic(endpoints, region, 5)
    for _ in range(150):
        leaves, keyring, found = await _log_state(endpoints, region)
        last = [f for f in found if f["subject"] == subjects.checkpoint_subject(region)][-1]
        if last["data"] != bogus:
            signed = checkpoints.decode(last["data"], keyring.enrolled)
            if signed.size == len(leaves):
                assert signed.root == merkle.root(leaves)
                return
        await asyncio.sleep(0.2)
    raise AssertionError("the sealer never checkpointed past the bogus checkpoint")
