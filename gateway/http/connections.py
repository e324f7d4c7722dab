"""The connection guard: slow, stalled, oversized and surplus connections shown the door.

uvicorn's httptools protocol, plus what an edge facing hostile callers needs and
uvicorn lacks:

- a header timeout: a request's headers must be complete within `header_timeout_s` of
  the connection opening (or of the request's first byte on a kept-alive connection);
  otherwise 408, and the connection is closed;
- a header size cap: headers longer than `max_header_bytes` are a 431, counted exactly
  when they end and by the read while they have not (the parser would otherwise buffer
  a header without bound);
- a body idle timeout: a body that stops arriving for `body_idle_timeout_s` is handed
  to the app as it stands, marked refused (`asgi.BODY_REFUSED`), so the app answers 408
  in the caller's API shape with a record — the caller has authenticated by then; a
  body still arriving after its request was answered (a refusal that did not read it)
  gets `body_idle_timeout_s` in all, then the connection is closed;
- a send timeout: a caller that stops reading its answers (the transport's buffer full
  for `send_timeout_s`) has its connection aborted, so an unread answer holds no
  memory and no slot;
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
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from cordon.errors import BadRequestError, ClientTimeoutError
from gateway import metrics
from gateway.http import dialects
from gateway.http.asgi import BODY_REFUSED, Receive, Scope, Send, respond
from gateway.settings import ConnectionLimits

__all__ = ["GuardedProtocol", "guarded_protocol"]


class GuardedProtocol(HttpToolsProtocol):
    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._headers_since: float | None = None  # awaiting a request's headers since
        self._header_bytes = 0  # reads while awaiting them (a bound on what is buffered)
        self._reading = 0  # the size of the read being parsed
        self._body_since: float | None = None  # awaiting more of a body since
        self._body_answered = False  # ... of a request already answered: a fixed deadline
        self._body_of: object = None  # ... of this request (its uvicorn cycle)
        self._write_paused_since: float | None = None
        self._upgrade_asked = False  # no route speaks another protocol: answered, then closed
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
        if self._upgrade_asked:
            return  # what follows an upgrade's headers is not HTTP: the answer says so
        cycle = self.cycle
        in_body = self._headers_since is None and cycle is not None and cycle.more_body
        if self._headers_since is None and not in_body:
            self._await_headers()  # bytes between requests: the next one's (or junk)
        self._reading = len(data)
        super().data_received(data)
        if self.transport.is_closing():
            return  # the parser refused the request, or we did
        if self.parser.should_upgrade():
            # The parser hands what follows an upgrade's headers to the new protocol, and
            # no route speaks one: the app says so, with a record, and the connection ends.
            self._upgrade_asked = True
            self._hand_over(BadRequestError("protocol upgrades are not served; use HTTP/1.1"))
            return
        if self._headers_since is not None:
            if not in_body:  # else the read began in a body: not all header bytes
                self._header_bytes += len(data)
            if self._header_bytes > self.limits.max_header_bytes:
                self._headers_too_large()
        elif self.cycle.more_body:
            self._body_arrived()

    def on_headers_complete(self) -> None:
        self._headers_since = None
        cap = self.limits.max_header_bytes
        if self._header_bytes + self._reading > cap and self._header_size() > cap:
            self._headers_too_large()  # the parser goes on, but no app is started
            return
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._upgrade_asked:
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        if self.transport.is_closing():
            return  # we refused it already (the parser trips over what follows)
        metrics.CONNECTIONS_CLOSED.labels("malformed_http").inc()
        self._refuse(400, "the request is not well-formed HTTP/1.1", "malformed_http")

    def pause_writing(self) -> None:
        super().pause_writing()
        self._write_paused_since = self.loop.time()
        self._watch(self._write_paused_since + self.limits.send_timeout_s)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._write_paused_since = None

    def _header_size(self) -> int:
        """The request line's URL and header lines as parsed (measured only when the
        reads that carried them could have been larger than the cap)."""
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _headers_too_large(self) -> None:
        metrics.CONNECTIONS_CLOSED.labels("headers_too_large").inc()
        message = f"request headers exceed {self.limits.max_header_bytes} bytes"
        self._refuse(431, message, "headers_too_large")

    def _body_arrived(self) -> None:
        """A read of a body under way: its idle deadline moves on, unless its request was
        answered already (then the rest of it has a fixed time to arrive)."""
        answered = self.cycle.response_complete
        if self._body_of is not self.cycle or not (answered and self._body_answered):
            self._body_of, self._body_since = self.cycle, self.loop.time()
            self._body_answered = answered
        assert self._body_since is not None
        self._watch(self._body_since + self.limits.body_idle_timeout_s)

    # -- the watchdog --------------------------------------------------------------------

    def _await_headers(self) -> None:
        self._headers_since = now = self.loop.time()
        self._header_bytes = 0
        deadline = now + self.limits.header_timeout_s
        watchdog = self._watchdog
        if watchdog is None or watchdog.when() > deadline:  # else it looks in time already
            self._watch(deadline)

    def _watch(self, deadline: float) -> None:
        """Make sure the watchdog looks no later than `deadline`."""
        if self._watchdog is not None:
            if self._watchdog.when() <= deadline:
                return
            self._watchdog.cancel()
        self._watchdog = self.loop.call_at(deadline, self._look)

    def _look(self) -> None:
        self._watchdog = None
        now = self.loop.time()
        if self._write_paused_since is not None:
            if now - self._write_paused_since >= self.limits.send_timeout_s:
                metrics.CONNECTIONS_CLOSED.labels("send_timeout").inc()
                self.transport.abort()  # close() would wait for the caller to read
                return
            self._watch(self._write_paused_since + self.limits.send_timeout_s)
        if self.transport.is_closing():
            return
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
        cycle = self.cycle
        if cycle is not self._body_of or not cycle.more_body:
            self._body_since = None  # that body ended
            return
        limit = self.limits.body_idle_timeout_s
        if self.flow.read_paused and not self._body_answered:
            self._body_since = now  # we stopped reading, not the caller: not its stall
        if now - self._body_since < limit:
            self._watch(self._body_since + limit)
            return
        self._body_since = None
        metrics.CONNECTIONS_CLOSED.labels("body_timeout").inc()
        if cycle.response_complete:
            self.transport.close()  # answered already: the rest of its body is not waited for
            return
        self._hand_over(ClientTimeoutError(f"no more of the request body arrived for {limit:g} s"))

    def _hand_over(self, refusal: BadRequestError) -> None:
        """Give the app, waiting in receive(), the body as it stands, marked refused
        (`asgi.BODY_REFUSED`): it answers in the caller's API shape with a record."""
        cycle = self.cycle
        cycle.scope[BODY_REFUSED] = refusal  # type: ignore[literal-required]
        cycle.more_body = False
        cycle.message_event.set()

    def _refuse(self, status: int, message: str, code: str = "request_timeout") -> None:
        """Answer in both APIs' error shape, then close: nothing more is read from it."""
        self._headers_since = self._body_since = None
        if self.transport.is_closing():
            return
        body = dialects.neutral_error(message, dialects.kind_of(status, code), code)
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
    body = dialects.for_path(scope["path"]).refusal(503, message, "overloaded")
    await respond(send, 503, body, [(b"retry-after", b"1"), (b"connection", b"close")])


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedProtocol]:
    """The protocol class uvicorn instantiates per connection, holding these limits."""
    return type("GuardedProtocol", (GuardedProtocol,), {"limits": limits})
