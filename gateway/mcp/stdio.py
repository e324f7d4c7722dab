"""An upstream MCP server the gateway owns as a subprocess, spoken to over its stdin
and stdout: one JSON-RPC message per line (the sidecar case, issue 24).

Requests are matched to their answers by ids of the gateway's own (an upstream's id
space is never the agent's). Each request in flight has its own queue, fed by the one
reader: its answer, and the progress notifications carrying its progress token (the
gateway mints unique tokens), arrive there in the order the server wrote them, so a
caller sees every progress before the result. A line carries nothing else that ties
it to a request, so what else the server sends (log messages, its own requests, list
changes) waits in `incoming`. stderr is the server's log: drained line by line into
ours, so a chatty server never blocks on a full pipe. A server that exits, or writes
a line past the size cap, fails every request still waiting, at once: nothing hangs
on a dead tool.
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
from gateway.mcp.upstream import MAX_MESSAGE_BYTES, MessageSink, handshake

__all__ = ["MAX_LINE_BYTES", "StdioUpstream"]

log = logging.getLogger("cordon.gateway.mcp")
MAX_LINE_BYTES = MAX_MESSAGE_BYTES  # one message; a longer line ends the server's session
STOP_WAIT_S = 2.0  # after stdin closes, then after SIGTERM, before SIGKILL

# What the reader hands a waiting request: its answer, a notification about it, or
# the failure that ended the server.
Delivery = Response | Notification | ToolServerError


class StdioUpstream:
    def __init__(
        self,
        name: str,
        command: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        *,
        max_message_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        self.name = name
        self._command, self._env, self._cwd = tuple(command), env, cwd
        self._limit = max_message_bytes
        self._proc: asyncio.subprocess.Process | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Queue[Delivery]] = {}
        self._progress: dict[str | int, int] = {}  # a progress token -> its request's id
        self._tasks: list[asyncio.Task[None]] = []
        self._gone: str | None = None  # why its stdout ended, once it has
        self._starting = asyncio.Lock()
        self.incoming: asyncio.Queue[Request | Notification] = asyncio.Queue()
        self.initialized: dict[str, Any] | None = None

    async def start(self) -> None:
        """Spawn the server and do the handshake; a no-op when it already runs."""
        async with self._starting:
            if self.running and self.initialized is not None:
                return
            await self._spawn()
            try:
                await handshake(self)
            except BaseException:
                await self.close()
                raise

    async def _spawn(self) -> None:
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self._command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=None if self._env is None else dict(self._env),
                cwd=self._cwd,
                limit=self._limit,
            )
        except OSError as exc:
            raise ToolServerError(f"tool server {self.name!r} could not start: {exc}") from exc
        self._gone = None
        self._tasks = [
            asyncio.create_task(self._read_messages()),
            asyncio.create_task(self._drain_log()),
        ]

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        within_s: float = 30.0,
        on_message: MessageSink | None = None,
    ) -> dict[str, Any]:
        """The result of `method`; `ToolServerError` if the server answers an error
        (its JSON-RPC code and data kept), does not answer in time, or is gone.
        `within_s` bounds the whole exchange, `on_message`'s time included."""
        request_id = next(self._ids)
        deliveries: asyncio.Queue[Delivery] = asyncio.Queue()
        self._pending[request_id] = deliveries
        token = _progress_token(params)
        if token is not None:
            self._progress[token] = request_id
        try:
            await self._send(Request(request_id, method, params))
            async with asyncio.timeout(within_s):
                return await self._await_answer(deliveries, on_message)
        except TimeoutError as exc:
            self._cancel(request_id, method, "timeout")
            raise ToolServerError(f"tool server {self.name!r}: no answer to {method}") from exc
        except asyncio.CancelledError:
            self._cancel(request_id, method, None)  # the caller's cancellation, relayed
            raise
        finally:
            self._pending.pop(request_id, None)
            if token is not None:
                self._progress.pop(token, None)

    async def _await_answer(
        self, deliveries: asyncio.Queue[Delivery], on_message: MessageSink | None
    ) -> dict[str, Any]:
        while True:
            delivery = await deliveries.get()
            if isinstance(delivery, ToolServerError):
                raise delivery
            if isinstance(delivery, Response):
                return self._result(delivery)
            if on_message is None:
                self.incoming.put_nowait(delivery)
            else:
                await on_message(delivery)

    def _result(self, response: Response) -> dict[str, Any]:
        error = response.error
        if error is None:
            return response.result or {}
        raise ToolServerError(f"tool server {self.name!r}: {error.message}", error.code, error.data)

    def _cancel(self, request_id: int, method: str, reason: str | None) -> None:
        """Tell the server to stop `request_id`, best effort and without waiting: the
        line is buffered for the pipe, so a cancelled caller is not held up. Never for
        `initialize` (the specification forbids cancelling it)."""
        proc = self._proc
        if method == "initialize" or proc is None or proc.stdin is None:
            return
        params: dict[str, Any] = {"requestId": request_id}
        if reason is not None:
            params["reason"] = reason
        line = jsonrpc.encode(Notification("notifications/cancelled", params)) + b"\n"
        with contextlib.suppress(ConnectionError, RuntimeError):
            if proc.returncode is None and not proc.stdin.is_closing():
                proc.stdin.write(line)

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        await self._send(Notification(method, params))

    async def respond(self, response: Response) -> None:
        """Answer a request the server sent: one more line."""
        await self._send(response)

    async def _send(self, message: Request | Notification | Response) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            raise ToolServerError(f"tool server {self.name!r} is not running")
        if self._gone is not None:  # stdout ended before the process was reaped
            raise ToolServerError(self._gone)
        try:
            proc.stdin.write(jsonrpc.encode(message) + b"\n")
            await proc.stdin.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise ToolServerError(f"tool server {self.name!r} is gone: {exc}") from exc

    async def _read_messages(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        why = f"tool server {self.name!r} exited"
        try:
            while line := await self._proc.stdout.readline():
                self._take(line)
        except (ValueError, asyncio.LimitOverrunError) as exc:  # a line past the limit
            log.warning("tool server %s: %s; stopping it", self.name, exc)
            why = f"tool server {self.name!r} sent a message over {self._limit} bytes"
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
        finally:
            self._gone = why
            self._fail_pending(why)

    def _take(self, line: bytes) -> None:
        try:
            message = jsonrpc.parse(line)
        except JsonRpcError as exc:
            log.warning("tool server %s sent a line that is no message: %s", self.name, exc)
            return
        if isinstance(message, Response):
            deliveries = self._pending.get(message.id) if isinstance(message.id, int) else None
            if deliveries is None:  # also the late answer to a request given up on
                log.debug("tool server %s answered no waiting request %r", self.name, message.id)
            else:
                deliveries.put_nowait(message)
            return
        if isinstance(message, Notification) and (owner := self._owner(message)) is not None:
            owner.put_nowait(message)
        else:
            self.incoming.put_nowait(message)

    def _owner(self, message: Notification) -> asyncio.Queue[Delivery] | None:
        """The queue of the request a progress notification is about, if it still waits."""
        if message.method != "notifications/progress":
            return None
        token = (message.params or {}).get("progressToken")
        if not isinstance(token, str | int) or isinstance(token, bool):
            return None
        request_id = self._progress.get(token)
        return None if request_id is None else self._pending.get(request_id)

    def _fail_pending(self, why: str) -> None:
        for deliveries in self._pending.values():
            deliveries.put_nowait(ToolServerError(why))

    async def _drain_log(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        while line := await self._proc.stderr.readline():
            log.info("tool server %s: %s", self.name, line.decode(errors="replace").rstrip())

    async def close(self) -> None:
        """Close its stdin and let it exit; SIGTERM, then SIGKILL, if it does not."""
        proc = self._proc
        self.initialized = None
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
        proc = self._proc
        return proc is not None and proc.returncode is None and self._gone is None


def _progress_token(params: dict[str, Any] | None) -> str | int | None:
    """The progress token a request carries in `params._meta`, if any."""
    meta = (params or {}).get("_meta")
    token = meta.get("progressToken") if isinstance(meta, dict) else None
    return token if isinstance(token, str | int) and not isinstance(token, bool) else None
