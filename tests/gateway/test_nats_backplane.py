"""The replica's NATS backplane telling the policy bucket's kept history from new
writes, on a real JetStream server: a restarted replica must not take an old revision
the bucket still holds for a new one (and refuse it, alarming its SREs)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from cordon.nats import Endpoint, subjects
from gateway.backplane import PackUpdate
from gateway.nats_backplane import NatsBackplane


async def _bucket(nc: NATS) -> KeyValue:
    js = nc.jetstream()
    try:
        return await js.key_value(subjects.POLICY_BUCKET)
    except BucketNotFoundError:
        return await js.create_key_value(KeyValueConfig(bucket=subjects.POLICY_BUCKET, history=10))


async def _next(updates: AsyncIterator[PackUpdate]) -> PackUpdate:
    return await asyncio.wait_for(anext(updates), 10)


@pytest.fixture
def marker_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """nats.py's watcher as it sometimes is: its end-of-history marker (None) delivered
    ahead of the history (its callback waits on the consumer info it then checks)."""
    watch = KeyValue.watch

    async def racing_watch(self: KeyValue, *args: Any, **kwargs: Any) -> Any:
        watcher = await watch(self, *args, **kwargs)
        updates, marker = watcher.updates, [None]

        async def updates_marker_first(timeout: float = 5.0) -> Any:
            return marker.pop() if marker else await updates(timeout=timeout)

        watcher.updates = updates_marker_first
        return watcher

    monkeypatch.setattr(KeyValue, "watch", racing_watch)


Offered = tuple[bytes | None, bool]  # a pack update's value, and whether it is history


async def _replayed_then_new(
    jetstream_url: str, kv: KeyValue, written: list[bytes], then: bytes
) -> tuple[list[Offered], Offered]:
    """`written` to a fresh key, then a replica's watch begins: what it replays; then
    `then` is written: how that comes."""
    name = f"pack-{uuid.uuid4().hex[:8]}"
    key = subjects.pack_key(name)
    for value in written:
        await kv.put(key, value)
    backplane = NatsBackplane(Endpoint(jetstream_url), Endpoint(jetstream_url), "eu-west", "r1", 2)
    await backplane.connect()
    updates = backplane.pack_updates(name)
    try:
        assert (await _next(updates)).value is None  # the watch has started
        kept = [await _next(updates) for _ in written]
        await kv.put(key, then)
        later = await _next(updates)
    finally:
        await updates.aclose()  # type: ignore[attr-defined]
        await backplane.close()
    return [(u.value, u.replayed) for u in kept], (later.value, later.replayed)


@pytest.mark.parametrize("race", [False, True], ids=["in-order", "marker-first"])
@pytest.mark.timeout(30)
async def test_the_buckets_kept_revisions_are_history_and_a_later_write_is_not(
    bare_nats: NATS, jetstream_url: str, race: bool, request: pytest.FixtureRequest
) -> None:
    if race:
        request.getfixturevalue("marker_first")
    written = [f"revision {r}".encode() for r in (1, 2, 3)]
    kept, later = await _replayed_then_new(jetstream_url, await _bucket(bare_nats), written, b"4")
    assert kept == [(value, True) for value in written]  # claiming no revision: as written
    assert later == (b"4", False)


@pytest.mark.timeout(30)
async def test_a_pack_written_after_the_watch_began_on_an_empty_key_is_new(
    bare_nats: NATS, jetstream_url: str
) -> None:
    kept, later = await _replayed_then_new(jetstream_url, await _bucket(bare_nats), [], b"1")
    assert (kept, later) == ([], (b"1", False))


def _claiming(revision: int) -> bytes:
    """A stored pack as far as its claim goes (the replica checks the rest when offered)."""
    return json.dumps({"statement": json.dumps({"revision": revision})}).encode()


@pytest.mark.parametrize("race", [False, True], ids=["in-order", "marker-first"])
@pytest.mark.timeout(30)
async def test_the_kept_revisions_come_newest_first_so_no_older_one_is_enforced_on_the_way(
    bare_nats: NATS, jetstream_url: str, race: bool, request: pytest.FixtureRequest
) -> None:
    """Written 5, 9, 7 (a stale revision written last): a fresh replica is offered 9
    first, then 7 and 5 as history it will call stale; a later write comes as new."""
    if race:
        request.getfixturevalue("marker_first")
    written = [_claiming(r) for r in (5, 9, 7)]
    kv = await _bucket(bare_nats)
    kept, later = await _replayed_then_new(jetstream_url, kv, written, _claiming(10))
    assert kept == [(_claiming(r), True) for r in (9, 7, 5)]
    assert later == (_claiming(10), False)
