"""An upstream MCP server reached over Streamable HTTP (docs/design/mcp-wire.md §1):
each message the gateway sends is one POST to the server's MCP endpoint.

The server chooses how to answer a request: one JSON object, or an SSE stream that
carries what it has to say about the request (progress, log messages, requests of its
own) before the answer. The stream is read event by event as it arrives, each event
capped, and what precedes the answer is handed to the caller in order, so a tool's
progress reaches the agent while the tool runs. A server that issues a session id gets
it back on every message, with the negotiated revision; when it says the session is
over (404), the gateway opens a new one, once, and sends the request again, without
the caller noticing. What the server sends outside any request arrives on one GET
stream held for the session, when the server offers one.

The only credential sent is the gateway's own for this server (`headers`): a caller's
token never travels upstream (the specification forbids passing tokens through).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cordon.errors import HttpClientError, JsonRpcError, ToolServerError
from gateway.mcp import jsonrpc
from gateway.mcp.jsonrpc import Message, Notification, Request, Response
from gateway.mcp.upstream import MAX_MESSAGE_BYTES, MessageSink, handshake

if TYPE_CHECKING:  # given by whoever builds the upstream; neither is imported here
    import httpx

    from gateway.upstream.httpclient import HttpClient
    from gateway.upstream.httpclient import Response as HttpResponse

__all__ = ["HttpUpstream", "read_events"]

log = logging.getLogger("cordon.gateway.mcp")
ACCEPT = "application/json, text/event-stream"
SESSION_HEADER = "Mcp-Session-Id"
VERSION_HEADER = "MCP-Protocol-Version"
# Connecting is bounded here, reading is not (a tool may think for long; each request
# bounds itself with `within_s`, and the GET stream may rightly stay quiet for hours).
CONNECT_S = 10.0
WAIT_S = 24 * 3600.0  # the gateway client's own deadlines; each request sets its own
DRAIN_WITHIN_S = 0.05  # the rest of an answered stream; past it, the connection is dropped
CANCEL_WITHIN_S = 5.0  # posting notifications/cancelled, in the background
CLOSE_WITHIN_S = 5.0  # the DELETE ending the session
LISTEN_RETRY_S = (0.5, 30.0)  # the GET stream's first and longest wait before reconnecting


class _SessionGone(ToolServerError):
    """The server answered 404 to a session id the gateway held: it ended that session."""


@dataclass
class _Answer:
    """An HTTP answer as the upstream reads it, whichever client carried it."""

    status: int
    headers: Mapping[str, str]  # names in lowercase
    chunks: AsyncIterator[bytes]

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300


class HttpUpstream:
    def __init__(
        self,
        name: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        http: httpx.AsyncClient | None = None,
        poster: HttpClient | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.name, self.url = name, url
        # The replica's own client (the providers' one, under the egress address guard)
        # carries every exchange when given: the hot path of each tool call, and a
        # replica that never loads httpx. Without it (`cordon tools digest`, which runs
        # without the server stack) httpx does, imported only then.
        self._poster = poster
        self._headers = dict(headers or {})
        self._http, self._owns_http = http, http is None
        self._limit = max_message_bytes
        self._ids = itertools.count(1)
        self._session_id: str | None = None
        self._starting = asyncio.Lock()  # one handshake at a time: start, or a renewal
        self._listener: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.incoming: asyncio.Queue[Request | Notification] = asyncio.Queue()
        self.initialized: dict[str, Any] | None = None

    @property
    def running(self) -> bool:
        return self.initialized is not None

    @property
    def session_id(self) -> str | None:
        """The session the server issued, if it issues any (never shown to a caller)."""
        return self._session_id

    async def start(self) -> None:
        """The handshake; a no-op when done already."""
        async with self._starting:
            if self.initialized is None:
                await self._open_session()

    async def _open_session(self) -> None:
        await self._stop_listening()
        try:
            await handshake(self)
        except BaseException:
            self.initialized, self._session_id = None, None
            raise
        if self._session_id is not None:
            self._listener = asyncio.create_task(self._listen())

    async def _renew(self, ended: str | None) -> None:
        """A new session in place of `ended`, unless another request renewed it already."""
        async with self._starting:
            if self._session_id == ended:
                log.info("tool server %s ended its session; opening a new one", self.name)
                await self._open_session()

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        within_s: float = 30.0,
        on_message: MessageSink | None = None,
    ) -> dict[str, Any]:
        """The result of `method`; `ToolServerError` with the server's code when it
        answers a JSON-RPC error, without one when it cannot be had. `within_s` bounds
        the whole exchange, `on_message`'s time included."""
        message = Request(next(self._ids), method, params)
        try:
            async with asyncio.timeout(within_s):
                return await self._exchange(message, on_message)
        except TimeoutError as exc:
            self._cancel(message, "timeout")
            raise ToolServerError(f"tool server {self.name!r}: no answer to {method}") from exc
        except asyncio.CancelledError:
            self._cancel(message, None)  # the caller's cancellation, relayed
            raise

    async def _exchange(self, message: Request, on_message: MessageSink | None) -> dict[str, Any]:
        held = self._session_id
        try:
            return await self._post_request(message, on_message)
        except _SessionGone:
            await self._renew(held)
        try:
            return await self._post_request(message, on_message)
        except _SessionGone as exc:
            raise ToolServerError(f"tool server {self.name!r} ended its new session") from exc

    def _cancel(self, message: Request, reason: str | None) -> None:
        """Tell the server to stop `message`, in the background: a cancelled caller
        is not held up by a round trip, and a failure to tell is only logged. Never
        for `initialize` (the specification forbids cancelling it)."""
        if message.method == "initialize" or self._http is None:
            return
        params: dict[str, Any] = {"requestId": message.id}
        if reason is not None:
            params["reason"] = reason
        task = asyncio.create_task(self._tell_cancelled(params))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _tell_cancelled(self, params: dict[str, Any]) -> None:
        if self._http is None:  # closed meanwhile: no session left to tell
            return
        try:
            async with asyncio.timeout(CANCEL_WITHIN_S):
                await self.notify("notifications/cancelled", params)
        except (TimeoutError, ToolServerError) as exc:
            log.info("tool server %s: could not cancel %s: %s", self.name, params, exc)

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        await self._post_accepted(Notification(method, params))

    async def respond(self, response: Response) -> None:
        """Answer a request the server sent: a POST of its own, which it accepts (202)."""
        await self._post_accepted(response)

    async def _post_request(
        self, message: Request, on_message: MessageSink | None
    ) -> dict[str, Any]:
        sent_session = None if _opens(message) else self._session_id
        async with self._send(message) as answer:
            await self._check(answer, sent_session)
            if _opens(message):
                self._session_id = answer.headers.get(SESSION_HEADER.lower())
            return await self._answer(message, answer, on_message)

    async def _post_accepted(self, message: Notification | Response) -> None:
        sent_session = self._session_id
        try:
            async with self._send(message) as answer:
                await self._check(answer, sent_session)
        except _SessionGone as exc:
            raise self._unavailable("its session ended") from exc

    @contextlib.asynccontextmanager
    async def _send(self, message: Message) -> AsyncIterator[_Answer]:
        """POST one message; its answer, open until the block ends."""
        async with self._http_exchange(
            "POST", jsonrpc.encode(message), self._headers_for(message)
        ) as answer:
            yield answer

    @contextlib.asynccontextmanager
    async def _http_exchange(
        self, method: str, body: bytes, headers: dict[str, str]
    ) -> AsyncIterator[_Answer]:
        """One HTTP exchange by whichever client this upstream has; its failures are
        `ToolServerError` (unavailable), whenever they happen."""
        if self._poster is None:
            async with self._httpx_exchange(method, body, headers) as answer:
                yield answer
            return
        try:
            posted = await self._poster.request(
                method, self.url, body, headers, connect=CONNECT_S, first_byte=WAIT_S, total=WAIT_S
            )
        except HttpClientError as exc:
            raise self._unavailable(f"unreachable: {exc}") from exc
        try:
            yield _Answer(posted.status, posted.headers, _chunks(posted, self.name))
        finally:
            posted.release()  # back to the pool if read to its end, else dropped

    @contextlib.asynccontextmanager
    async def _httpx_exchange(
        self, method: str, body: bytes, headers: dict[str, str]
    ) -> AsyncIterator[_Answer]:
        import httpx  # only here: a replica hands its own client and never loads it

        try:
            async with self._client().stream(
                method, self.url, content=body or None, headers=headers
            ) as response:
                lowered = {k.lower(): v for k, v in response.headers.items()}
                chunks = _httpx_chunks(response.aiter_bytes(), self.name)
                yield _Answer(response.status_code, lowered, chunks)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise self._unavailable(f"unreachable: {exc}") from exc

    async def _check(self, answer: _Answer, sent_session: str | None) -> None:
        """Nothing for a success; otherwise the failure the status and body say."""
        if answer.is_success:
            return
        status = answer.status
        if status == 404 and sent_session is not None:
            raise _SessionGone("session ended")
        body = b""
        with contextlib.suppress(ToolServerError):
            body = await self._body(answer)
        error = _rpc_error(body) if 400 <= status < 500 else None
        if error is None:
            raise self._unavailable(f"answered HTTP {status}")
        raise ToolServerError(f"tool server {self.name!r}: {error.message}", error.code, error.data)

    async def _answer(
        self, message: Request, answer: _Answer, on_message: MessageSink | None
    ) -> dict[str, Any]:
        media = answer.headers.get("content-type", "").split(";")[0].strip().lower()
        if media == "application/json":
            parsed = self._parse(await self._body(answer))
            if isinstance(parsed, Response) and parsed.id == message.id:
                return self._result(parsed)
            raise self._unavailable(f"answered {message.method} with something else")
        if media != "text/event-stream":
            raise self._unavailable(f"answered {media or 'no content type'}")
        async for data in read_events(answer.chunks, self._limit, self.name):
            received = self._parse(data)
            if not isinstance(received, Response):
                await _deliver(received, on_message, self.incoming)
            elif received.id == message.id:
                await _drain(answer.chunks)
                return self._result(received)
            else:
                log.debug("tool server %s answered no waiting request %r", self.name, received.id)
        raise self._unavailable(f"ended its stream without answering {message.method}")

    def _result(self, response: Response) -> dict[str, Any]:
        error = response.error
        if error is None:
            return response.result or {}
        raise ToolServerError(f"tool server {self.name!r}: {error.message}", error.code, error.data)

    async def _body(self, answer: _Answer) -> bytes:
        """The whole body, refused past the size cap before it is all read."""
        declared = answer.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._limit:
            raise self._unavailable(f"sent a message over {self._limit} bytes")
        body = bytearray()
        async for chunk in answer.chunks:
            body.extend(chunk)
            if len(body) > self._limit:
                raise self._unavailable(f"sent a message over {self._limit} bytes")
        return bytes(body)

    def _parse(self, data: bytes) -> Message:
        try:
            return jsonrpc.parse(data)
        except JsonRpcError as exc:
            raise self._unavailable(f"sent no JSON-RPC message: {exc}") from exc

    def _unavailable(self, why: str) -> ToolServerError:
        return ToolServerError(f"tool server {self.name!r} {why}")

    def _headers_for(self, message: Message | None) -> dict[str, str]:
        """The gateway's own credential, then what the wire requires. `initialize`
        goes without session and revision: it is what sets them."""
        wire = {"accept", "content-type", SESSION_HEADER.lower(), VERSION_HEADER.lower()}
        headers = {k: v for k, v in self._headers.items() if k.lower() not in wire}
        headers["Accept"] = ACCEPT
        headers["Content-Type"] = "application/json"
        if message is not None and _opens(message):
            return headers
        if self.initialized is not None:
            headers[VERSION_HEADER] = str(self.initialized.get("protocolVersion"))
        if self._session_id is not None:
            headers[SESSION_HEADER] = self._session_id
        return headers

    def _client(self) -> httpx.AsyncClient:
        import httpx

        if self._http is None:
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(CONNECT_S, read=None))
        return self._http

    async def _listen(self) -> None:
        """Hold the session's GET stream while the server offers it; reconnect with a
        growing wait when it drops."""
        wait = LISTEN_RETRY_S[0]
        while True:
            try:
                if not await self._listen_once():
                    return
                wait = LISTEN_RETRY_S[0]  # it was open: the next drop starts over
            except ToolServerError as exc:
                log.info("tool server %s: its GET stream failed: %s", self.name, exc)
                wait = min(wait * 2, LISTEN_RETRY_S[1])
            await asyncio.sleep(wait)

    async def _listen_once(self) -> bool:
        """One GET stream, until it ends; whether to open another. The server offers
        none (405), or the session ended (404, renewed by the next request)."""
        headers = self._headers_for(None)
        headers["Accept"] = "text/event-stream"
        del headers["Content-Type"]
        async with self._http_exchange("GET", b"", headers) as answer:
            if answer.status in (404, 405):
                return False
            if not answer.is_success:
                raise self._unavailable(f"answered HTTP {answer.status} to GET")
            async for data in read_events(answer.chunks, self._limit, self.name):
                received = self._parse(data)
                if not isinstance(received, Response):  # none is expected without resuming
                    self.incoming.put_nowait(received)
        return True

    async def _stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def close(self) -> None:
        """End the session (DELETE; a server may refuse, that is fine) and let go of
        the connection pool when it is this upstream's own."""
        await self._stop_listening()
        if self._background:  # cancellations on their way: a moment to arrive
            await asyncio.wait(set(self._background), timeout=CANCEL_WITHIN_S)
        session, headers = self._session_id, self._headers_for(None)
        self._session_id, self.initialized = None, None
        if session is not None and (self._poster is not None or self._http is not None):
            del headers["Content-Type"]
            headers[SESSION_HEADER] = session
            with contextlib.suppress(ToolServerError, TimeoutError):
                async with (
                    asyncio.timeout(CLOSE_WITHIN_S),
                    self._http_exchange("DELETE", b"", headers) as answer,
                ):
                    await _drain(answer.chunks)
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None


def _opens(message: Message) -> bool:
    return isinstance(message, Request) and message.method == "initialize"


async def _deliver(
    message: Request | Notification,
    on_message: MessageSink | None,
    incoming: asyncio.Queue[Request | Notification],
) -> None:
    if on_message is None:
        incoming.put_nowait(message)
    else:
        await on_message(message)


def _rpc_error(body: bytes) -> jsonrpc.ErrorObject | None:
    """The JSON-RPC error a refusal's body carries, if it carries one."""
    try:
        message = jsonrpc.parse(body)
    except JsonRpcError:
        return None
    return message.error if isinstance(message, Response) else None


async def _chunks(response: HttpResponse, name: str) -> AsyncIterator[bytes]:
    """The gateway client's body chunks, its errors as the upstream's."""
    try:
        async for chunk in response.chunks():
            yield chunk
    except HttpClientError as exc:
        raise ToolServerError(f"tool server {name!r}: {exc}") from exc


async def _httpx_chunks(chunks: AsyncIterator[bytes], name: str) -> AsyncIterator[bytes]:
    """httpx's body chunks, its errors as the upstream's."""
    import httpx

    try:
        async for chunk in chunks:
            yield chunk
    except httpx.HTTPError as exc:
        raise ToolServerError(f"tool server {name!r}: {exc}") from exc


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    """Read what follows the answer (the stream's end, normally at once) so the
    connection goes back to the pool: one left unread is closed, and the next call
    would pay for a new one. A server that keeps the stream open is left after a
    moment, and its connection with it."""
    with contextlib.suppress(TimeoutError, ToolServerError):
        async with asyncio.timeout(DRAIN_WITHIN_S):
            async for _ in chunks:
                pass


async def read_events(chunks: AsyncIterator[bytes], limit: int, name: str) -> AsyncIterator[bytes]:
    """The data of each `message` event of an SSE stream (the WHATWG event-stream
    format): `data:` lines joined by newlines; comments, `id:` and `retry:` skipped
    (the gateway does not resume a stream), events of other types ignored, and an
    event without data (a priming event) dropped. A line or an event over `limit`
    bytes is refused, before more is read."""
    data: list[bytes] = []
    size, event = 0, b""
    async for line in _lines(chunks, limit, name):
        if not line:  # the event is complete
            payload = b"\n".join(data)
            if payload.strip() and event in (b"", b"message"):
                yield payload
            data, size, event = [], 0, b""
            continue
        field, _, value = line.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        if field == b"data":
            size += len(value) + 1
            if size > limit:
                raise ToolServerError(f"tool server {name!r} sent an event over {limit} bytes")
            data.append(value)
        elif field == b"event":
            event = value


async def _lines(chunks: AsyncIterator[bytes], limit: int, name: str) -> AsyncIterator[bytes]:
    """The lines of a byte stream, ended by CRLF, LF or CR. A last line without its
    end belongs to an event that never completed, and is dropped."""
    buffer = bytearray()
    async for chunk in chunks:
        buffer.extend(chunk)
        start = 0
        while (end := _line_end(buffer, start)) is not None:
            yield bytes(buffer[start : end[0]])
            start = end[1]
        del buffer[:start]
        if len(buffer) > limit:
            raise ToolServerError(f"tool server {name!r} sent a line over {limit} bytes")


def _line_end(buffer: bytearray, start: int) -> tuple[int, int] | None:
    """Where the first line from `start` ends and the next begins; None if the line is
    not complete yet (a CR last in the buffer may be the first half of a CRLF)."""
    lf, cr = buffer.find(b"\n", start), buffer.find(b"\r", start)
    if cr == -1 or (lf != -1 and lf < cr):
        return None if lf == -1 else (lf, lf + 1)
    if cr + 1 == len(buffer):
        return None
    return (cr, cr + 2 if buffer[cr + 1] == ord("\n") else cr + 1)
