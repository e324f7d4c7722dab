"""Limits where it counts: what a caller or a provider sends is bounded, each excess is
answered with a clear error in the caller's API shape and a record, and no record is
ever refused after the provider was paid."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cordon_dev.procs import wait_for_http
from cordon_dev.stack import DevStack
from tests.helpers import chat, find_record, stored_record

RSS_GROWTH_BOUND = 96 * 1024 * 1024  # what a 20 MiB answer may cost a replica, at most


@pytest.fixture(scope="module")
def limited(stack: DevStack) -> Iterator[tuple[str, str, int]]:
    """A replica of its own with a mock of its own, two calls at a time at most and
    records capped at 256 KiB."""
    mock = stack.start_mock("mock-limits")
    name = "gateway-eu-west-gw-limits"
    url = stack.start_gateway(
        "eu-west",
        "gw-limits",
        mock,
        extra={
            "targets": [{"id": "mock", "provider": {"api": "openai", "base_url": mock}}],
            "max_concurrent_calls": 2,
            "max_record_bytes": 256 * 1024,
        },
    )
    wait_for_http(url + "/readyz", 30, stack.processes[name].proc)
    yield url, mock.removesuffix("/v1"), stack.processes[name].proc.pid
    stack.processes[name].stop()
    stack.processes["mock-limits"].stop()


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_deeply_nested_json_is_a_400_with_a_record(
    limited: tuple[str, str, int], endpoints: dict[str, Any]
) -> None:
    url, _, _ = limited
    nested: Any = "bottom"
    for _ in range(200):
        nested = [nested]
    response = chat(url, endpoints["api_key"], body={"model": "mock-gpt", "messages": nested})
    assert response.status_code == 400
    assert "nested deeper than 64" in response.json()["error"]["message"]
    record = await find_record(endpoints, "eu-west", response.headers["x-cordon-record-id"])
    assert record is not None and record["status"] == 400


async def test_a_20_mib_answer_is_refused_and_the_replica_stays_small(
    limited: tuple[str, str, int], endpoints: dict[str, Any]
) -> None:
    url, mock, pid = limited
    httpx.post(mock + "/mock/behaviour", json={"mode": "huge"})
    try:
        before = _rss(pid)
        messages = [{"role": "user", "content": "say a lot"}]
        response = chat(url, endpoints["api_key"], body={"model": "mock-gpt", "messages": messages})
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "upstream_too_large"
        assert _rss(pid) - before < RSS_GROWTH_BOUND
        record = await find_record(endpoints, "eu-west", response.headers["x-cordon-record-id"])
        assert record is not None and record["error"] == "upstream_too_large"
        streamed = chat(
            url,
            endpoints["api_key"],
            body={"model": "mock-gpt", "stream": True, "messages": messages},
        )
        assert "exceeds 1048576 bytes" in streamed.text and "[DONE]" not in streamed.text
    finally:
        httpx.post(mock + "/mock/behaviour", json={"mode": "ok"})


async def test_calls_beyond_the_concurrency_cap_are_refused_with_retry_after(
    limited: tuple[str, str, int], endpoints: dict[str, Any]
) -> None:
    url, _, _ = limited
    body = {"model": "slow-first-byte", "messages": [{"role": "user", "content": "wait"}]}
    async with httpx.AsyncClient(timeout=30) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    url + "/v1/chat/completions",
                    json=body,
                    headers={"authorization": f"Bearer {endpoints['api_key']}"},
                )
                for _ in range(6)
            )
        )
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) == 2 and codes.count(503) == 4, codes
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "overloaded"
    assert "x-cordon-record-id" in refused.headers


async def test_a_record_too_large_for_the_stream_keeps_its_content_as_a_digest(
    limited: tuple[str, str, int], endpoints: dict[str, Any]
) -> None:
    url, _, _ = limited
    prompt = "p" * 200_000  # prompt and echoed answer: past the 256 KiB record cap
    response = chat(url, endpoints["api_key"], prompt)
    assert response.status_code == 200 and prompt in response.text
    record = await stored_record(endpoints, "eu-west", int(response.headers["x-cordon-record-seq"]))
    assert record["content_hashed"] is True and record["outcome"] == "allow"
    assert set(record["content"]) == {"sha256", "bytes"} and record["content"]["bytes"] > 400_000


async def test_a_3_mb_prompt_is_answered_and_recorded(endpoints: dict[str, Any]) -> None:
    prompt = "q" * 3_000_000
    response = chat(endpoints["gateways"]["us-east"], endpoints["api_key"], prompt)
    assert response.status_code == 200
    record = await stored_record(endpoints, "us-east", int(response.headers["x-cordon-record-seq"]))
    assert record["id"] == response.headers["x-cordon-record-id"]
    recorded = record["content"]
    assert record.get("content_hashed") or recorded["prompt"]["messages"][0]["content"] == prompt
