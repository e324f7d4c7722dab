"""Commit failures after a sequence number was spent leave a void, never a silent gap."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from cordon.nats import subjects
from tests.helpers import nats_as, recent_records

REGION = "us-east"


async def _set_max_msgs(endpoints: dict[str, Any], limit: int) -> None:
    nc = await nats_as(endpoints["nats"]["regions"][REGION]["audit"]["provision"])
    try:
        js = nc.jetstream()
        config = (await js.stream_info(subjects.RECORDS_STREAM)).config
        config.max_msgs = limit
        await js.update_stream(config)
    finally:
        await nc.close()


async def _count(endpoints: dict[str, Any]) -> int:
    nc = await nats_as(endpoints["nats"]["regions"][REGION]["audit"]["provision"])
    try:
        return int((await nc.jetstream().stream_info(subjects.RECORDS_STREAM)).state.messages)
    finally:
        await nc.close()


def _ask(endpoints: dict[str, Any], text: str) -> httpx.Response:
    return httpx.post(
        endpoints["gateways"][REGION] + "/v1/chat/completions",
        json={"model": "mock-gpt", "messages": [{"role": "user", "content": text}]},
        headers={"authorization": f"Bearer {endpoints['api_key']}"},
    )


async def test_a_refused_commit_is_voided_and_the_sequence_stays_whole(
    endpoints: dict[str, Any],
) -> None:
    assert _ask(endpoints, "before").status_code == 200
    await _set_max_msgs(endpoints, await _count(endpoints))  # the stream is full: discard new
    try:
        refused = _ask(endpoints, "while the stream is full")
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "record_commit_failed"
    finally:
        await _set_max_msgs(endpoints, -1)
    await asyncio.sleep(0.2)
    after = _ask(endpoints, "after")
    assert after.status_code == 200

    mine = [r for r in await recent_records(endpoints, REGION, 10) if r["replica"] == "gw-1"][::-1]
    kinds = [r["kind"] for r in mine[-3:]]
    assert kinds == ["decision", "void", "decision"]
    numbers = [r["replica_seq"] for r in mine[-3:]]
    assert numbers == list(range(numbers[0], numbers[0] + 3))  # no gap
    assert mine[-2]["reason"].startswith("this sequence's record could not be committed")


async def _ask_at_once(endpoints: dict[str, Any], texts: list[str]) -> list[int]:
    async with httpx.AsyncClient(
        base_url=endpoints["gateways"][REGION],
        headers={"authorization": f"Bearer {endpoints['api_key']}"},
        timeout=10,
    ) as client:
        answers = await asyncio.gather(
            *(
                client.post(
                    "/v1/chat/completions",
                    json={"model": "mock-gpt", "messages": [{"role": "user", "content": t}]},
                )
                for t in texts
            )
        )
    return [answer.status_code for answer in answers]


async def test_voids_owed_by_concurrent_refusals_are_each_committed_once(
    endpoints: dict[str, Any],
) -> None:
    """Calls refused together owe voids; the calls that come next, together, commit each
    of them exactly once before their own records (no gap, no repeat, no 500)."""
    before = _ask(endpoints, "before")
    assert before.status_code == 200
    await _set_max_msgs(endpoints, await _count(endpoints))
    try:
        refused = await _ask_at_once(endpoints, [f"refused {i}" for i in range(4)])
        assert set(refused) == {503}
    finally:
        await _set_max_msgs(endpoints, -1)
    await asyncio.sleep(0.2)
    assert set(await _ask_at_once(endpoints, [f"after {i}" for i in range(8)])) == {200}

    mine = [r for r in await recent_records(endpoints, REGION, 200) if r["replica"] == "gw-1"]
    start = next(r["replica_seq"] for r in mine if r["id"] == before.headers["x-cordon-record-id"])
    since = sorted(r["replica_seq"] for r in mine if r["replica_seq"] >= start)
    assert since == list(range(start, start + len(since)))  # each once, no gap
    # "before", the voids, the eight after. How many refusals spent a number depends on
    # timing (a call that finds a void owed fails before taking one); one owed void is
    # enough: the eight after all arrive while it is owed.
    assert len(since) >= 1 + 1 + 8
    assert sum(r["kind"] == "void" for r in mine if r["replica_seq"] > start) >= 1


async def test_an_owed_void_is_committed_even_when_no_call_follows(
    endpoints: dict[str, Any],
) -> None:
    """A quiet replica does not leave a spent number open until its next call: it commits
    the owed void by itself once the stream takes records again."""
    assert _ask(endpoints, "before a quiet spell").status_code == 200
    await _set_max_msgs(endpoints, await _count(endpoints))
    try:
        refused = _ask(endpoints, "refused, then nobody calls")
        assert refused.status_code == 503
    finally:
        await _set_max_msgs(endpoints, -1)
    for _ in range(100):  # no call is made meanwhile
        mine = [r for r in await recent_records(endpoints, REGION, 5) if r["replica"] == "gw-1"]
        if mine and mine[0]["kind"] == "void":
            break
        await asyncio.sleep(0.1)
    assert mine[0]["kind"] == "void"
    assert "the stream did not take it" in mine[0]["reason"]
