"""Pipelined JetStream publishing against a real nats-server: acks, dedupe and errors."""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client as NATS
from nats.js.api import DiscardPolicy, StreamConfig

from cordon.procs import free_port, nats_server_binary, port_is_free
from gateway.jspublish import StreamPublisher


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    store: Path = tmp_path_factory.mktemp("jspublish")
    server = subprocess.Popen(
        [nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while port_is_free("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"nats://127.0.0.1:{port}"
    server.terminate()
    server.wait(5)


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    client = await nats.connect(nats_url, connect_timeout=5)
    yield client
    await client.close()


async def _stream(nc: NATS, name: str, **config: object) -> None:
    await nc.jetstream().add_stream(StreamConfig(name=name, subjects=[f"{name}.>"], **config))


async def test_acks_carry_stream_sequences_in_publish_order(nc: NATS) -> None:
    await _stream(nc, "ORDER")
    publisher = StreamPublisher(nc)
    assert await publisher.publish("ORDER.a", b"first") == 1
    seqs = await publisher.publish_many([("ORDER.a", f"m{i}".encode(), None) for i in range(50)])
    assert seqs == list(range(2, 52))
    msg = await nc.jetstream().get_msg("ORDER", 30)
    assert msg.data == b"m28"


async def test_a_retry_with_the_same_id_is_stored_once(nc: NATS) -> None:
    await _stream(nc, "DEDUPE")
    publisher = StreamPublisher(nc)
    first = await publisher.publish("DEDUPE.a", b"record", {"Nats-Msg-Id": "rec-1"})
    again = await publisher.publish("DEDUPE.a", b"record", {"Nats-Msg-Id": "rec-1"})
    assert first == again == 1
    assert (await nc.jetstream().stream_info("DEDUPE")).state.messages == 1


async def test_no_stream_and_a_full_stream_raise_nats_errors(nc: NATS) -> None:
    publisher = StreamPublisher(nc)
    with pytest.raises(nats.js.errors.NoStreamResponseError):
        await publisher.publish("NOWHERE.a", b"lost")
    await _stream(nc, "FULL", max_msgs=1, discard=DiscardPolicy.NEW)
    await publisher.publish("FULL.a", b"fits")
    with pytest.raises(nats.js.errors.APIError) as refused:
        await publisher.publish_many([("FULL.a", b"over", None), ("FULL.a", b"over", None)])
    assert refused.value.err_code == 10077  # maximum messages exceeded


async def test_a_missing_ack_times_out_as_ambiguous(nc: NATS) -> None:
    await nc.subscribe("SILENT.a")  # a listener that never answers: no "no responders" reply
    publisher = StreamPublisher(nc, timeout=0.3)
    with pytest.raises(nats.errors.TimeoutError):
        await publisher.publish("SILENT.a", b"maybe")
    with pytest.raises(nats.errors.TimeoutError):
        await publisher.publish_many([("SILENT.a", b"maybe", None)] * 3)
