"""An agent's side of MCP, as the tests play it: the official `mcp` SDK's client
(`ClientSession` over its Streamable HTTP transport) with a gateway credential, and
the pack section that pins the dev tool server's current definitions."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from cordon.packs.tools import tool_digest
from cordon_dev import tool_server

EMAIL = "bob.jones@example.com"  # personal data an agent's arguments or a tool may carry
REDACT_IN = {"name": "no-email-in", "type": "input_filter", "action": "redact"}
REDACT_IN["patterns"] = ["email"]
REDACT_OUT = {"name": "pii-out", "type": "output_filter", "action": "redact"}
REDACT_OUT["patterns"] = ["email"]


def pack(tools: dict[str, Any], *policies: dict[str, Any]) -> dict[str, Any]:
    """A pack named `default` with `policies` and the `tools:` section `tools`."""
    head = {"name": "default", "version": "1.0.0"}
    return {"pack": head, "policies": list(policies), "tools": tools}


def initialize(client: str = "cordon-tests", version: str = "2025-06-18") -> dict[str, Any]:
    """An `initialize` request as a client sends it first, by hand."""
    hello = {"protocolVersion": version, "capabilities": {}}
    hello["clientInfo"] = {"name": client, "version": "1"}
    return {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}


@contextlib.asynccontextmanager
async def agent_session(
    url: str, headers: Mapping[str, str], **options: Any
) -> AsyncIterator[ClientSession]:
    """An initialized MCP session with the endpoint at `url`, sending `headers`."""
    async with (
        httpx2.AsyncClient(headers=dict(headers), timeout=30.0) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write, **options) as session,
    ):
        await session.initialize()
        yield session


async def dev_tool_definitions() -> list[dict[str, Any]]:
    """The dev tool server's tools as `tools/list` lists them on the wire."""
    listed = await tool_server.build().list_tools()
    return [t.model_dump(by_alias=True, mode="json", exclude_none=True) for t in listed]


async def dev_tools_section(
    where: Mapping[str, Any], allow: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """A pack's `tools:` declaring the dev tool server at `where` (`url:` or
    `command:`), every tool pinned to its current digest; `allow` per tool name."""
    grants = []
    for definition in await dev_tool_definitions():
        grant: dict[str, Any] = {"name": definition["name"], "digest": tool_digest(definition)}
        if allow and definition["name"] in allow:
            grant["allow"] = dict(allow[definition["name"]])
        grants.append(grant)
    return {"servers": [{"name": "dev-tools", **where, "tools": grants}]}


def call_tool(url: str, key: str, name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """One `tools/call` as plain JSON-RPC over HTTP (no session: the gateway needs
    none), for tests that only need the call made; its JSON-RPC response."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
    body["params"] = {"name": name, "arguments": dict(arguments)}
    headers = {
        "authorization": f"Bearer {key}",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2025-06-18",
    }
    answer: dict[str, Any] = httpx.post(url, json=body, headers=headers, timeout=30).json()
    return answer
