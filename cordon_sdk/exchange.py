"""One request handed from the application's thread to the engine's loop, and its answer
handed back, message by message: the gateway's ASGI app on one side, a governed
client's transport on the other.

The app runs on the engine's loop; what it sends is delivered to the waiting side by
`deliver`, a batch at a time (a thread-safe queue for a synchronous client, the client's
own loop for an asynchronous one). `END` is delivered if the app ended before its
answer did. When the application stops reading a stream, `abandon` tells the app
its caller went away, as a closed connection tells the gateway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, MutableMapping
from typing import Any, Final

from gateway.http.asgi import Receive, Scope, Send
from gateway.http.calls import PINNED_TARGET
from gateway.upstream.providers import Target

__all__ = ["END", "Exchange", "Message", "scope_for"]

log = logging.getLogger("cordon.sdk")
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Receive, Send], Coroutine[Any, Any, None]]
END: Final[Message] = {"type": "cordon.end"}  # compared by identity


class Exchange:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        body: bytes,
        deliver: Callable[[list[Message]], None],
    ) -> None:
        self._loop = loop
        self._body: bytes | None = body
        self._deliver = deliver
        self._gone = False
        self._gone_event: asyncio.Event | None = None  # made on the engine's loop
        self._start: Message | None = None  # held until the first body message
        self._complete = False  # the last body message was handed over

    def begin(self, app: ASGIApp, scope: Scope) -> None:
        """Run `app` for this exchange on the engine's loop (from any thread)."""
        self._loop.call_soon_threadsafe(self._run, app, scope)

    def _run(self, app: ASGIApp, scope: Scope) -> None:
        task = self._loop.create_task(app(scope, self.receive, self.send))
        task.add_done_callback(self._finished)

    async def receive(self) -> Message:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        if not self._gone:
            self._gone_event = asyncio.Event()
            await self._gone_event.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        """Handed over as they come, but the response's start together with its first
        body message: the waiting thread wakes once for a whole answer."""
        if self._gone:
            return
        if message["type"] == "http.response.start":
            self._start = message
            return
        self._complete = not message.get("more_body", False)
        start, self._start = self._start, None
        self._deliver([start, message] if start is not None else [message])

    def _finished(self, task: asyncio.Task[None]) -> None:
        """The app is done: if it ended before its answer did (it failed), the waiting
        side is told so rather than left waiting, and the failure is logged."""
        if not task.cancelled() and task.exception() is not None:
            log.error("a governed call failed in the engine", exc_info=task.exception())
        if not self._complete:
            self._deliver([END])

    def abandon(self) -> None:
        """The application stopped reading: the app sees its caller disconnect."""
        self._loop.call_soon_threadsafe(self._disconnect)

    def _disconnect(self) -> None:
        self._gone = True
        if self._gone_event is not None:
            self._gone_event.set()


def scope_for(route: str, headers: list[tuple[bytes, bytes]], target: Target) -> Scope:
    """An ASGI scope for a governed call to `route`, pinned to the client's provider."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": route,
        "raw_path": route.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 0),
        "server": None,
        PINNED_TARGET: target,
    }
