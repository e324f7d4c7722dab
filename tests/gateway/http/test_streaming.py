"""Streams: relayed as they come, cancelled upstream when the caller leaves."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from tests.helpers import chat_stream, find_record, stored_record


def _slow_stream(endpoints: dict[str, Any], content: str) -> Any:
    """A streamed call to eu-west that the mock answers one word every 50 ms."""
    gateway, key = endpoints["gateways"]["eu-west"], endpoints["api_key"]
    return chat_stream(gateway, key, content, model="slow-stream")


def _mock_counts(endpoints: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = httpx.get(
        endpoints["mock_provider"].removesuffix("/v1") + "/mock/stats"
    ).json()["counts"]
    return counts


async def test_client_disconnect_cancels_upstream_and_is_recorded(
    endpoints: dict[str, Any],
) -> None:
    cancelled_before = _mock_counts(endpoints).get("streams cancelled", 0)
    words = " ".join(["word"] * 40)
    with _slow_stream(endpoints, words) as response:
        record_id = response.headers["x-cordon-record-id"]
        first = next(response.iter_lines())
        assert first.startswith("data: ")  # the first event arrived long before the 2 s stream ends
        received = json.loads(first[6:])["choices"][0]["delta"]["content"]
    # leaving the `with` closed the connection mid-stream

    deadline = time.monotonic() + 5
    while _mock_counts(endpoints).get("streams cancelled", 0) == cancelled_before:
        assert time.monotonic() < deadline, "the provider's stream was never cancelled"
        await asyncio.sleep(0.05)
    record = None
    while record is None:
        assert time.monotonic() < deadline + 5, "no record of the abandoned stream"
        record = await find_record(endpoints, "eu-west", record_id)
        await asyncio.sleep(0.1)
    assert record["outcome"] == "cancelled" and record["status"] == 499
    assert record["error"] == "client_disconnected" and record["stream"] is True
    # the record holds the text released before the caller left: what it read, and what
    # was on its way when it closed (a loaded machine sends a word or two more), never
    # the rest of the provider's stream
    released = record["content"]["answer"]
    assert released.startswith(received) and f"echo: {words}".startswith(released)
    assert len(released) < len(f"echo: {words}") / 2


def test_first_event_arrives_before_the_stream_is_done(endpoints: dict[str, Any]) -> None:
    gateway, key = endpoints["gateways"]["us-east"], endpoints["api_key"]
    started = time.monotonic()
    with chat_stream(gateway, key, "a b c d e f g h", model="slow-stream") as response:
        lines = response.iter_lines()
        next(lines)
        first_at = time.monotonic() - started
        rest = list(lines)
        total = time.monotonic() - started
    assert "data: [DONE]" in rest
    # 10 events 50 ms apart: the first must not wait for the last
    assert first_at < total / 2


async def test_a_streams_intent_is_committed_before_its_first_byte(
    endpoints: dict[str, Any],
) -> None:
    prompt = f"intent first {time.time_ns()}"
    with _slow_stream(endpoints, prompt) as response:
        intent_id = response.headers["x-cordon-intent-id"]
        intent_seq = int(response.headers["x-cordon-intent-seq"])
        # Only the status line is out, and the intent is already in the region's log.
        intent = await stored_record(endpoints, "eu-west", intent_seq)
        lines = list(response.iter_lines())
    assert intent["kind"] == "intent" and intent["id"] == intent_id
    assert intent["outcome"] == "pending"
    assert intent["content"]["prompt"]["messages"][0]["content"] == prompt
    assert "answer" not in intent["content"]
    note = next(line for line in lines if line.startswith(": cordon-record-seq"))
    final_seq = int(note.split()[-1])
    final = await stored_record(endpoints, "eu-west", final_seq)
    assert final_seq > intent_seq and final["kind"] == "decision"
    assert final["intent"] == intent_id and final["id"] == response.headers["x-cordon-record-id"]
    assert final["content"]["answer"].startswith("echo: intent first")
    assert lines[-2:] == [note, "data: [DONE]"] or "data: [DONE]" in lines[-3:]
