"""A fail-open pack: answers keep flowing while the regional stream is away, and every
one of them lands in RECORDS exactly once, in order, when it returns."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cordon.errors import SpoolFullError
from cordon.log import envelope
from cordon.log.keys import SigningKey
from cordon_dev.procs import wait_for_http
from cordon_dev.stack import DevStack
from gateway.records import NatsSink, Recorder
from gateway.records import spool as spool_module
from gateway.records.spool import HEADER, Spool
from tests.helpers import (
    enforce,
    eventually,
    find_record,
    metric,
    nats_as,
    recent_records,
)
from tests.mcp_agent import call_tool, dev_tools_section


@pytest.fixture(scope="module")
def replica(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = stack.start_gateway("eu-west", "gw-open", stack.endpoints.mock_provider, pack_name="open")
    wait_for_http(url + "/readyz", 30, stack.processes["gateway-eu-west-gw-open"].proc)
    tools = asyncio.run(dev_tools_section({"url": stack.endpoints.tool_server}))
    document = {"pack": {"name": "open"}, "fail_mode": "open", "tools": tools}
    enforce(stack, url, json.dumps(document), tmp_path_factory.mktemp("open"))
    yield url
    stack.processes["gateway-eu-west-gw-open"].stop()


def _ask(url: str, endpoints: dict[str, Any], text: str) -> httpx.Response:
    return httpx.post(
        url + "/v1/chat/completions",
        json={"model": "mock-gpt", "messages": [{"role": "user", "content": text}]},
        headers={"authorization": f"Bearer {endpoints['api_key']}"},
        timeout=10,
    )


@pytest.mark.timeout(120)  # a NATS outage drill: stops, waits out, restarts a server
async def test_answers_during_an_outage_are_spooled_then_shipped_once(
    stack: DevStack, endpoints: dict[str, Any], replica: str
) -> None:
    assert stack.nats is not None
    stack.nats.stop("eu-west")
    try:
        answers = [_ask(replica, endpoints, f"open {i}") for i in range(5)]
        tool = call_tool(f"{replica}/mcp/dev-tools", endpoints["api_key"], "echo", {"text": "open"})
        # read while NATS is still away: once it is back the spool ships within moments
        page = httpx.get(replica + "/metrics").text
    finally:
        stack.nats.start("eu-west")
    for i, answer in enumerate(answers):
        assert answer.status_code == 200 and f"echo: open {i}" in answer.text
        assert answer.headers["x-cordon-record-spooled"] == "1"
        assert "x-cordon-record-seq" not in answer.headers
    # a tool call too: its intent and decision spooled, the tool called, the result released
    assert tool["result"]["content"][0]["text"] == "open"
    assert tool["result"]["_meta"]["cordon/record-seq"] is None  # spooled, not yet committed
    assert (metric(page, "cordon_gateway_fail_open_answers_total") or 0) >= 7  # SREs see it
    assert 0 < (metric(page, "cordon_gateway_spool_fill_ratio") or 0) < 1
    after = eventually(
        lambda: (r := _ask(replica, endpoints, "back")).status_code == 200 and r,
        timeout=20,
        interval=0.2,
    )

    ids = [a.headers["x-cordon-record-id"] for a in answers]
    # `after` may itself have been spooled behind them (answered while the spool was
    # still shipping): it is shipped by a later round, so wait for it with the rest.
    wanted = [*ids, after.headers["x-cordon-record-id"], tool["result"]["_meta"]["cordon/record"]]
    found: list[dict[str, Any] | None] = []
    for _ in range(80):
        found = [await find_record(endpoints, "eu-west", record_id) for record_id in wanted]
        if all(found):
            break
        await asyncio.sleep(0.25)
    assert all(r is not None and r["fail_mode"] == "open" for r in found)
    mine = [r for r in await recent_records(endpoints, "eu-west", 60) if r["replica"] == "gw-open"]
    assert sorted(r["id"] for r in mine if r["id"] in ids) == sorted(ids)  # exactly once each
    numbers = sorted(r["replica_seq"] for r in mine)
    assert numbers == list(range(numbers[0], numbers[-1] + 1))  # in order, no gap
    eventually(lambda: "cordon_gateway_spool_depth 0.0" in httpx.get(replica + "/metrics").text)


def test_a_full_spool_refuses_loudly(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.spool", max_bytes=64)
    spool.append("a", b"x" * 20)
    with pytest.raises(SpoolFullError):
        spool.append("b", b"y" * 40)
    assert spool.depth == 1


async def test_a_torn_last_frame_is_cut_off_and_every_whole_record_still_ships(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.spool"
    spool = Spool(path)
    for i in range(3):
        spool.append(f"id{i}", f"record {i}".encode())
    spool.close()
    whole = path.stat().st_size
    with path.open("ab") as handle:  # a crash in the middle of the fourth append
        handle.write(HEADER.pack(100, 3, 12345, 1) + b"id3" + b"half a rec")
    reopened = Spool(path)
    assert reopened.torn == 1 and reopened.depth == 3
    assert path.stat().st_size == whole  # cut back before anything is appended after it
    reopened.append("id4", b"record 4")
    sent: list[tuple[str, bytes]] = []

    async def publish(msg_id: str, data: bytes) -> None:
        sent.append((msg_id, data))

    assert await reopened.ship(publish) == 4
    assert sent == [(f"id{i}", f"record {i}".encode()) for i in (0, 1, 2, 4)]


def test_a_corrupt_frame_is_never_shipped(tmp_path: Path) -> None:
    path = tmp_path / "s.spool"
    spool = Spool(path)
    spool.append("id0", b"record 0")
    spool.append("id1", b"record 1")
    spool.close()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one bit of the last envelope flipped on disk
    path.write_bytes(bytes(data))
    reopened = Spool(path)
    assert [frame.msg_id for frame in reopened.pending()] == ["id0"] and reopened.torn == 1


async def test_replica_seq_resumes_past_records_still_in_the_spool(
    endpoints: dict[str, Any], tmp_path: Path
) -> None:
    key = SigningKey.generate()
    spool = Spool(tmp_path / "s.spool")
    for number in (41, 42):
        record = {"v": 1, "kind": "decision", "id": f"r{number}", "replica_seq": number}
        spool.append(f"r{number}", envelope.seal(record, key).encode())
    nc = await nats_as(endpoints["nats"]["regions"]["eu-west"]["audit"]["provision"])
    try:
        sink = NatsSink(nc, "eu-west", "gw-never-committed", 2.0)
        recorder = Recorder(sink, "eu-west", "gw-never-committed", key)
        await recorder.resume(spool)
    finally:
        await nc.close()
    assert recorder.next_replica_seq == 43


async def test_shipping_stops_at_the_first_failure_and_resumes_there(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.spool")
    for i in range(3):
        spool.append(f"id{i}", f"record {i}".encode())
    sent: list[str] = []

    async def flaky(msg_id: str, data: bytes) -> None:
        if msg_id == "id1" and "id1-failed" not in sent:
            sent.append("id1-failed")
            raise RuntimeError("stream away")
        sent.append(msg_id)

    with pytest.raises(RuntimeError):
        await spool.ship(flaky)
    assert sent == ["id0", "id1-failed"] and spool.depth == 2
    restarted = Spool(tmp_path / "s.spool")  # a crash here loses nothing
    assert restarted.depth == 2
    assert await restarted.ship(flaky) == 2
    assert sent[-2:] == ["id1", "id2"] and restarted.depth == 0


async def test_records_spooled_while_shipping_are_shipped_too_or_stay_the_oldest(
    tmp_path: Path,
) -> None:
    """Shipping reads the spool as it goes: a record spooled meanwhile (another call,
    the stream still refusing some) is shipped in the same pass, and when the pass stops,
    the spool's oldest is the record it stopped at."""
    spool = Spool(tmp_path / "s.spool")
    spool.append("id0", b"record 0")
    sent: list[str] = []

    async def meanwhile(msg_id: str, data: bytes) -> None:
        if msg_id == "id0":
            spool.append("id1", b"record 1")  # during the pass
        if msg_id == "id2":
            raise RuntimeError("stream away again")
        sent.append(msg_id)

    assert await spool.ship(meanwhile) == 2
    assert sent == ["id0", "id1"] and spool.depth == 0 and spool.oldest_ms is None
    spool.append("id2", b"record 2")
    time.sleep(0.002)  # a later millisecond: the oldest is told apart
    spool.append("id3", b"record 3")
    with pytest.raises(RuntimeError):
        await spool.ship(meanwhile)
    left = Spool(tmp_path / "s.spool").pending()
    assert [frame.msg_id for frame in left] == ["id2", "id3"] and spool.depth == 2
    assert spool.oldest_ms == left[0].spooled_ms < left[1].spooled_ms


async def test_a_pass_the_stream_refuses_at_once_reads_one_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the stream is away a pass runs every half second, under the lock calls spool
    under: it reads the record it tries, not the whole spool."""
    spool = Spool(tmp_path / "s.spool")
    for i in range(50):
        spool.append(f"id{i}", b"x" * 1000)
    read: list[str] = []
    frames = spool_module._read

    def counted(handle: Any) -> Any:
        for frame in frames(handle):
            read.append(frame.msg_id)
            yield frame

    async def away(msg_id: str, data: bytes) -> None:
        raise RuntimeError("stream away")

    monkeypatch.setattr(spool_module, "_read", counted)
    with pytest.raises(RuntimeError):
        await spool.ship(away)
    assert read == ["id0"] and spool.depth == 50


async def test_a_failed_directory_sync_after_a_shipped_record_still_counts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The offset file was replaced, its directory's fsync failed (a dying disk): that
    record is shipped as the offset says, so the spool empties on the next pass instead
    of holding new records behind a count one too high."""
    spool = Spool(tmp_path / "s.spool")
    for i in range(3):
        spool.append(f"id{i}", b"record")
    sync = Spool._sync_directory
    failures = [OSError("EIO")]

    def fails_once(self: Spool) -> None:
        if failures:
            raise failures.pop()
        sync(self)

    async def accepted(msg_id: str, data: bytes) -> None:
        return None

    monkeypatch.setattr(Spool, "_sync_directory", fails_once)
    with pytest.raises(OSError):
        await spool.ship(accepted)
    assert spool.depth == 2
    assert await spool.ship(accepted) == 2
    assert spool.depth == 0 and spool.pending() == [] and spool.oldest_ms is None


@pytest.mark.timeout(120)  # a NATS outage drill: stops, waits out, restarts a server
async def test_nats_killed_mid_load_every_fail_open_answer_lands_exactly_once(
    stack: DevStack, endpoints: dict[str, Any], replica: str
) -> None:
    assert stack.nats is not None
    answered: list[str] = []
    spooled: list[bool] = []

    async def caller(client: httpx.AsyncClient, worker: int) -> None:
        for i in range(40):
            response = await client.post(
                replica + "/v1/chat/completions",
                json={
                    "model": "mock-gpt",
                    "messages": [{"role": "user", "content": f"open-load {worker}-{i}"}],
                },
                headers={"authorization": f"Bearer {endpoints['api_key']}"},
                timeout=10,
            )
            assert response.status_code == 200, response.text  # fail-open: always an answer
            answered.append(response.headers["x-cordon-record-id"])
            spooled.append("x-cordon-record-spooled" in response.headers)
            await asyncio.sleep(0.01)

    async def outage() -> None:
        await asyncio.sleep(0.2)
        stack.nats.processes["eu-west"].kill()
        await asyncio.sleep(1.0)
        await asyncio.to_thread(stack.nats.start, "eu-west")

    async with httpx.AsyncClient() as client:
        await asyncio.gather(outage(), *(caller(client, w) for w in range(3)))
    eventually(
        lambda: "cordon_gateway_spool_depth 0.0" in httpx.get(replica + "/metrics").text, timeout=30
    )
    mine: list[dict[str, Any]] = []
    for _ in range(60):
        mine = [
            r for r in await recent_records(endpoints, "eu-west", 400) if r["replica"] == "gw-open"
        ]
        if set(answered) <= {r["id"] for r in mine}:
            break
        await asyncio.sleep(0.5)
    ids = [r["id"] for r in mine if r["id"] in set(answered)]
    assert sorted(ids) == sorted(answered)  # every answer has its record, none twice
    assert any(spooled) and not all(spooled)  # the outage really happened mid-load
    by_number: dict[int, list[dict[str, Any]]] = {}
    for r in mine:
        by_number.setdefault(r["replica_seq"], []).append(r)
    for holders in by_number.values():  # a number twice only for a record and its own void
        if len(holders) > 1:
            kinds = sorted(h["kind"] for h in holders)
            assert kinds == ["decision", "void"], holders


async def test_a_crash_while_emptying_the_spool_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path / "s.spool")
    for i in range(3):
        spool.append(f"id{i}", f"record {i}".encode())
    sent: list[str] = []

    async def publish(msg_id: str, data: bytes) -> None:
        sent.append(msg_id)

    def crash() -> None:
        raise SystemExit("killed before the spool file was truncated")

    monkeypatch.setattr(spool, "_empty", crash)
    with pytest.raises(SystemExit):
        await spool.ship(publish)
    restarted = Spool(tmp_path / "s.spool")
    restarted.append("id3", b"record 3")  # answered fail-open after the restart
    await restarted.ship(publish)
    # Re-shipped under their own ids (the stream keeps one of each); nothing skipped.
    assert sent == ["id0", "id1", "id2", "id0", "id1", "id2", "id3"]
    assert restarted.depth == 0 and (tmp_path / "s.spool").stat().st_size == 0
