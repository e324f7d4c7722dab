"""The dev MCP tool server: a real MCP server (built with the official `mcp` SDK) that
the local topology's gateways front, and the tests call through them.

Its tools cover what a gateway must tell apart: `echo` returns its text (an email in
the arguments must never reach it), `contact` answers with an email address (which must
never reach the agent), `send_email` is the side effect the baseline pack keeps from
the dev app's role, `fail` is a tool error (`isError`), not a protocol error, and
`slow` reports progress at each of its steps while it sleeps (what a gateway relays
while a tool runs, and what a caller's cancellation must stop). Every call it runs is
a line on stderr (its log), so a test can tell whether a tool ran at all.

    python -m cordon_dev tool-server --port 8700     # Streamable HTTP at /mcp
    python -m cordon_dev tool-server --stdio         # the sidecar case: over stdio
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

__all__ = ["CONTACT_EMAIL", "app", "build", "run"]

CONTACT_EMAIL = "ana.lima@example.com"


def _ran(tool: str, **arguments: Any) -> None:
    print(f"tool-call {tool} {json.dumps(arguments)}", file=sys.stderr, flush=True)


def build() -> MCPServer:
    """A fresh server with the dev tools (one per test or process: no shared state)."""
    server = MCPServer("cordon-dev-tools")

    @server.tool(description="Return the text it is given.")
    def echo(text: str) -> str:
        _ran("echo", text=text)
        return text

    @server.tool(description="The contact person for an account.")
    def contact(account: str) -> str:
        _ran("contact", account=account)
        return f"The contact for {account} is Ana Lima, {CONTACT_EMAIL}."

    @server.tool(description="Send an email (a side effect).")
    def send_email(to: str, body: str) -> str:
        _ran("send_email", to=to, body=body)
        return f"sent to {to} ({len(body)} characters)"

    @server.tool(description="Always fails, as a tool: the result says isError.")
    def fail(reason: str = "it always does") -> str:
        raise ToolError(f"the tool failed: {reason}")

    @server.tool(description="Sleep for a while, reporting progress at each step.")
    async def slow(ctx: Context, seconds: float = 1.0, steps: int = 2) -> str:
        for step in range(steps):
            await ctx.report_progress(step + 1, steps, f"step {step + 1} of {steps}")
            await asyncio.sleep(seconds / max(steps, 1))
        return f"slept {seconds} s in {steps} steps"

    return server


def app(server: MCPServer | None = None) -> Any:
    """The Streamable HTTP app at `/mcp`, stateless: any replica may take any request."""
    return (server or build()).streamable_http_app(stateless_http=True)


def run(host: str, port: int, stdio: bool = False) -> None:
    server = build()
    if stdio:
        server.run("stdio")
        return
    import uvicorn

    uvicorn.run(app(server), host=host, port=port, log_level="warning")
