"""A gateway assembled in one process (`cordon_dev.inprocess`): the real ASGI app and
runtime over an in-memory region, called through httpx.ASGITransport, leaves the same
records. The fast lane's proof that the seams hold; NATS claims stay on real servers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cordon_dev.inprocess import InProcessGateway, in_process_gateway, wait_for

pytestmark = pytest.mark.fast

PACK = {
    "pack": {"name": "default", "version": "1.0.0"},
    "policies": [
        {"name": "no-email", "type": "input_filter", "action": "block", "patterns": ["email"]}
    ],
}
CHAT = {"model": "mock-gpt", "messages": [{"role": "user", "content": "hello there"}]}


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[InProcessGateway]:
    async with in_process_gateway(tmp_path) as gateway:
        yield gateway


def _decisions(gw: InProcessGateway) -> list[dict[str, object]]:
    return [r for r in gw.records() if r.get("kind") == "decision"]


async def test_a_chat_completion_is_answered_and_recorded_first(gw: InProcessGateway) -> None:
    answer = await gw.client.post("/v1/chat/completions", json=CHAT, headers=gw.auth)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"]
    (record,) = _decisions(gw)
    assert record["id"] == answer.headers["x-cordon-record-id"]
    assert answer.headers["x-cordon-record-seq"] == "1"
    assert record["outcome"] == "allow" and record["agent"] == "inprocess-app"
    assert record["replica_seq"] == 1 and record["region"] == "eu-west"


async def test_a_stream_is_relayed_with_its_intent_and_decision(gw: InProcessGateway) -> None:
    async with gw.client.stream(
        "POST", "/v1/chat/completions", json={**CHAT, "stream": True}, headers=gw.auth
    ) as answer:
        assert answer.status_code == 200
        events = [line async for line in answer.aiter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and len(events) > 2
    kinds = [r["kind"] for r in gw.records()]
    assert kinds == ["intent", "decision"]
    intent, decision = gw.records()
    assert decision["intent"] == intent["id"]


async def test_anthropic_messages_are_recorded(gw: InProcessGateway) -> None:
    body = {"model": "mock-claude", "max_tokens": 64, "messages": CHAT["messages"]}
    headers = {"x-api-key": gw.auth["authorization"].split()[1], "anthropic-version": "2023-06-01"}
    answer = await gw.client.post("/v1/messages", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["content"][0]["type"] == "text"
    (record,) = _decisions(gw)
    assert record["model"] == "mock-claude"


async def test_embeddings_are_recorded(gw: InProcessGateway) -> None:
    body = {"model": "mock-embed", "input": ["one", "two"]}
    answer = await gw.client.post("/v1/embeddings", json=body, headers=gw.auth)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["data"]) == 2
    (record,) = _decisions(gw)
    assert record["model"] == "mock-embed" and record["outcome"] == "allow"


async def test_a_pack_offered_to_the_region_is_enforced(gw: InProcessGateway) -> None:
    await gw.activate(PACK, revision=1)
    body = {**CHAT, "messages": [{"role": "user", "content": "write to ana@example.com"}]}
    answer = await gw.client.post("/v1/chat/completions", json=body, headers=gw.auth)
    assert answer.status_code == 403
    (record,) = _decisions(gw)
    assert record["outcome"] == "block" and record["pack"]["revision"] == 1


async def test_an_unreachable_sink_fails_closed_before_the_provider_is_paid(
    gw: InProcessGateway,
) -> None:
    gw.backplane.sink.connected = False
    answer = await gw.client.post("/v1/chat/completions", json=CHAT, headers=gw.auth)
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "record_commit_failed"
    assert gw.provider.stats["requests"] == 0
    assert gw.records() == []


async def test_no_credential_is_a_401_and_no_record(gw: InProcessGateway) -> None:
    answer = await gw.client.post("/v1/chat/completions", json=CHAT)
    assert answer.status_code == 401
    assert gw.records() == []


def _applied_revision(gw: InProcessGateway) -> int | None:
    report = gw.backplane.applied.get("gw-1")
    return int(json.loads(report)["revision"]) if report else None


async def test_a_replica_whose_records_side_is_away_still_reports_what_it_enforces(
    gw: InProcessGateway,
) -> None:
    """The replicator reads these reports for staged rollouts: they go over the
    region's XR side alone, so an outage of the records side does not hide them."""
    gw.backplane.sink.connected = False
    await gw.activate(PACK, revision=5)
    await wait_for(lambda: _applied_revision(gw) == 5)


async def test_a_replica_whose_region_is_away_does_not_report_itself_current(
    gw: InProcessGateway,
) -> None:
    await wait_for(lambda: _applied_revision(gw) is not None)
    gw.backplane.applied.clear()
    gw.backplane.reachable = False  # its pack watch is not live either
    await gw.activate(PACK, revision=2)  # a change: a report would be due at once
    with pytest.raises(TimeoutError):
        await wait_for(lambda: "gw-1" in gw.backplane.applied, within_s=1.5)
