"""An MCP tool server the gateway owns as a subprocess: the dev tool server (built with
the official SDK) answers over stdio; errors keep their JSON-RPC code; a server that
dies fails what waits on it at once; closing it leaves no process behind."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cordon.errors import ToolServerError
from gateway.mcp import jsonrpc
from gateway.mcp.stdio import StdioUpstream

pytestmark = [pytest.mark.servers, pytest.mark.timeout(60)]  # child processes

ROOT = Path(__file__).resolve().parents[3]
DEV_TOOLS = [sys.executable, "-m", "cordon_dev", "tool-server", "--stdio"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
INITIALIZE = {
    "protocolVersion": "2025-06-18",
    "capabilities": {},
    "clientInfo": {"name": "cordon-gateway", "version": "test"},
}


@pytest.fixture
async def tools() -> AsyncIterator[StdioUpstream]:
    upstream = StdioUpstream("dev-tools", DEV_TOOLS, env=ENV, cwd=str(ROOT))
    await upstream.start()
    try:
        yield upstream
    finally:
        await upstream.close()


async def test_the_dev_tool_server_answers_over_stdio(tools: StdioUpstream) -> None:
    hello = await tools.request("initialize", INITIALIZE)
    assert hello["protocolVersion"] == "2025-06-18" and "tools" in hello["capabilities"]
    await tools.notify("notifications/initialized")
    listed = await tools.request("tools/list")
    assert {tool["name"] for tool in listed["tools"]} == {"echo", "contact", "send_email", "fail"}
    echoed = await tools.request("tools/call", {"name": "echo", "arguments": {"text": "hi"}})
    assert echoed["content"][0]["text"] == "hi" and not echoed.get("isError")
    failed = await tools.request("tools/call", {"name": "fail", "arguments": {}})
    assert failed["isError"] is True  # a tool error is a result, not a JSON-RPC error


async def test_a_json_rpc_error_keeps_its_code(tools: StdioUpstream) -> None:
    await tools.request("initialize", INITIALIZE)
    await tools.notify("notifications/initialized")
    with pytest.raises(ToolServerError) as refused:
        await tools.request("no/such/method")
    assert refused.value.rpc_code == jsonrpc.METHOD_NOT_FOUND


async def test_a_server_that_dies_fails_what_waits_and_close_leaves_nothing() -> None:
    dying = [sys.executable, "-c", "import sys; sys.stdin.readline(); sys.exit(3)"]
    upstream = StdioUpstream("dying", dying)
    await upstream.start()
    with pytest.raises(ToolServerError, match="exited"):
        await upstream.request("tools/list", within_s=20)
    await upstream.close()
    assert not upstream.running
    with pytest.raises(ToolServerError, match="not running"):
        await upstream.request("tools/list")


async def test_a_server_that_ignores_stdin_closing_is_stopped() -> None:
    stubborn = [sys.executable, "-c", "import time\nwhile True: time.sleep(1)"]
    upstream = StdioUpstream("stubborn", stubborn)
    await upstream.start()
    await upstream.close()  # stdin closed, then SIGTERM
    assert not upstream.running
