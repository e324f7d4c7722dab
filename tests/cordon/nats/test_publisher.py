"""Pipelined JetStream publishing against a real nats-server: acks, dedupe and errors."""

from __future__ import annotations

import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client as NATS
from nats.js.api import DiscardPolicy, StreamConfig

from cordon.nats import StreamPublisher


async def _stream(bare_nats: NATS, name: str, **config: object) -> None:
    config_ = StreamConfig(name=name, subjects=[f"{name}.>"], **config)
    await bare_nats.jetstream().add_stream(config_)


async def test_acks_carry_stream_sequences_in_publish_order(bare_nats: NATS) -> None:
    await _stream(bare_nats, "ORDER")
    publisher = StreamPublisher(bare_nats)
    assert await publisher.publish("ORDER.a", b"first") == 1
    seqs = await publisher.publish_many([("ORDER.a", f"m{i}".encode(), None) for i in range(50)])
    assert seqs == list(range(2, 52))
    msg = await bare_nats.jetstream().get_msg("ORDER", 30)
    assert msg.data == b"m28"


async def test_a_retry_with_the_same_id_is_stored_once(bare_nats: NATS) -> None:
    await _stream(bare_nats, "DEDUPE")
    publisher = StreamPublisher(bare_nats)
    first = await publisher.publish("DEDUPE.a", b"record", {"Nats-Msg-Id": "rec-1"})
    again = await publisher.publish("DEDUPE.a", b"record", {"Nats-Msg-Id": "rec-1"})
    assert first == again == 1
    assert (await bare_nats.jetstream().stream_info("DEDUPE")).state.messages == 1


async def test_no_stream_and_a_full_stream_raise_nats_errors(bare_nats: NATS) -> None:
    publisher = StreamPublisher(bare_nats)
    with pytest.raises(nats.js.errors.NoStreamResponseError):
        await publisher.publish("NOWHERE.a", b"lost")
    await _stream(bare_nats, "FULL", max_msgs=1, discard=DiscardPolicy.NEW)
    await publisher.publish("FULL.a", b"fits")
    with pytest.raises(nats.js.errors.APIError) as refused:
        await publisher.publish_many([("FULL.a", b"over", None), ("FULL.a", b"over", None)])
    assert refused.value.err_code == 10077  # maximum messages exceeded


async def test_a_missing_ack_times_out_as_ambiguous(bare_nats: NATS) -> None:
    await bare_nats.subscribe("SILENT.a")  # a listener that never answers: no "no responders" reply
    publisher = StreamPublisher(bare_nats, timeout=0.3)
    with pytest.raises(nats.errors.TimeoutError):
        await publisher.publish("SILENT.a", b"maybe")
    with pytest.raises(nats.errors.TimeoutError):
        await publisher.publish_many([("SILENT.a", b"maybe", None)] * 3)
