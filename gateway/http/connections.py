"""The connection guard: slow, stalled, oversized and surplus connections shown the door.

uvicorn's httptools protocol, plus what an edge facing hostile callers needs and
uvicorn lacks:

- a header timeout: a request's headers must be complete within `header_timeout_s` of
  the connection opening (or of the request's first byte on a kept-alive connection);
  otherwise 408, and the connection is closed;
- a header size cap: more than `max_header_bytes` before the headers end is a 431 (the
  parser would otherwise buffer a header without bound);
- a cap on open connections: a request on a connection beyond `max_connections` gets
  503 with `retry-after` in its API's error shape, and the connection is closed;
- malformed HTTP answered in the API's error shape rather than uvicorn's plain text.

None of these callers has authenticated (no headers were read, or none are honoured),
so each refusal is counted in `cordon_gateway_connections_closed_total`, never
recorded: anonymous traffic must not be able to fill the log. A stalled *body* is the
app's to time out (`gateway.http.asgi.read_body`), because by then the caller is
known and its refusal is recorded.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from gateway import metrics
from gateway.http import dialects
from gateway.http.asgi import Receive, Scope, Send, respond

__all__ = ["ConnectionLimits", "GuardedProtocol", "guarded_protocol"]


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float = 10.0
    max_header_bytes: int = 64 * 1024
    max_connections: int = 1024


class GuardedProtocol(HttpToolsProtocol):
    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        metrics.CONNECTIONS_OPEN.set(len(self.connections))
        if len(self.connections) > self.limits.max_connections:
            self.app = _over_capacity  # decided now: a later request on it is refused too
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)
        metrics.CONNECTIONS_OPEN.set(len(self.connections))

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._await_headers()  # the first byte of the next request on a kept-alive connection
        super().data_received(data)
        if self._header_timer is None or self.transport.is_closing():
            return  # the headers are complete (or the parser already refused the request)
        self._header_bytes += len(data)
        if self._header_bytes > self.limits.max_header_bytes:
            metrics.CONNECTIONS_CLOSED.labels("headers_too_large").inc()
            message = f"request headers exceed {self.limits.max_header_bytes} bytes"
            self._refuse(431, message, "invalid_request_error", "headers_too_large")

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        metrics.CONNECTIONS_CLOSED.labels("malformed_http").inc()
        message = "the request is not well-formed HTTP/1.1; the connection is closed"
        self._refuse(400, message, "invalid_request_error", "malformed_http")

    def _await_headers(self) -> None:
        self._header_bytes = 0
        self._header_timer = self.loop.call_later(
            self.limits.header_timeout_s, self._headers_timed_out
        )

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            self._await_headers()  # a pipelined request waits for the answer before it
            return
        metrics.CONNECTIONS_CLOSED.labels("header_timeout").inc()
        message = f"the request's headers did not arrive within {self.limits.header_timeout_s:g} s"
        self._refuse(408, message, "invalid_request_error", "request_timeout")

    def _refuse(self, status: int, message: str, kind: str, code: str) -> None:
        """Answer in both APIs' error shape, then close: nothing more is read from it."""
        self._stop_header_timer()
        if self.transport.is_closing():
            return
        body = dialects.neutral_error(message, kind, code)
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
