"""An agent framework's own MCP client, end to end on the dev stack (issue 24): the
OpenAI Agents SDK runs an agent whose model is the gateway's chat completions and whose
tool server is the gateway's MCP endpoint for the dev tools. The model (the mock) asks
for `echo`, the SDK calls it through the gateway, the result goes back to the model,
which answers in text; the region's log holds the tool call's intent and decision
beside the two model calls. The SDK's own tracing, on by default, would send the run
to api.openai.com around the gateway (docs/tools.md): it is off, and the test sees the
process resolve no name but loopback's."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cordon_dev.stack import DevStack
from tests.helpers import audit_get, eventually, unique_word

pytestmark = [pytest.mark.servers, pytest.mark.timeout(60)]

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _records_since(endpoints: dict[str, Any], since: str, agent: str) -> list[dict[str, Any]]:
    """The eu-west records of `agent` from `since` on, as its audit API serves them."""
    found = audit_get(
        endpoints,
        "eu-west",
        "/v1/records/search",
        params={"agent": agent, "since": since, "limit": 1000},
    )
    assert found.status_code == 200, found.text
    return [item["record"] for item in found.json()["items"] if item["verified"]]


@pytest.mark.usefixtures("fronted")  # other tests publish packs of their own
async def test_an_openai_agents_sdk_agent_calls_a_tool_through_the_gateway(
    stack: DevStack, endpoints: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "1")
    # A key tracing could export with: were it on, its exporter would reach for
    # api.openai.com, which the resolver below would see.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-a-real-key")
    resolved: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def watched(host: Any, *args: Any, **kwargs: Any) -> Any:
        resolved.append(str(host))
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", watched)
    # Imported here, after the environment is set: the SDK reads it on first use.
    from agents import Agent, OpenAIChatCompletionsModel, Runner, set_tracing_disabled
    from agents.mcp import MCPServerStreamableHttp, create_static_tool_filter
    from agents.tracing import get_trace_provider
    from openai import AsyncOpenAI

    set_tracing_disabled(True)
    marker = unique_word()
    key = endpoints["api_key"]
    since = (datetime.now(UTC) - timedelta(seconds=2)).isoformat(timespec="microseconds")
    model = OpenAIChatCompletionsModel(
        model="mock-gpt",
        openai_client=AsyncOpenAI(
            base_url=endpoints["gateways"]["eu-west"] + "/v1", api_key=key, max_retries=0
        ),
    )
    tools = MCPServerStreamableHttp(
        params={
            "url": endpoints["mcp"]["eu-west"]["dev-tools"],
            "headers": {"Authorization": f"Bearer {key}"},
            "timeout": 10,
        },
        name="dev-tools",
        # The mock calls the first tool offered: offer only echo.
        tool_filter=create_static_tool_filter(allowed_tool_names=["echo"]),
    )
    async with tools:
        agent = Agent(
            name="governed",
            instructions="Use the echo tool, then answer.",
            model=model,
            mcp_servers=[tools],
        )
        result = await Runner.run(agent, f"say {marker}", max_turns=4)
    get_trace_provider().force_flush()  # what tracing would have sent, it sends now

    # model -> echo (through the gateway's MCP endpoint) -> model -> text
    assert result.final_output == f"tool said: echo: say {marker}"
    calls = [item for item in result.new_items if item.type == "tool_call_item"]
    outputs = [item for item in result.new_items if item.type == "tool_call_output_item"]
    assert len(calls) == len(outputs) == 1
    assert json.loads(calls[0].raw_item.arguments) == {"text": f"echo: say {marker}"}  # type: ignore[union-attr]
    assert f"echo: say {marker}" in stack.processes["tool-server"].log_path.read_text()

    def recorded() -> list[dict[str, Any]] | None:
        mine = [
            r
            for r in _records_since(endpoints, since, "dev-app")
            if marker in json.dumps(r.get("content"))
        ]
        return mine if len(mine) >= 4 else None

    mine = eventually(recorded, timeout=15)
    tool_records = [r for r in mine if (r.get("tool") or {}).get("name") == "echo"]
    intent, decision = sorted(tool_records, key=lambda r: r["replica_seq"])
    assert intent["kind"] == "intent" and intent["outcome"] == "pending"
    assert decision["kind"] == "decision" and decision["intent"] == intent["id"]
    assert decision["outcome"] == "allow" and decision["tool"]["server"] == "dev-tools"
    assert decision["content"]["arguments"] == {"text": f"echo: say {marker}"}
    model_calls = [r for r in mine if r.get("model") == "mock-gpt"]
    assert len(model_calls) == 2  # asked for the tool; read its result
    # Nothing but the gateway: no name resolved off this machine (tracing's exporter
    # would resolve api.openai.com), and tracing reports itself off.
    assert set(resolved) <= LOOPBACK, resolved
    assert get_trace_provider().create_trace("probe").export() is None
