"""Full records stay in their region; only metadata reaches the central view."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import nats
import openai
import pytest
from mcp.shared.exceptions import MCPError
from nats.js.api import ConsumerConfig

from cordon.log import merkle
from cordon.nats import subjects
from cordon_dev.stack import DevStack
from tests.helpers import (
    authed_get,
    central_get,
    central_summary,
    eventually,
    gateway_sdk,
    nats_as,
    recent_records,
    sdk_chat,
)
from tests.mcp_agent import agent_session

# A summary reaches the central view once the region's next checkpoint settles it:
# about a second, more on a loaded 2-core test machine.
CENTRAL_VIEW_S = 20.0


def _ask(endpoints: dict[str, Any], region: str, content: str) -> str:
    """One call through the SDK; the id of the record it made."""
    raw = sdk_chat(endpoints["gateways"][region], endpoints["api_key"], content)
    return str(raw.headers["x-cordon-record-id"])


def _summary(endpoints: dict[str, Any], record_id: str) -> dict[str, Any] | None:
    return central_summary(endpoints, record_id)


async def test_summary_reaches_central_view_without_any_content(
    stack: DevStack, endpoints: dict[str, Any]
) -> None:
    secret = f"my card is {uuid.uuid4().hex}"
    record_id = _ask(endpoints, "eu-west", secret)

    summary = eventually(lambda: _summary(endpoints, record_id), timeout=CENTRAL_VIEW_S)
    assert summary["region"] == "eu-west" and summary["kind"] == "decision"
    assert summary["outcome"] == "allow" and summary["model"] == "mock-gpt"
    assert len(summary["leaf_hash"]) == 64
    # the agent is a pseudonym, never the raw identity
    assert summary["agent"] and summary["agent"] != "dev-app"

    marker = secret.split()[-1]
    view = authed_get(
        endpoints, endpoints["aggregator"] + "/v1/summaries", params={"limit": 1000}
    ).text
    assert marker not in view
    assert marker not in central_get(endpoints, "/v1/stats").text
    # nor anywhere in what crossed: the central stream and the view's files on disk
    nc = await nats_as(endpoints["nats"]["central"]["provision"])
    try:
        js = nc.jetstream()
        last = (await js.stream_info(subjects.AUDIT_SUMMARY_STREAM)).state.last_seq
        crossed = [
            (await js.get_msg(subjects.AUDIT_SUMMARY_STREAM, s)).data for s in range(1, last + 1)
        ]
    finally:
        await nc.close()
    assert any(record_id.encode() in data for data in crossed)
    assert not any(marker.encode() in data for data in crossed)
    central_store = Path(stack.root) / "run" / "nats" / "central"
    state = Path(stack.root) / "state"
    for path in [*central_store.rglob("*"), *state.glob("aggregator.sqlite3*")]:
        if path.is_file():
            assert marker.encode() not in path.read_bytes(), path


async def test_a_model_name_carrying_personal_text_never_reaches_central(
    stack: DevStack, endpoints: dict[str, Any]
) -> None:
    """What a caller types as a model name stays in the region: central sees the route's
    configured model entry, or `unrouted`, and nothing else, on the wire or on disk."""
    marker = uuid.uuid4().hex
    sdk = gateway_sdk(endpoints["gateways"]["eu-west"], endpoints["api_key"])
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(
            model=f"Jane Roe {marker} oncology follow-up",
            messages=[{"role": "user", "content": "hello"}],
        )
    record_id = caught.value.response.headers["x-cordon-record-id"]
    summary = eventually(lambda: _summary(endpoints, record_id), timeout=CENTRAL_VIEW_S)
    assert summary["model"] == "unrouted" and summary["outcome"] == "error"
    routed_id = _ask(endpoints, "eu-west", "hi")
    routed = eventually(lambda: _summary(endpoints, routed_id), timeout=CENTRAL_VIEW_S)
    assert routed["model"] == "mock-gpt"  # a configured model id, as the pack names it
    central_store = Path(stack.root) / "run" / "nats" / "central"
    state = Path(stack.root) / "state"
    for path in [*central_store.rglob("*"), *state.glob("aggregator.sqlite3*")]:
        if path.is_file():
            assert marker.encode() not in path.read_bytes(), path


async def test_stats_count_decisions_by_region_and_outcome(endpoints: dict[str, Any]) -> None:
    record_id = _ask(endpoints, "us-east", "count this one")
    eventually(lambda: _summary(endpoints, record_id), timeout=CENTRAL_VIEW_S)
    stats = central_get(endpoints, "/v1/stats").json()["regions"]
    assert stats["us-east"]["records"] >= 1
    assert stats["us-east"]["by_outcome"]["allow"] >= 1


async def test_central_credentials_cannot_read_regional_records(endpoints: dict[str, Any]) -> None:
    _ask(endpoints, "eu-west", "a record that must stay in eu-west")
    nc = await nats_as(endpoints["nats"]["central"]["provision"])
    try:
        remote = nc.jetstream(domain="eu-west")
        # The region's XR streams are reachable, so the path itself works...
        assert (await remote.stream_info(subjects.SUMMARY_STREAM)).state.messages >= 1
        # ...but RECORDS lives in AUDIT, which no leaf connection reaches.
        with pytest.raises(nats.js.errors.NotFoundError):
            await remote.stream_info(subjects.RECORDS_STREAM)
        with pytest.raises(nats.js.errors.NotFoundError):
            await remote.add_consumer(
                subjects.RECORDS_STREAM, ConsumerConfig(durable_name="exfiltrate")
            )
        with pytest.raises((nats.errors.NoRespondersError, nats.errors.TimeoutError)):
            await nc.request(
                f"$JS.eu-west.API.DIRECT.GET.{subjects.RECORDS_STREAM}",
                json.dumps({"seq": 1}).encode(),
                timeout=1.0,
            )
        with pytest.raises(nats.js.errors.NotFoundError):
            await remote.get_msg(subjects.RECORDS_STREAM, 1)
        # and subscribing to the record subjects from central hears nothing
        heard = await nc.subscribe(subjects.records_filter("eu-west"))
        _ask(endpoints, "eu-west", "another record")
        with pytest.raises(nats.errors.TimeoutError):
            await heard.next_msg(timeout=0.5)
    finally:
        await nc.close()


async def test_central_users_cannot_inject_regional_summaries(endpoints: dict[str, Any]) -> None:
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    nc = await nats_as(endpoints["nats"]["central"]["provision"], error_cb=on_error)
    try:
        with pytest.raises(nats.errors.TimeoutError):
            await nc.request("cordon.sum.eu-west.forged", b"{}", timeout=0.5)
    finally:
        await nc.close()
    assert any("permissions violation" in str(e).lower() for e in errors)


async def test_the_central_view_tracks_each_regions_signed_log(endpoints: dict[str, Any]) -> None:
    _ask(endpoints, "eu-west", "checkpoint me")
    nc = await nats_as(endpoints["nats"]["regions"]["eu-west"]["audit"]["provision"])
    try:
        js = nc.jetstream()
        last = (await js.stream_info(subjects.RECORDS_STREAM)).state.last_seq

        def caught_up() -> dict[str, Any] | None:
            regions = central_get(endpoints, "/v1/checkpoints").json()["regions"]
            latest = regions.get("eu-west")
            return latest if latest and latest["size"] >= last else None

        latest = eventually(caught_up, timeout=30.0, interval=0.25)
        leaves = [
            merkle.leaf_hash((await js.get_msg(subjects.RECORDS_STREAM, s)).data or b"")
            for s in range(1, latest["size"] + 1)
        ]
    finally:
        await nc.close()
    # the central side holds the root of the region's own records, having seen only hashes
    assert latest["root"] == merkle.root(leaves).hex()
    summaries = authed_get(
        endpoints, endpoints["aggregator"] + "/v1/summaries", params={"limit": 1000}
    ).json()["items"]
    assert all(s["region"] in ("eu-west", "us-east") for s in summaries)


@pytest.mark.usefixtures("fronted")  # other tests publish packs of their own
async def test_a_tool_calls_arguments_results_and_undeclared_names_stay_in_the_region(
    stack: DevStack, endpoints: dict[str, Any]
) -> None:
    """A tool call's intent and decision are in the region's log, with its arguments;
    central learns the server and tool only as the pack declares them (`undeclared`
    for a name the agent typed), and never the arguments or the result."""
    marker = uuid.uuid4().hex
    gateway = endpoints["gateways"]["eu-west"]
    key = {"authorization": f"Bearer {endpoints['api_key']}"}
    async with agent_session(f"{gateway}/mcp", key) as agent:
        echoed = await agent.call_tool("dev-tools__echo", {"text": f"argument {marker}"})
        with pytest.raises(MCPError) as undeclared:
            await agent.call_tool(f"dev-tools__lookup_{marker}", {})
    assert echoed.content[0].text == f"argument {marker}"  # type: ignore[union-attr]
    assert f"argument {marker}" in stack.processes["tool-server"].log_path.read_text()
    record_id = str((echoed.meta or {})["cordon/record"])
    refused_id = str(undeclared.value.data["record"])

    records = {r["id"]: r for r in await recent_records(endpoints, "eu-west", 50)}
    decision, refused = records[record_id], records[refused_id]
    intent = records[decision["intent"]]
    assert intent["kind"] == "intent" and intent["replica_seq"] < decision["replica_seq"]
    assert decision["tool"]["name"] == "echo" and decision["outcome"] == "allow"
    assert decision["content"]["arguments"] == {"text": f"argument {marker}"}
    assert refused["outcome"] == "block" and refused["rules"] == ["tools:undeclared_tool"]

    summary = eventually(lambda: _summary(endpoints, record_id), timeout=CENTRAL_VIEW_S)
    assert (summary["tool_server"], summary["tool"]) == ("dev-tools", "echo")
    blocked = eventually(lambda: _summary(endpoints, refused_id), timeout=CENTRAL_VIEW_S)
    assert (blocked["tool_server"], blocked["tool"]) == ("dev-tools", "undeclared")
    central_store = Path(stack.root) / "run" / "nats" / "central"
    state = Path(stack.root) / "state"
    for path in [*central_store.rglob("*"), *state.glob("aggregator.sqlite3*")]:
        if path.is_file():
            assert marker.encode() not in path.read_bytes(), path
