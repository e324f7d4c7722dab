"""The tool servers one replica fronts: a connection to each server the active pack
declares, opened on first use and shared by every caller (the gateway is one client
to each server, with its own credentials: a caller's token never travels on), and
what each server lists now.

A server's definitions are read again on every `tools/list` an agent sends, so the
digests the pack pins are checked against what the agent is about to see; a
`tools/call` checks against the last listing (read once if there is none, and again
whenever the server says its list changed). `generation` counts those changes, so an
agent's open stream can tell it to list again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cordon.errors import PackError, ToolServerError
from cordon.packs.tools import ToolServer, tool_digest
from cordon.secretrefs import resolve_secret
from gateway.mcp import jsonrpc
from gateway.mcp.jsonrpc import Notification, Request, Response
from gateway.mcp.upstream import Upstream, connect
from gateway.runtime import Runtime

__all__ = ["Catalog", "Listed"]

log = logging.getLogger("cordon.gateway.mcp")
START_WITHIN_S = 10.0  # connect and handshake
RETRY_AFTER_S = 5.0  # a server that could not be reached is not tried again sooner
LIST_WITHIN_S = 10.0
MAX_PAGES = 50  # a server whose cursors never end is not listed forever
CHILD_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")  # a stdio server's own, beside allowed_env


@dataclass(frozen=True)
class Listed:
    """One tool as its server lists it now, and the pin that definition has."""

    definition: dict[str, Any]
    digest: str


class Catalog:
    def __init__(self, runtime: Runtime, clock: Callable[[], float] = time.monotonic) -> None:
        self.runtime = runtime
        self.generation = 0  # bumped whenever a server says its tool list changed
        self._open: dict[str, tuple[ToolServer, Upstream, asyncio.Task[None]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._listed: dict[str, dict[str, Listed]] = {}
        self._changes: dict[str, int] = {}  # per server: list changes it announced
        self._failed: dict[str, float] = {}  # per server: when it last could not be reached
        self._revision = -1  # the pack revision the open connections were checked against
        self._closing: set[asyncio.Task[None]] = set()
        self._clock = clock

    async def upstream(self, server: ToolServer) -> Upstream:
        """The open connection to `server`; `ToolServerError` if it cannot be had (at
        once for a while after it could not: callers do not queue on a dead server)."""
        self._prune_undeclared()
        failed = self._failed.get(server.name)
        if failed is not None and self._clock() - failed < RETRY_AFTER_S:
            raise ToolServerError(f"tool server {server.name!r} was unavailable moments ago")
        opened = self._open.get(server.name)
        if opened is not None and opened[0].connection == server.connection and opened[1].running:
            return opened[1]
        async with self._locks.setdefault(server.name, asyncio.Lock()):
            opened = self._open.get(server.name)
            if opened is not None:
                if opened[0].connection == server.connection and opened[1].running:
                    return opened[1]
                await self._drop(server.name)
            try:
                upstream = self._connect(server)
            except ToolServerError:
                self._failed[server.name] = self._clock()
                raise
            try:
                async with asyncio.timeout(START_WITHIN_S):
                    await upstream.start()
            except (TimeoutError, ToolServerError) as exc:
                self._failed[server.name] = self._clock()
                await upstream.close()
                raise ToolServerError(f"tool server {server.name!r} is unavailable: {exc}") from exc
            self._failed.pop(server.name, None)
            watch = asyncio.create_task(self._watch(server.name, upstream))
            self._open[server.name] = (server, upstream, watch)
            return upstream

    def _connect(self, server: ToolServer) -> Upstream:
        env = self.runtime.pack_env
        headers: dict[str, str] = {}
        try:
            if server.url is not None:
                self.runtime.egress.check_url(server.url)
            if server.credentials is not None:
                secret = resolve_secret(
                    server.credentials.secret_key_ref,
                    env,
                    self.runtime.settings.secret_store_dir,
                    f"tools.{server.name}",
                )
                scheme = server.credentials.scheme
                headers[server.credentials.header] = f"{scheme} {secret}" if scheme else secret
        except PackError as exc:
            raise ToolServerError(f"tool server {server.name!r}: {exc}") from exc
        child_env = {**_own_environment(os.environ), **env}
        poster = self.runtime.upstream.http  # the providers' client, its egress guard too
        return connect(
            server.name, server.url, server.command, headers=headers, env=child_env, poster=poster
        )

    async def _watch(self, name: str, upstream: Upstream) -> None:
        """What a server sends outside any call: list changes invalidate its listing;
        requests of its own (no caller to ask) are refused, so it never waits."""
        while True:
            message = await upstream.incoming.get()
            if isinstance(message, Notification):
                if message.method == "notifications/tools/list_changed":
                    self._listed.pop(name, None)
                    self._changes[name] = self._changes.get(name, 0) + 1
                    self.generation += 1
                continue
            await refuse_request(upstream, message, "no agent call is in flight to ask")

    async def listing(self, server: ToolServer, fresh: bool = False) -> dict[str, Listed]:
        """Each tool `server` lists, by name: read now (`fresh`) or the last listing."""
        if not fresh and server.name in self._listed:
            return self._listed[server.name]
        upstream = await self.upstream(server)
        changes = self._changes.get(server.name, 0)
        tools: dict[str, Listed] = {}
        params: dict[str, Any] = {}
        for _ in range(MAX_PAGES):
            page = await upstream.request("tools/list", params or None, within_s=LIST_WITHIN_S)
            for definition in page.get("tools") or []:
                if isinstance(definition, dict) and isinstance(definition.get("name"), str):
                    tools[definition["name"]] = Listed(definition, tool_digest(definition))
            cursor = page.get("nextCursor")
            if not isinstance(cursor, str) or not cursor:
                break
            params = {"cursor": cursor}
        if self._changes.get(server.name, 0) != changes:
            return tools  # the list changed while it was read: not kept, read again next
        if self._listed.get(server.name, tools) != tools:
            self.generation += 1
        self._listed[server.name] = tools
        return tools

    def _prune_undeclared(self) -> None:
        """Close, in the background, the connections to servers the active pack no
        longer declares (a stdio server is a process: it ends with its connection)."""
        pack = self.runtime.packs.current.pack
        if pack.revision == self._revision:
            return
        self._revision = pack.revision
        for name in [n for n in self._open if pack.tools.server(n) is None]:
            task = asyncio.create_task(self._drop(name))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _drop(self, name: str) -> None:
        if name not in self._open:
            return
        _, upstream, watch = self._open.pop(name)
        self._listed.pop(name, None)
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
        await upstream.close()

    async def close(self) -> None:
        for name in list(self._open):
            await self._drop(name)


async def refuse_request(upstream: Upstream, request: Request, why: str) -> None:
    """Answer a server's own request with a refusal (never leave it waiting)."""
    error = jsonrpc.ErrorObject(jsonrpc.METHOD_NOT_FOUND, f"refused by the gateway: {why}")
    with contextlib.suppress(ToolServerError):
        await upstream.respond(Response(request.id, error=error))


def _own_environment(environ: Mapping[str, str]) -> dict[str, str]:
    return {name: environ[name] for name in CHILD_ENV if name in environ}
