"""One interface over the two ways the gateway reaches an upstream MCP server: a
subprocess over stdio (`stdio.StdioUpstream`) or a URL over Streamable HTTP
(`http_upstream.HttpUpstream`). The gateway's MCP service speaks to `Upstream` only,
so what it relays (results, protocol errors, progress, a caller's cancellation) does
not depend on where the server runs.

The gateway is one client to each server: its own request ids, its own session, its
own credential. `start()` does the MCP handshake (docs/design/mcp-wire.md §2); the
same helper, `handshake`, serves both transports so they offer and accept the same
revisions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib import metadata
from typing import TYPE_CHECKING, Any, Protocol

from cordon.errors import ToolServerError
from gateway.mcp.jsonrpc import Notification, Request, Response

if TYPE_CHECKING:
    import httpx

    from gateway.upstream.httpclient import HttpClient

__all__ = [
    "HANDSHAKE_VERSIONS",
    "HANDSHAKE_WITHIN_S",
    "MAX_MESSAGE_BYTES",
    "MessageSink",
    "Upstream",
    "client_info",
    "connect",
    "handshake",
]

# The revisions the gateway speaks to a server, latest first: it offers the first and
# takes any of them back (a server answers its own latest when it lacks ours).
HANDSHAKE_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
HANDSHAKE_WITHIN_S = 10.0
MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # one message from a server; a larger one ends the exchange

MessageSink = Callable[[Request | Notification], Awaitable[None]]


class Upstream(Protocol):
    """An MCP server the gateway is a client of. `ToolServerError` for every failure:
    with `rpc_code` when the server answered a JSON-RPC error, without when it is
    unavailable."""

    name: str
    # What the server sends that relates to no request in flight (list changes, its
    # own requests when no caller is there to take them): the owner drains it.
    incoming: asyncio.Queue[Request | Notification]
    initialized: dict[str, Any] | None  # the server's InitializeResult, once started

    @property
    def running(self) -> bool: ...

    async def start(self) -> None:
        """Spawn or connect, then the handshake; a no-op when already started."""

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        within_s: float = 30.0,
        on_message: MessageSink | None = None,
    ) -> dict[str, Any]:
        """The result of `method`. What the server sends about this request while it
        runs (progress, log messages, its own requests) is awaited on `on_message`,
        in order, before the result returns. Past `within_s`, or when the awaiting
        task is cancelled, the server is told `notifications/cancelled`."""

    async def respond(self, response: Response) -> None:
        """Answer a request the server sent (sampling, elicitation, roots)."""

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None: ...

    async def close(self) -> None: ...


def client_info() -> dict[str, str]:
    """Who the gateway says it is in `initialize`."""
    try:
        version = metadata.version("cordon")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        version = "0"
    return {"name": "cordon-gateway", "version": version}


async def handshake(upstream: Upstream, within_s: float = HANDSHAKE_WITHIN_S) -> dict[str, Any]:
    """`initialize`, offering the latest revision and no client capabilities (the
    gateway relays no sampling, elicitation or roots it has not been asked for), then
    `notifications/initialized`. Sets and returns `upstream.initialized`;
    `ToolServerError` if the server answers a revision the gateway does not speak."""
    offer = {"protocolVersion": HANDSHAKE_VERSIONS[0], "capabilities": {}}
    params = {**offer, "clientInfo": client_info()}
    result = await upstream.request("initialize", params, within_s=within_s)
    version = result.get("protocolVersion")
    if version not in HANDSHAKE_VERSIONS:
        raise ToolServerError(
            f"tool server {upstream.name!r} speaks MCP {version!r}, not one of {HANDSHAKE_VERSIONS}"
        )
    upstream.initialized = result  # before the notification: HTTP sends its version header
    try:
        await upstream.notify("notifications/initialized")
    except BaseException:
        upstream.initialized = None
        raise
    return result


def connect(
    name: str,
    url: str | None,
    command: Sequence[str],
    *,
    headers: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    http: httpx.AsyncClient | None = None,
    poster: HttpClient | None = None,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> Upstream:
    """The upstream for a server at `url` (Streamable HTTP) or run as `command` (stdio),
    not started. `headers` (the gateway's own credential) go to an HTTP server only;
    `env` and `cwd` to a subprocess only."""
    # Imported here: each transport module imports this one for the handshake.
    from gateway.mcp.http_upstream import HttpUpstream
    from gateway.mcp.stdio import StdioUpstream

    if (url is None) == (not command):
        raise ValueError(f"tool server {name!r}: give exactly one of a URL or a command")
    if url is not None:
        return HttpUpstream(
            name,
            url,
            headers=headers or {},
            http=http,
            poster=poster,
            max_message_bytes=max_message_bytes,
        )
    return StdioUpstream(name, command, env=env, cwd=cwd, max_message_bytes=max_message_bytes)
