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
from gateway import nats_backplane
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
Write = bytes | None  # a value put, or (None) the key deleted


async def _replayed_then_new(
    jetstream_url: str, kv: KeyValue, written: list[Write], then: bytes, replayed: int
) -> tuple[list[Offered], Offered]:
    """`written` to a fresh key, then a replica's watch begins: the `replayed` packs it
    offers before it says it is live; then `then` is written: how that comes."""
    name = f"pack-{uuid.uuid4().hex[:8]}"
    key = subjects.pack_key(name)
    for value in written:
        await (kv.put(key, value) if value is not None else kv.delete(key))
    backplane = NatsBackplane(Endpoint(jetstream_url), Endpoint(jetstream_url), "eu-west", "r1", 2)
    await backplane.connect()
    updates = backplane.pack_updates(name)
    try:
        kept = [await _next(updates) for _ in range(replayed)]
        assert (await _next(updates)).value is None  # live from here
        await kv.put(key, then)
        later = await _next(updates)
    finally:
        await updates.aclose()  # type: ignore[attr-defined]
        await backplane.close()
    return [(u.value, u.replayed) for u in kept], (later.value, later.replayed)


@pytest.mark.parametrize("race", [False, True], ids=["in-order", "marker-first"])
async def test_the_buckets_kept_revisions_are_history_and_a_later_write_is_not(
    bare_nats: NATS, jetstream_url: str, race: bool, request: pytest.FixtureRequest
) -> None:
    if race:
        request.getfixturevalue("marker_first")
    written: list[Write] = [f"revision {r}".encode() for r in (1, 2, 3)]
    kv = await _bucket(bare_nats)
    kept, later = await _replayed_then_new(jetstream_url, kv, written, b"4", replayed=3)
    assert kept == [(value, True) for value in written]  # claiming no revision: as written
    assert later == (b"4", False)


async def test_a_pack_written_after_the_watch_began_on_an_empty_key_is_new(
    bare_nats: NATS, jetstream_url: str
) -> None:
    kv = await _bucket(bare_nats)
    kept, later = await _replayed_then_new(jetstream_url, kv, [], b"1", replayed=0)
    assert (kept, later) == ([], (b"1", False))


def _claiming(revision: int) -> bytes:
    """A stored pack as far as its claim goes (the replica checks the rest when offered)."""
    return json.dumps({"statement": json.dumps({"revision": revision})}).encode()


@pytest.mark.parametrize("race", [False, True], ids=["in-order", "marker-first"])
async def test_the_kept_revisions_come_newest_first_so_no_older_one_is_enforced_on_the_way(
    bare_nats: NATS, jetstream_url: str, race: bool, request: pytest.FixtureRequest
) -> None:
    """Written 5, 9, 7 (a stale revision written last): a fresh replica is offered 9
    first, then 7 and 5 as history it will call stale; a later write comes as new."""
    if race:
        request.getfixturevalue("marker_first")
    written: list[Write] = [_claiming(r) for r in (5, 9, 7)]
    kv = await _bucket(bare_nats)
    kept, later = await _replayed_then_new(jetstream_url, kv, written, _claiming(10), 3)
    assert kept == [(_claiming(r), True) for r in (9, 7, 5)]
    assert later == (_claiming(10), False)


async def test_a_deleted_key_replays_its_packs_and_not_the_delete(
    bare_nats: NATS, jetstream_url: str
) -> None:
    """A delete (`nats kv del`) is not a pack: not offered, so not refused either."""
    written: list[Write] = [_claiming(1), _claiming(2), None]
    kv = await _bucket(bare_nats)
    kept, later = await _replayed_then_new(jetstream_url, kv, written, _claiming(3), 2)
    assert kept == [(_claiming(2), True), (_claiming(1), True)]
    assert later == (_claiming(3), False)


async def test_a_write_between_reading_the_last_one_and_the_watch_is_new(
    bare_nats: NATS, jetstream_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key's last write is read, then the watch begins: a pack written in between
    is offered as new, after the history and once the watch is live."""
    kv = await _bucket(bare_nats)
    read_last_write = nats_backplane._last_write

    async def then_a_write(bucket: KeyValue, key: str) -> int:
        last = await read_last_write(bucket, key)
        await kv.put(key, _claiming(8))
        return last

    monkeypatch.setattr(nats_backplane, "_last_write", then_a_write)
    name = f"between-{uuid.uuid4().hex[:8]}"
    await kv.put(subjects.pack_key(name), _claiming(6))
    backplane = NatsBackplane(Endpoint(jetstream_url), Endpoint(jetstream_url), "eu-west", "r1", 2)
    await backplane.connect()
    updates = backplane.pack_updates(name)
    try:
        offered = [await _next(updates) for _ in range(3)]
    finally:
        await updates.aclose()  # type: ignore[attr-defined]
        await backplane.close()
    assert [(u.value, u.replayed) for u in offered] == [
        (_claiming(6), True),
        (None, False),
        (_claiming(8), False),
    ]
