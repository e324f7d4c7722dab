"""An upstream MCP server the gateway owns as a subprocess, spoken to over its stdin
and stdout: one JSON-RPC message per line (the sidecar case, issue 24).

Requests are matched to their answers by ids of the gateway's own (an upstream's id
space is never the agent's); what else the server sends (notifications, its own
requests) waits in `incoming`. stderr is the server's log: drained line by line into
ours, so a chatty server never blocks on a full pipe. A server that exits fails every
request still waiting, at once: nothing hangs on a dead tool.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from cordon.errors import JsonRpcError, ToolServerError
from gateway.mcp import jsonrpc
from gateway.mcp.jsonrpc import Notification, Request, Response

__all__ = ["MAX_LINE_BYTES", "StdioUpstream"]

log = logging.getLogger("cordon.gateway.mcp")
MAX_LINE_BYTES = 8 * 1024 * 1024  # one message; a longer line ends the server's session
STOP_WAIT_S = 2.0  # after stdin closes, then after SIGTERM, before SIGKILL


class StdioUpstream:
    def __init__(
        self,
        name: str,
        command: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        self.name = name
        self._command, self._env, self._cwd = tuple(command), env, cwd
        self._proc: asyncio.subprocess.Process | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.incoming: asyncio.Queue[Request | Notification] = asyncio.Queue()

    async def start(self) -> None:
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self._command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=None if self._env is None else dict(self._env),
                cwd=self._cwd,
                limit=MAX_LINE_BYTES,
            )
        except OSError as exc:
            raise ToolServerError(f"tool server {self.name!r} could not start: {exc}") from exc
        self._tasks = [
            asyncio.create_task(self._read_messages()),
            asyncio.create_task(self._drain_log()),
        ]

    async def request(
        self, method: str, params: dict[str, Any] | None = None, within_s: float = 30.0
    ) -> dict[str, Any]:
        """The result of `method`; `ToolServerError` if the server answers an error
        (its JSON-RPC code kept), does not answer in time, or is gone."""
        request_id = next(self._ids)
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = answer
        try:
            await self._send(Request(request_id, method, params))
            async with asyncio.timeout(within_s):
                return await answer
        except TimeoutError as exc:
            await self.notify("notifications/cancelled", {"requestId": request_id})
            raise ToolServerError(f"tool server {self.name!r}: no answer to {method}") from exc
        finally:
            self._pending.pop(request_id, None)

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        await self._send(Notification(method, params))

    async def _send(self, message: Request | Notification | Response) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            raise ToolServerError(f"tool server {self.name!r} is not running")
        try:
            proc.stdin.write(jsonrpc.encode(message) + b"\n")
            await proc.stdin.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise ToolServerError(f"tool server {self.name!r} is gone: {exc}") from exc

    async def _read_messages(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            while line := await self._proc.stdout.readline():
                self._take(line)
        except (ValueError, asyncio.LimitOverrunError) as exc:  # a line past the limit
            log.warning("tool server %s: %s; stopping it", self.name, exc)
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
        finally:
            self._fail_pending(f"tool server {self.name!r} exited")

    def _take(self, line: bytes) -> None:
        try:
            message = jsonrpc.parse(line)
        except JsonRpcError as exc:
            log.warning("tool server %s sent a line that is no message: %s", self.name, exc)
            return
        if not isinstance(message, Response):
            self.incoming.put_nowait(message)
            return
        answer = self._pending.get(message.id) if isinstance(message.id, int) else None
        if answer is None or answer.done():
            log.warning("tool server %s answered an unknown request %r", self.name, message.id)
        elif message.error is not None:
            error = message.error
            failure = ToolServerError(f"tool server {self.name!r}: {error.message}", error.code)
            answer.set_exception(failure)
        else:
            answer.set_result(message.result or {})

    def _fail_pending(self, why: str) -> None:
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(ToolServerError(why))

    async def _drain_log(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        while line := await self._proc.stderr.readline():
            log.info("tool server %s: %s", self.name, line.decode(errors="replace").rstrip())

    async def close(self) -> None:
        """Close its stdin and let it exit; SIGTERM, then SIGKILL, if it does not."""
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        for stop in (None, proc.terminate, proc.kill):
            if stop is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), STOP_WAIT_S)
            if proc.returncode is not None:
                break
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None
