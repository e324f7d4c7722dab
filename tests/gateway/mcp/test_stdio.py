"""An MCP tool server the gateway owns as a subprocess: the dev tool server (built with
the official SDK) answers over stdio once `start()` has done the handshake; errors keep
their JSON-RPC code; a tool's progress reaches the caller before its result; a
cancelled or timed-out call leaves the server usable; a server that dies, or speaks
another revision, or writes a line past the cap, fails what waits on it at once;
closing it leaves no process behind."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cordon.errors import ToolServerError
from gateway.mcp import jsonrpc
from gateway.mcp.jsonrpc import Notification, Request
from gateway.mcp.stdio import StdioUpstream
from gateway.mcp.upstream import HANDSHAKE_VERSIONS, Upstream

pytestmark = [pytest.mark.servers, pytest.mark.timeout(60)]  # child processes

ROOT = Path(__file__).resolve().parents[3]
DEV_TOOLS = [sys.executable, "-m", "cordon_dev", "tool-server", "--stdio"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
DEV_TOOL_NAMES = {"echo", "contact", "send_email", "fail", "slow"}


def scripted(after_handshake: str, version: str = HANDSHAKE_VERSIONS[0]) -> list[str]:
    """A stand-in server: answers `initialize` with `version`, reads the next line
    (`notifications/initialized`), then runs `after_handshake`."""
    result = {
        "protocolVersion": version,
        "capabilities": {},
        "serverInfo": {"name": "scripted", "version": "1"},
    }
    code = (
        "import json, sys\n"
        "hello = json.loads(sys.stdin.readline())\n"
        f"answer = {{'jsonrpc': '2.0', 'id': hello['id'], 'result': {result!r}}}\n"
        "print(json.dumps(answer), flush=True)\n"
        "sys.stdin.readline()\n"
        f"{after_handshake}\n"
    )
    return [sys.executable, "-c", code]


@pytest.fixture(scope="module")
async def tools() -> AsyncIterator[StdioUpstream]:
    upstream = StdioUpstream("dev-tools", DEV_TOOLS, env=ENV, cwd=str(ROOT))
    await upstream.start()
    try:
        yield upstream
    finally:
        await upstream.close()


async def test_start_does_the_handshake_once(tools: StdioUpstream) -> None:
    hello = tools.initialized
    assert hello is not None and hello["protocolVersion"] == "2025-11-25"
    assert "tools" in hello["capabilities"] and hello["serverInfo"]["name"] == "cordon-dev-tools"
    await tools.start()  # started already: nothing happens
    assert tools.initialized is hello and tools.running


async def test_the_dev_tool_server_answers_over_stdio(tools: StdioUpstream) -> None:
    listed = await tools.request("tools/list")
    assert {tool["name"] for tool in listed["tools"]} == DEV_TOOL_NAMES
    echoed = await tools.request("tools/call", {"name": "echo", "arguments": {"text": "hi"}})
    assert echoed["content"][0]["text"] == "hi" and not echoed.get("isError")
    failed = await tools.request("tools/call", {"name": "fail", "arguments": {}})
    assert failed["isError"] is True  # a tool error is a result, not a JSON-RPC error


async def test_a_json_rpc_error_keeps_its_code(tools: StdioUpstream) -> None:
    with pytest.raises(ToolServerError) as refused:
        await tools.request("no/such/method")
    assert refused.value.rpc_code == jsonrpc.METHOD_NOT_FOUND


async def test_progress_reaches_the_caller_before_the_result(tools: StdioUpstream) -> None:
    seen: list[object] = []

    async def sink(message: Request | Notification) -> None:
        seen.append(message)

    params = {"name": "slow", "arguments": {"seconds": 0.2, "steps": 2}}
    result = await tools.request(
        "tools/call", {**params, "_meta": {"progressToken": "p-1"}}, on_message=sink
    )
    seen.append("result")
    assert result["content"][0]["text"] == "slept 0.2 s in 2 steps"
    progress = [m for m in seen if isinstance(m, Notification)]
    assert [m.params and m.params["progress"] for m in progress] == [1, 2]
    assert all(m.params and m.params["progressToken"] == "p-1" for m in progress)
    assert seen[-1] == "result" and len(seen) == 3
    assert tools.incoming.empty()  # nothing of this call went elsewhere


async def cancel_after_first_progress(upstream: Upstream) -> None:
    """Start a long `slow` call on `upstream`, cancel its task once the tool runs, and
    check the CancelledError arrives at once."""
    running = asyncio.Event()

    async def sink(message: Request | Notification) -> None:
        running.set()

    params = {
        "name": "slow",
        "arguments": {"seconds": 20, "steps": 1},
        "_meta": {"progressToken": 7},
    }
    call = asyncio.create_task(upstream.request("tools/call", params, on_message=sink))
    await asyncio.wait_for(running.wait(), 10)
    call.cancel()
    async with asyncio.timeout(1):
        with pytest.raises(asyncio.CancelledError):
            await call


async def test_a_cancelled_call_ends_at_once_and_the_server_stays_usable(
    tools: StdioUpstream,
) -> None:
    await cancel_after_first_progress(tools)
    echoed = await tools.request("tools/call", {"name": "echo", "arguments": {"text": "next"}})
    assert echoed["content"][0]["text"] == "next"


async def test_a_call_past_its_deadline_fails_and_the_server_stays_usable(
    tools: StdioUpstream,
) -> None:
    params = {"name": "slow", "arguments": {"seconds": 20, "steps": 1}}
    with pytest.raises(ToolServerError, match="no answer") as late:
        await tools.request("tools/call", params, within_s=0.3)
    assert late.value.rpc_code is None
    echoed = await tools.request("tools/call", {"name": "echo", "arguments": {"text": "after"}})
    assert echoed["content"][0]["text"] == "after"


async def test_a_server_that_dies_fails_what_waits_and_close_leaves_nothing() -> None:
    upstream = StdioUpstream("dying", scripted("sys.stdin.readline(); sys.exit(3)"))
    await upstream.start()
    with pytest.raises(ToolServerError, match="exited") as died:
        await upstream.request("tools/list", within_s=20)
    assert died.value.rpc_code is None
    await upstream.close()
    assert not upstream.running
    with pytest.raises(ToolServerError, match="not running"):
        await upstream.request("tools/list")


async def test_a_server_that_exits_during_the_handshake_fails_start() -> None:
    upstream = StdioUpstream("mute", [sys.executable, "-c", "import sys; sys.stdin.readline()"])
    with pytest.raises(ToolServerError, match="exited"):
        await upstream.start()
    assert not upstream.running


async def test_a_server_speaking_another_revision_is_refused() -> None:
    upstream = StdioUpstream("old", scripted("", version="2024-11-05"))
    with pytest.raises(ToolServerError, match="2024-11-05"):
        await upstream.start()
    assert not upstream.running and upstream.initialized is None


async def test_a_line_past_the_cap_fails_the_call_at_once() -> None:
    chatty = scripted("sys.stdin.readline(); print('x' * 4096, flush=True); sys.stdin.read()")
    upstream = StdioUpstream("chatty", chatty, max_message_bytes=1024)
    await upstream.start()
    try:
        with pytest.raises(ToolServerError, match="over 1024 bytes"):
            await upstream.request("tools/list", within_s=20)
    finally:
        await upstream.close()
    assert not upstream.running


async def test_a_server_that_ignores_stdin_closing_is_stopped() -> None:
    upstream = StdioUpstream("stubborn", scripted("import time\nwhile True: time.sleep(1)"))
    await upstream.start()
    await upstream.close()  # stdin closed, then SIGTERM
    assert not upstream.running
