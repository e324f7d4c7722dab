"""Every way a record can fail after its `replica_seq` was taken leaves a void for that
number, on a real JetStream server: encoding, size, publish, cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest
from nats.aio.client import Client as NATS

from cordon.errors import RecordCommitError, RecordEncodeError
from cordon.ids import uuid7
from cordon.log import envelope
from cordon.log.keys import SigningKey
from cordon.nats import subjects
from cordon.nats.streams import ensure_stream, records_config
from gateway.records import NatsSink, Recorder

REGION = "void-drill"


@pytest.fixture
async def recorder(bare_nats: NATS) -> AsyncIterator[Recorder]:
    await ensure_stream(bare_nats.jetstream(), records_config(REGION))
    replica = f"gw-{uuid7()[-8:]}"  # a fresh replica: its numbers start at 1
    sink = NatsSink(bare_nats, REGION, replica, 2.0)
    recorder = Recorder(sink, REGION, replica, SigningKey.generate(), 4096)
    await recorder.resume()
    yield recorder


def _record(**fields: Any) -> dict[str, Any]:
    return {"v": 1, "kind": "decision", "id": uuid7(), "agent": "a", **fields}


async def _numbered(nc: NATS, recorder: Recorder) -> list[dict[str, Any]]:
    """This replica's records in stream order."""
    js = nc.jetstream()
    subject = subjects.record_subject(REGION, recorder._replica)
    info = await js.stream_info(subjects.RECORDS_STREAM)
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        message = await js.get_msg(subjects.RECORDS_STREAM, seq)
        if message.subject == subject:
            found.append(msgpack.unpackb(envelope.decode(message.data or b"").payload))
    return found


async def _assert_voided(nc: NATS, recorder: Recorder, failed_id: str) -> None:
    await recorder.commit(_record())  # the next commit settles what is owed first
    kept = await _numbered(nc, recorder)
    assert [r["replica_seq"] for r in kept] == list(range(1, len(kept) + 1))  # no gap
    void = next(r for r in kept if r["kind"] == "void")
    assert void["voids"] == failed_id
    assert not recorder.owes_voids


async def test_a_record_that_cannot_be_encoded_leaves_a_void(
    bare_nats: NATS, recorder: Recorder
) -> None:
    bad = _record(person="x\ud800y")  # nothing the reader yields, but were it to happen
    with pytest.raises(RecordEncodeError):
        await recorder.commit(bad)
    assert recorder.owes_voids
    await _assert_voided(bare_nats, recorder, bad["id"])


async def test_a_record_too_large_even_without_its_content_leaves_a_void(
    bare_nats: NATS, recorder: Recorder
) -> None:
    large = _record(agent="a" * 8192, content={"prompt": "p" * 8192})
    with pytest.raises(RecordEncodeError, match="even without its content"):
        await recorder.commit(large)
    await _assert_voided(bare_nats, recorder, large["id"])


async def test_an_oversize_record_keeps_its_digest_and_its_number(
    bare_nats: NATS, recorder: Recorder
) -> None:
    seq = await recorder.commit(_record(content={"prompt": "p" * 8192}))
    assert seq is not None
    (kept,) = await _numbered(bare_nats, recorder)
    assert kept["content_hashed"] is True and kept["content"]["bytes"] > 8192


async def test_a_publish_the_stream_refuses_leaves_a_void(
    bare_nats: NATS, recorder: Recorder
) -> None:
    js = bare_nats.jetstream()
    # at least one message first: on an empty stream max_msgs 0 would mean "no limit"
    await recorder.commit(_record())
    config = (await js.stream_info(subjects.RECORDS_STREAM)).config
    config.max_msgs = (await js.stream_info(subjects.RECORDS_STREAM)).state.messages
    await js.update_stream(config)  # full, and it discards new messages
    refused = _record()
    try:
        with pytest.raises(RecordCommitError):
            await recorder.commit(refused)
    finally:
        config.max_msgs = -1
        await js.update_stream(config)
    await _assert_voided(bare_nats, recorder, refused["id"])


async def test_a_commit_cancelled_mid_publish_leaves_a_void(
    bare_nats: NATS, recorder: Recorder
) -> None:
    """A caller's task cancelled while waiting for the ack: the record may or may not
    have landed; its number has a void either way (a record and its void may share a
    number, which the verifier accepts)."""
    cancelled = _record()
    task = asyncio.create_task(recorder.commit(cancelled))
    await asyncio.sleep(0)  # into the publish
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert recorder.owes_voids
    await recorder.commit(_record())
    kept = await _numbered(bare_nats, recorder)
    assert sorted({r["replica_seq"] for r in kept}) == [1, 2]
    assert any(r["kind"] == "void" and r["voids"] == cancelled["id"] for r in kept)
