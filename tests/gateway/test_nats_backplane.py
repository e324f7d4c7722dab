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


@pytest.mark.parametrize("race", [False, True], ids=["in-order", "marker-first"])
@pytest.mark.timeout(30)
async def test_the_buckets_kept_revisions_are_history_and_a_later_write_is_not(
    bare_nats: NATS, jetstream_url: str, race: bool, request: pytest.FixtureRequest
) -> None:
    if race:
        request.getfixturevalue("marker_first")
    kv = await _bucket(bare_nats)
    name = f"history-{uuid.uuid4().hex[:8]}"
    for revision in (1, 2, 3):
        await kv.put(subjects.pack_key(name), f"revision {revision}".encode())
    backplane = NatsBackplane(Endpoint(jetstream_url), Endpoint(jetstream_url), "eu-west", "r1", 2)
    await backplane.connect()
    updates = backplane.pack_updates(name)
    try:
        assert (await _next(updates)).value is None  # the watch has started
        kept = [await _next(updates) for _ in range(3)]
        assert [(u.value, u.replayed) for u in kept] == [
            (f"revision {r}".encode(), True) for r in (1, 2, 3)
        ]
        await kv.put(subjects.pack_key(name), b"revision 4")
        later = await _next(updates)
        assert (later.value, later.replayed) == (b"revision 4", False)
    finally:
        await updates.aclose()  # type: ignore[attr-defined]
        await backplane.close()


@pytest.mark.timeout(30)
async def test_a_pack_written_after_the_watch_began_on_an_empty_key_is_new(
    bare_nats: NATS, jetstream_url: str
) -> None:
    kv = await _bucket(bare_nats)
    name = f"empty-{uuid.uuid4().hex[:8]}"
    backplane = NatsBackplane(Endpoint(jetstream_url), Endpoint(jetstream_url), "eu-west", "r1", 2)
    await backplane.connect()
    updates = backplane.pack_updates(name)
    try:
        assert (await _next(updates)).value is None
        await kv.put(subjects.pack_key(name), b"revision 1")
        first = await _next(updates)
        assert (first.value, first.replayed) == (b"revision 1", False)
    finally:
        await updates.aclose()  # type: ignore[attr-defined]
        await backplane.close()


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
    kv = await _bucket(bare_nats)
    name = f"order-{uuid.uuid4().hex[:8]}"
    for revision in (5, 9, 7):
        await kv.put(subjects.pack_key(name), _claiming(revision))
    backplane = NatsBackplane(Endpoint(jetstream_url), Endpoint(jetstream_url), "eu-west", "r1", 2)
    await backplane.connect()
    updates = backplane.pack_updates(name)
    try:
        assert (await _next(updates)).value is None
        kept = [await _next(updates) for _ in range(3)]
        assert [(u.value, u.replayed) for u in kept] == [(_claiming(r), True) for r in (9, 7, 5)]
        await kv.put(subjects.pack_key(name), _claiming(10))
        later = await _next(updates)
        assert (later.value, later.replayed) == (_claiming(10), False)
    finally:
        await updates.aclose()  # type: ignore[attr-defined]
        await backplane.close()
