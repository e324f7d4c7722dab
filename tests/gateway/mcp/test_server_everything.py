"""MCP's reference server, `@modelcontextprotocol/server-everything` (npm, installed by
`make tools`), as an upstream of an in-process gateway: a server none of us wrote, in
another language and SDK, over stdio (a child process the gateway owns) and over
Streamable HTTP. The official `mcp` client, through the gateway, sees only the tools the
pack pinned and the caller may call; a denied one is absent and refused; an email in
the arguments never reaches the server's `echo`; progress is relayed; prompts pass the
output rules; the child's environment holds only what the gateway lets through."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError

from cordon.packs.tools import tool_digest
from cordon_dev.inprocess import InProcessGateway, in_process_gateway, serve_in_loop
from cordon_dev.procs import free_port, spawn, stop_group
from gateway.mcp.upstream import connect
from tests.mcp_agent import EMAIL, REDACT_IN, REDACT_OUT, agent_session, pack

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / ".tools/npm/node_modules/@modelcontextprotocol/server-everything"
ENTRY = PACKAGE / "dist" / "index.js"
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.skipif(
        NODE is None or not ENTRY.is_file(),
        reason="needs node and @modelcontextprotocol/server-everything: run `make tools`",
    ),
]

# The pack pins these of the server's ~15 tools; get-sum is pinned but nobody's.
PINNED = ("echo", "get-sum", "get-env", "trigger-long-running-operation")
DENIED = "get-sum"
VISIBLE = set(PINNED) - {DENIED}


async def listed_definitions(url: str | None, command: list[str]) -> dict[str, dict[str, Any]]:
    """The server's tools as `tools/list` lists them on the wire, by name, read with
    the gateway's own upstream client (the handshake the gateway will make)."""
    upstream = connect("everything", url, command, env=_child_env())
    await upstream.start()
    try:
        listed = await upstream.request("tools/list")
    finally:
        await upstream.close()
    return {t["name"]: t for t in listed["tools"]}


def _child_env() -> dict[str, str]:
    """What a child needs to start node: the gateway gives a stdio server no more."""
    return {name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ}


def tools_section(where: dict[str, Any], definitions: dict[str, dict[str, Any]]) -> dict[str, Any]:
    grants: list[dict[str, Any]] = []
    for name in PINNED:
        grant: dict[str, Any] = {"name": name, "digest": tool_digest(definitions[name])}
        if name == DENIED:
            grant["allow"] = {"roles": ["nobody"]}
        grants.append(grant)
    return {"servers": [{"name": "everything", **where, "tools": grants}]}


def tool_records(gateway: InProcessGateway, tool: str) -> list[dict[str, Any]]:
    return [r for r in gateway.records() if (r.get("tool") or {}).get("name") == tool]


async def pinned_and_denied(gateway: InProcessGateway, url: str) -> None:
    """What both transports promise: the pinned tools the caller may call, no other;
    the denied one refused and recorded; the echo sees a placeholder, not the email."""
    async with agent_session(f"{url}/mcp/everything", gateway.auth) as agent:
        names = {t.name for t in (await agent.list_tools()).tools}
        with pytest.raises(MCPError) as refused:
            await agent.call_tool(DENIED, {"a": 1, "b": 2})
        echoed = await agent.call_tool("echo", {"message": f"write to {EMAIL} today"})
    assert names == VISIBLE
    assert refused.value.code == -32602
    # server-everything's echo answers "Echo: <message>": the message it was given
    assert echoed.content[0].text == "Echo: write to [EMAIL] today"  # type: ignore[union-attr]
    (blocked,) = tool_records(gateway, DENIED)
    assert blocked["outcome"] == "block" and blocked["rules"] == ["tools:not_allowed"]
    intent, decision = tool_records(gateway, "echo")
    assert intent["kind"] == "intent" and decision["intent"] == intent["id"]
    assert decision["outcome"] == "redact" and decision["tool"]["server"] == "everything"
    assert EMAIL not in json.dumps(gateway.records())


async def test_server_everything_over_stdio_is_governed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert NODE is not None
    command = [NODE, str(ENTRY), "stdio"]
    secret, passed = uuid.uuid4().hex, uuid.uuid4().hex
    monkeypatch.setenv("CORDON_PROBE_SECRET", secret)  # the gateway's, not the child's
    monkeypatch.setenv("EVERYTHING_PROBE", passed)  # named by allowed_env below
    definitions = await listed_definitions(None, command)
    settings = {"allowed_env": ["EVERYTHING_*"]}
    async with (
        in_process_gateway(tmp_path, settings=settings) as gateway,
        serve_in_loop(gateway.app) as url,
    ):
        await gateway.activate(
            pack(tools_section({"command": command}, definitions), REDACT_IN, REDACT_OUT), 2
        )
        await pinned_and_denied(gateway, url)
        steps: list[tuple[float, float | None]] = []

        async def seen(progress: float, total: float | None, message: str | None) -> None:
            steps.append((progress, total))

        async with agent_session(f"{url}/mcp/everything", gateway.auth) as agent:
            finished = await agent.call_tool(
                "trigger-long-running-operation",
                {"duration": 0.2, "steps": 2},
                progress_callback=seen,
            )
            environment = await agent.call_tool("get-env", {})
            prompts = {p.name for p in (await agent.list_prompts()).prompts}
            asked = await agent.get_prompt("args-prompt", {"city": f"Lisbon <{EMAIL}>"})
    assert "completed" in finished.content[0].text  # type: ignore[union-attr]
    assert steps == [(1, 2), (2, 2)]
    child_env = json.loads(environment.content[0].text)  # type: ignore[union-attr]
    assert child_env.get("EVERYTHING_PROBE") == passed and secret not in json.dumps(child_env)
    assert "CORDON_PROBE_SECRET" not in child_env
    assert {"simple-prompt", "args-prompt"} <= prompts
    question = asked.messages[0].content.text  # type: ignore[union-attr]
    assert EMAIL not in question and "[EMAIL]" in question


@pytest.fixture
def over_http() -> Iterator[str]:
    """server-everything's Streamable HTTP transport on a free loopback port: its URL."""
    assert NODE is not None
    port = free_port()
    env = {**_child_env(), "PORT": str(port)}
    process = spawn(
        [NODE, str(ENTRY), "streamableHttp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            assert process.poll() is None, "server-everything exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "server-everything did not listen"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        stop_group(process)


async def test_server_everything_over_streamable_http_is_governed(
    tmp_path: Path, over_http: str
) -> None:
    definitions = await listed_definitions(over_http, [])
    async with in_process_gateway(tmp_path) as gateway, serve_in_loop(gateway.app) as url:
        await gateway.activate(
            pack(tools_section({"url": over_http}, definitions), REDACT_IN, REDACT_OUT), 2
        )
        await pinned_and_denied(gateway, url)
