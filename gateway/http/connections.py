"""The connection guard: slow, stalled, oversized and surplus connections shown the door.

uvicorn's httptools protocol, plus what an edge facing hostile callers needs and
uvicorn lacks:

- a header timeout: a request's headers must be complete within `header_timeout_s` of
  the connection opening (or of the request's first byte on a kept-alive connection);
  otherwise 408, and the connection is closed;
- a header size cap: more than `max_header_bytes` before the headers end is a 431 (the
  parser would otherwise buffer a header without bound);
- a body idle timeout: a body that stops arriving for `body_idle_timeout_s` is handed
  to the app as it stands, marked stalled (`asgi.BODY_STALLED`), so the app answers 408
  in the caller's API shape with a record — the caller has authenticated by then;
- a cap on open connections: a request on a connection beyond `max_connections` gets
  503 with `retry-after` in its API's error shape, and the connection is closed;
- malformed HTTP answered in the API's error shape rather than uvicorn's plain text.

The refusals made here come before any caller is known, so each is counted in
`cordon_gateway_connections_closed_total`, never recorded: anonymous traffic must not be
able to fill the log.

One watchdog timer per connection, armed only while something is awaited and re-armed
only when it fires: a request on the fast path costs a clock read, not a timer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from gateway import metrics
from gateway.http import dialects
from gateway.http.asgi import BODY_STALLED, Receive, Scope, Send, respond

__all__ = ["ConnectionLimits", "GuardedProtocol", "guarded_protocol"]


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float = 10.0
    max_header_bytes: int = 64 * 1024
    body_idle_timeout_s: float = 10.0
    max_connections: int = 1024


class GuardedProtocol(HttpToolsProtocol):
    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_message = False  # between a request's first byte and its body's end
        self._headers_since: float | None = None  # awaiting a request's headers since
        self._header_bytes = 0
        self._body_since: float | None = None  # awaiting more of a body since
        self._watchdog: asyncio.TimerHandle | None = None

    # -- uvicorn's protocol, extended ----------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        metrics.CONNECTIONS_OPEN.set(len(self.connections))
        if len(self.connections) > self.limits.max_connections:
            self.app = _over_capacity  # decided now: a later request on it is refused too
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        super().connection_lost(exc)
        metrics.CONNECTIONS_OPEN.set(len(self.connections))

    def data_received(self, data: bytes) -> None:
        if not self._in_message and self._headers_since is None:
            self._await_headers()  # bytes between requests: the next one's (or junk)
        super().data_received(data)
        if self.transport.is_closing():
            return  # the parser refused the request, or we did
        if self._headers_since is not None:
            self._header_bytes += len(data)
            if self._header_bytes > self.limits.max_header_bytes:
                metrics.CONNECTIONS_CLOSED.labels("headers_too_large").inc()
                message = f"request headers exceed {self.limits.max_header_bytes} bytes"
                self._refuse(431, message, "headers_too_large")
        elif self._in_message:
            self._body_since = self.loop.time()  # a body under way: watched while it lasts
            self._watch(self._body_since + self.limits.body_idle_timeout_s)

    def on_message_begin(self) -> None:
        self._in_message = True
        if self._headers_since is None:
            self._await_headers()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._headers_since = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_message = False
        self._body_since = None
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        metrics.CONNECTIONS_CLOSED.labels("malformed_http").inc()
        self._refuse(400, "the request is not well-formed HTTP/1.1", "malformed_http")

    # -- the watchdog --------------------------------------------------------------------

    def _await_headers(self) -> None:
        self._headers_since = self.loop.time()
        self._header_bytes = 0
        self._watch(self._headers_since + self.limits.header_timeout_s)

    def _watch(self, deadline: float) -> None:
        """Make sure the watchdog looks no later than `deadline`."""
        if self._watchdog is not None:
            if self._watchdog.when() <= deadline:
                return
            self._watchdog.cancel()
        self._watchdog = self.loop.call_at(deadline, self._look)

    def _look(self) -> None:
        self._watchdog = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        if self._headers_since is not None:
            if now - self._headers_since < self.limits.header_timeout_s:
                self._watch(self._headers_since + self.limits.header_timeout_s)
            elif self.cycle is not None and not self.cycle.response_complete:
                self._await_headers()  # a pipelined request waits for the answer before it
            else:
                metrics.CONNECTIONS_CLOSED.labels("header_timeout").inc()
                limit = self.limits.header_timeout_s
                self._refuse(408, f"the request's headers did not arrive within {limit:g} s")
                return
        if self._body_since is not None:
            self._look_at_body(now)

    def _look_at_body(self, now: float) -> None:
        assert self._body_since is not None
        limit = self.limits.body_idle_timeout_s
        if self.flow.read_paused:  # we stopped reading, not the caller: not its stall
            self._body_since = now
        if now - self._body_since < limit:
            self._watch(self._body_since + limit)
            return
        self._body_since = None
        metrics.CONNECTIONS_CLOSED.labels("body_timeout").inc()
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.more_body:
            self.transport.close()  # answered already (a refusal that left the body unread)
            return
        # The app is waiting in receive(): give it what arrived, marked as stalled; it
        # answers 408 with a record and closes the connection.
        cycle.scope[BODY_STALLED] = limit  # type: ignore[literal-required]
        cycle.more_body = False
        cycle.message_event.set()

    def _refuse(self, status: int, message: str, code: str = "request_timeout") -> None:
        """Answer in both APIs' error shape, then close: nothing more is read from it."""
        self._headers_since = self._body_since = None
        if self.transport.is_closing():
            return
        body = dialects.neutral_error(message, "invalid_request_error", code)
        head = [
            STATUS_LINE[status],
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


async def _over_capacity(scope: Scope, receive: Receive, send: Send) -> None:
    metrics.CONNECTIONS_CLOSED.labels("over_capacity").inc()
    message = "too many connections open on this replica; try again shortly"
    body = dialects.for_path(scope["path"]).error(message, "overloaded_error", "overloaded")
    await respond(send, 503, body, [(b"retry-after", b"1"), (b"connection", b"close")])


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedProtocol]:
    """The protocol class uvicorn instantiates per connection, holding these limits."""
    return type("GuardedProtocol", (GuardedProtocol,), {"limits": limits})
