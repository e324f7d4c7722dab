"""`make run` enforces the baseline pack from the first call, and fronts the dev MCP
tool server that pack declares."""

from __future__ import annotations

import json
from typing import Any

import httpx
import yaml

from cordon.nats import subjects
from cordon.packs import document_hash, signing, tools
from cordon_dev.stack import DEV_TOOLS, MCP_HEADERS, MCP_INITIALIZE, DevStack, render_baseline
from gateway import settings
from gateway.upstream.egress import EgressPolicy
from tests.helpers import chat, nats_as, stored_record


async def test_the_baseline_pack_is_published_first_and_screens_the_first_call(
    stack: DevStack, endpoints: dict[str, Any]
) -> None:
    # As published: the file with its dev tool server's url pointed at this stack's.
    published = stack.baseline_pack.read_text()
    assert published == render_baseline(endpoints["tool_server"])
    baseline = document_hash(yaml.safe_load(published))
    nc = await nats_as(endpoints["nats"]["central"]["provision"])
    try:
        js = nc.jetstream()
        first_seq = (await js.stream_info(subjects.POLICY_STREAM)).state.first_seq
        first = await js.get_msg(subjects.POLICY_STREAM, first_seq)
    finally:
        await nc.close()
    claimed = signing.claimed(first.data or b"")
    assert claimed == {"name": "default", "revision": 1, "hash": baseline}

    # The region's first decision record was made under it, whenever that call came.
    chat(endpoints["gateways"]["eu-west"], endpoints["api_key"], "hello")
    record = await _first_decision(endpoints)
    assert record["pack"]["name"] == "default" and record["pack"]["hash"] == baseline


async def _first_decision(endpoints: dict[str, Any]) -> dict[str, Any]:
    """gw-1's first decision record in eu-west; streams other tests ran first may have put
    intent records before it."""
    nc = await nats_as(endpoints["nats"]["regions"]["eu-west"]["audit"]["provision"])
    try:
        js = nc.jetstream()
        subject = subjects.record_subject("eu-west", "gw-1")
        seq = 1
        while True:
            found = await js.get_msg(subjects.RECORDS_STREAM, seq, subject=subject, next=True)
            record = await stored_record(endpoints, "eu-west", int(found.seq or 0))
            if record["kind"] == "decision":
                return record
            seq = int(found.seq or 0) + 1
    finally:
        await nc.close()


def test_every_region_fronts_the_dev_tool_server_which_answers_mcp(
    stack: DevStack, endpoints: dict[str, Any]
) -> None:
    """endpoints.json names each region's MCP URL; the tool server itself answers MCP,
    lists the definitions the baseline pins, and every gateway's egress lets it through."""
    gateways = endpoints["gateways"]
    assert endpoints["mcp"] == {
        r: {DEV_TOOLS: f"{gw}/mcp/{DEV_TOOLS}"} for r, gw in gateways.items()
    }
    url = endpoints["tool_server"]
    with httpx.Client(headers=MCP_HEADERS, timeout=10) as client:
        hello = _rpc(client.post(url, content=MCP_INITIALIZE))
        assert hello["result"]["serverInfo"]["name"] == "cordon-dev-tools"
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        listed = _rpc(client.post(url, json=listing))["result"]["tools"]
    pack = tools.parse(yaml.safe_load(stack.baseline_pack.read_text())["tools"])
    server = pack.server(DEV_TOOLS)
    assert server is not None and server.url == url
    on_the_wire = {each["name"]: tools.tool_digest(each) for each in listed}
    assert {g.name: on_the_wire.get(g.name) for g in server.tools} == {
        g.name: g.digest for g in server.tools
    }
    for region in gateways:
        replica = settings.load(stack.root / "config" / f"gateway-{region}.json")
        egress = EgressPolicy(replica.allowed_upstreams, replica.allow_loopback_upstreams)
        egress.check_url(url)  # raises if the gateway may not reach it


def _rpc(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC answer, as JSON or as the one event of an event stream."""
    assert response.status_code == 200, response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
        assert len(data) == 1, response.text
        answer: dict[str, Any] = json.loads(data[0])
        return answer
    return dict(response.json())
