"""The dev MCP tool server answers the official MCP client as a real server does,
over Streamable HTTP and over stdio."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from cordon_dev import tool_server
from cordon_dev.inprocess import serve_in_loop

ROOT = Path(__file__).resolve().parents[2]


def _text(result: object) -> str:
    return "".join(getattr(part, "text", "") for part in getattr(result, "content", []))


@pytest.mark.timeout(60)
async def test_its_tools_answer_over_streamable_http() -> None:
    served = serve_in_loop(tool_server.app(), lifespan="on")
    async with served as base, Client(f"{base}/mcp") as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert names == {"echo", "contact", "send_email", "fail", "slow"}
        echoed = await client.call_tool("echo", {"text": "hello"})
        assert not echoed.is_error and _text(echoed) == "hello"
        contact = await client.call_tool("contact", {"account": "acme"})
        assert tool_server.CONTACT_EMAIL in _text(contact)
        failed = await client.call_tool("fail", {})
        assert failed.is_error and "the tool failed" in _text(failed)


@pytest.mark.timeout(60)
async def test_its_tools_answer_over_stdio() -> None:
    command = StdioServerParameters(
        command=sys.executable,
        args=["-m", "cordon_dev", "tool-server", "--stdio"],
        cwd=str(ROOT),
    )
    async with Client(command) as client:
        echoed = await client.call_tool("echo", {"text": "over stdio"})
        assert _text(echoed) == "over stdio"
