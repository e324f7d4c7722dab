"""A small HTTP/1.1 client for provider calls: pooled keep-alive, one write per request.

Measured here against the mock provider with uvloop, one call at a time (bench
notes in the README): aiohttp spends ~157 µs of CPU per call, this client ~30 µs,
which is most of the difference between meeting the gateway's 1 ms budget and not.
It does only what the upstream path needs: POST with a body, responses framed by
Content-Length or chunked encoding (parsed by httptools, as uvicorn does), TLS with
SNI, and three timeouts: connect, first byte, and total.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

from cordon.errors import (
    ConnectError,
    ConnectTimeout,
    HttpClientError,
    RemoteProtocolError,
    ResponseTimeout,
    ResponseTooLargeError,
)
from cordon.loops import call_on
from gateway.upstream import blocking as blocking_io

MAX_HEADER_BYTES = 64 * 1024  # all of a response's header lines together
# Body bytes buffered ahead of the reader: above HIGH_WATER the socket stops being read
# (TCP pushes back on the provider) until the reader drains below LOW_WATER, so a
# provider sending faster than the caller reads costs no more memory than this.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"


@functools.lru_cache(maxsize=1024)  # a provider's few URLs, on every call
def split_url(url: str) -> tuple[Origin, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Origin(parts.scheme, parts.hostname, port), path


NO_IDLE: dict[Origin, list[_Connection]] = {}  # a loop with none yet (never written)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; carries one response at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.response: Response | None = None
        self.used = False
        self._parser = httptools.HttpResponseParser(self)
        self._header_bytes = 0
        self.paused = False
        self.loop = asyncio.get_running_loop()  # whose idle pool it goes back to

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, so no isinstance.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(RemoteProtocolError(f"malformed HTTP from provider: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RemoteProtocolError("provider closed the connection"))

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._header_bytes = 0
        if self.response is not None:
            self.response.headers.clear()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES:
            self._fail(ResponseTooLargeError(f"provider headers exceed {MAX_HEADER_BYTES} bytes"))
            self.close()
            return
        if self.response is not None:
            self.response.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        response = self.response
        if response is not None:
            response.status = self._parser.get_status_code()
            response.headers_arrived()

    def on_body(self, body: bytes) -> None:
        if self.response is not None:
            self.response.body_arrived(body)

    def on_message_complete(self) -> None:
        response = self.response
        if response is not None:
            response.keep_alive = self._parser.should_keep_alive()
            response.complete()

    def _fail(self, exc: HttpClientError) -> None:
        if self.response is not None:
            self.response.failed(exc)

    @property
    def reusable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def pause(self) -> None:
        if self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and self.paused:
            self.paused = False
            self.transport.resume_reading()


class _Tunnel(asyncio.Protocol):
    """A proxy's answer to CONNECT: `established` once it says 200."""

    def __init__(self) -> None:
        self.established: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._answer = b""

    def data_received(self, data: bytes) -> None:
        if self.established.done():
            return
        self._answer += data
        if b"\r\n\r\n" not in self._answer:
            if len(self._answer) > MAX_HEADER_BYTES:
                self.established.set_exception(ConnectError("the proxy's answer is too long"))
            return
        status = self._answer.split(b"\r\n", 1)[0].split()
        if len(status) < 2 or status[1] != b"200":
            line = self._answer.split(b"\r\n", 1)[0].decode("latin-1")
            self.established.set_exception(ConnectError(f"the proxy refused: {line}"))
        else:
            self.established.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.established.done():
            self.established.set_exception(ConnectError("the proxy closed the connection"))


class Response:
    """Status and headers as soon as they arrive; the body read whole or as chunks."""

    def __init__(
        self, client: HttpClient, origin: Origin, connection: _Connection, total: float
    ) -> None:
        loop = asyncio.get_running_loop()
        self._client = client
        self._origin = origin
        self._connection = connection
        self._head: asyncio.Future[None] = loop.create_future()
        self._chunks: deque[bytes] = deque()
        self._buffered = 0  # bytes in _chunks
        self._waiter: asyncio.Future[None] | None = None
        self._error: HttpClientError | None = None
        self._done = False
        self._released = False
        # Deadlines as timers on the loop; with blocking I/O the reads keep them (and
        # a loop stepped by hand, which never runs, would only pile timers up).
        self._deadline: asyncio.TimerHandle | None = None
        if not blocking_io.BLOCKING.get():
            self._deadline = loop.call_later(total, self._expire, "total")
        self._first_byte: asyncio.TimerHandle | None = None
        # With blocking I/O (`gateway.upstream.blocking`): reads on from the socket,
        # where the loop would wake the reader; False if the deadline passed.
        self.feed: Callable[[], bool] | None = None
        self.status = 0
        self.headers: dict[str, str] = {}
        self.keep_alive = False
        self.got_bytes = False

    # fed by the connection
    def headers_arrived(self) -> None:
        self.got_bytes = True
        if self._first_byte is not None:
            self._first_byte.cancel()
        if not self._head.done():
            self._head.set_result(None)

    def body_arrived(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER:
            self._connection.pause()
        self._wake()

    def complete(self) -> None:
        self._done = True
        if self._deadline is not None:
            self._deadline.cancel()
        self._wake()

    def failed(self, exc: HttpClientError) -> None:
        if self._done:
            return
        self._error = exc
        if self._deadline is not None:
            self._deadline.cancel()
        if not self._head.done():
            self._head.set_exception(exc)
        self._wake()

    @property
    def finished(self) -> bool:
        """The whole answer is in, or it failed."""
        return self._done or self._error is not None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _expire(self, which: str) -> None:
        self.failed(ResponseTimeout(f"no {which.replace('_', ' ')} answer in time"))
        self._connection.close()

    # used by the caller
    async def wait_head(self, first_byte: float) -> None:
        if self._deadline is not None:  # else blocking I/O keeps the deadline
            self._first_byte = asyncio.get_running_loop().call_later(
                first_byte, self._expire, "first_byte"
            )
        await self._head

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body; past `limit` bytes the exchange is dropped and
        `ResponseTooLargeError` raised, so memory never holds more than the limit."""
        if self._done and self._error is None and not self._released:
            return self._whole(limit)  # all in already (a short answer): nothing to wait for
        parts: list[bytes] = []
        size = 0
        async for chunk in self.chunks():
            size += len(chunk)
            if limit is not None and size > limit:
                self.close()
                raise ResponseTooLargeError(f"provider answer exceeds {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    def _whole(self, limit: int | None) -> bytes:
        body = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        if limit is not None and len(body) > limit:
            self.close()
            raise ResponseTooLargeError(f"provider answer exceeds {limit} bytes")
        self.release()
        return body

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            while True:
                while self._chunks:
                    chunk = self._chunks.popleft()
                    self._buffered -= len(chunk)
                    if self._buffered < LOW_WATER:
                        self._connection.resume()
                    yield chunk
                if self._error is not None:
                    raise self._error
                if self._done:
                    return
                if self.feed is not None:  # blocking I/O: read on now
                    if not self.feed():
                        self._expire("total")
                    continue
                self._waiter = asyncio.get_running_loop().create_future()
                await self._waiter
        finally:
            self.release()

    def release(self) -> None:
        """Give the connection back if the exchange finished cleanly, else drop it."""
        if self._released:
            return
        self._released = True
        if self._deadline is not None:
            self._deadline.cancel()
        if self._first_byte is not None:
            self._first_byte.cancel()
        self._connection.response = None
        if self._done and self.keep_alive and self._error is None and self._connection.reusable:
            self._client._put_back(self._origin, self._connection)
        else:
            self._connection.close()

    def close(self) -> None:
        """Abort: the provider sees the connection drop, which cancels its work."""
        self._done = True
        self.release()
        self._connection.close()


# (address, host): raises ConnectError if the host's resolved address may not be reached
AddressGuard = Callable[[str, str], None]


_CLIENTS: weakref.WeakSet[HttpClient] = weakref.WeakSet()  # for `forget_loop`


def forget_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Every client drops `loop`'s idle connections (it is going away, with them)."""
    for client in list(_CLIENTS):
        client.forget(loop)


def _close_on(loop: asyncio.AbstractEventLoop, connection: _Connection) -> None:
    """Close `connection` on its own loop: from another thread, by that loop's hand; a
    caller's loop between its calls (not running) is closed here."""
    if loop.is_running():
        call_on(loop, connection.close)
    elif not loop.is_closed():
        connection.close()


def _receive_now(
    connection: _Connection, response: Response, first_byte: float, total: float
) -> None:
    """With blocking I/O: read until the answer's head is in (within `first_byte`); the
    body is read as the reader asks for it (`Response.feed`), within `total`."""
    transport = cast(blocking_io.BlockingTransport, connection.transport)
    started = time.monotonic()
    deadline = started + total
    blocking_io.wait_work()  # the provider is at work meanwhile

    def head_in() -> bool:
        return response.got_bytes or response.finished

    if not blocking_io.feed_until(transport, connection, head_in, started + min(first_byte, total)):
        response._expire("first_byte" if first_byte < total else "total")
        return

    def feed() -> bool:
        def more() -> bool:
            return response.finished or response._buffered > 0

        return blocking_io.feed_until(transport, connection, more, deadline)

    response.feed = feed


class HttpClient:
    def __init__(
        self,
        max_idle_per_origin: int = 64,
        guard: AddressGuard | None = None,
        ca_bundle: str | None = None,
    ) -> None:
        # Idle connections per event loop: a connection belongs to the loop that made
        # it, and the in-process SDK serves calls on its callers' loops (cordon_sdk).
        self._idle: dict[asyncio.AbstractEventLoop, dict[Origin, list[_Connection]]] = {}
        self._max_idle = max_idle_per_origin
        # Certificates are verified, and must name the host (SNI is sent): against the
        # system's trust store, or only the CAs in `ca_bundle` when one is given.
        self._ssl = ssl.create_default_context(cafile=ca_bundle)
        self._guard = guard
        _CLIENTS.add(self)

    async def request(
        self,
        method: str,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        connect: float,
        first_byte: float,
        total: float,
        proxy: str | None = None,
    ) -> Response:
        """`method` `url` (a provider call is a POST; an MCP server's session stream is a
        GET, its end a DELETE); with `proxy` (an http:// URL), through a CONNECT tunnel."""
        origin, path = split_url(url)
        through = split_url(proxy)[0] if proxy else None
        head = self._request_head(method, origin, path, headers, len(body))
        blocking = blocking_io.BLOCKING.get()
        for attempt in (0, 1):
            if blocking:
                connection = self._connection_now(origin, connect, through)
            else:
                connection = await self._connection(origin, connect, through)
            response = Response(self, origin, connection, total)
            connection.response = response
            assert connection.transport is not None
            if blocking:
                cast(blocking_io.BlockingTransport, connection.transport).send_timeout = total
            connection.transport.write(head + body)
            reused, connection.used = connection.used, True
            if blocking:
                _receive_now(connection, response, first_byte, total)
            try:
                await response.wait_head(first_byte)
            except RemoteProtocolError:
                response.close()
                # A kept-alive connection the provider had just closed: nothing was
                # answered, so the call can go once more on a fresh connection.
                if reused and not response.got_bytes and attempt == 0:
                    continue
                raise
            except BaseException:
                response.close()
                raise
            return response
        raise RemoteProtocolError("unreachable")

    @staticmethod
    def _request_head(
        method: str, origin: Origin, path: str, headers: Mapping[str, str], length: int
    ) -> bytes:
        lines = [
            f"{method} {path} HTTP/1.1",
            f"host: {origin.host_header}",
            f"content-length: {length}",
        ]
        for name, value in headers.items():
            if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
                # a secret or a token holding a line break would add header lines
                raise HttpClientError(f"header {name.splitlines()[0][:40]!r} holds a line break")
            lines.append(f"{name}: {value}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _idle_connection(self, origin: Origin) -> _Connection | None:
        """A kept-alive connection of this loop's to `origin`, if one is still open."""
        idle = self._idle.get(asyncio.get_running_loop(), NO_IDLE).get(origin)
        while idle:
            connection = idle.pop()
            if connection.reusable:
                return connection
        return None

    async def _connection(
        self, origin: Origin, connect_s: float, proxy: Origin | None = None
    ) -> _Connection:
        loop = asyncio.get_running_loop()
        if (kept := self._idle_connection(origin)) is not None:
            return kept
        if proxy is not None:
            return await self._tunnel(origin, proxy, connect_s)
        tls = self._ssl if origin.scheme == "https" else None
        try:
            async with asyncio.timeout(connect_s):
                address = await self._address(origin)
                _, protocol = await loop.create_connection(
                    _Connection,
                    address,
                    origin.port,
                    ssl=tls,
                    server_hostname=origin.host if tls else None,
                )
        except TimeoutError as exc:
            raise ConnectTimeout(f"connect to {origin.host}:{origin.port} timed out") from exc
        except OSError as exc:
            raise ConnectError(f"cannot connect to {origin.host}:{origin.port}: {exc}") from exc
        return protocol

    def _connection_now(
        self, origin: Origin, connect_s: float, proxy: Origin | None = None
    ) -> _Connection:
        """`_connection` with blocking I/O (`gateway.upstream.blocking`)."""
        if (kept := self._idle_connection(origin)) is not None:
            return kept
        tls = self._ssl if origin.scheme == "https" else None
        where = f"{origin.host}:{origin.port}"
        try:
            if proxy is None:
                deadline = time.monotonic() + connect_s
                address = self._address_now(origin, connect_s)
                left = deadline - time.monotonic()  # one deadline, the lookup's time included
                sock = blocking_io.connect(address, origin.port, left, tls, origin.host)
            else:
                sock = self._tunnel_now(origin, proxy, connect_s)
        except TimeoutError as exc:
            raise ConnectTimeout(f"connect to {where} timed out") from exc
        except OSError as exc:
            raise ConnectError(f"cannot connect to {where}: {exc}") from exc
        connection = _Connection()
        connection.connection_made(cast(asyncio.Transport, blocking_io.BlockingTransport(sock)))
        return connection

    def _tunnel_now(self, origin: Origin, proxy: Origin, connect_s: float) -> socket.socket:
        """`_tunnel` with blocking I/O: the socket, TLS inside the tunnel for https."""
        deadline = time.monotonic() + connect_s
        address = self._address_now(proxy, connect_s)
        sock = blocking_io.connect(address, proxy.port, deadline - time.monotonic(), None, "")
        where = f"{origin.host}:{origin.port}"
        tunnel = _Tunnel()
        transport = blocking_io.BlockingTransport(sock)
        transport.write(f"CONNECT {where} HTTP/1.1\r\nhost: {where}\r\n\r\n".encode())
        if not blocking_io.feed_until(transport, tunnel, tunnel.established.done, deadline):
            sock.close()
            raise TimeoutError(f"no answer from the proxy {proxy.host}")
        try:
            tunnel.established.result()  # ConnectError if the proxy refused
        except BaseException:
            sock.close()
            raise
        if origin.scheme != "https":
            return sock
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        return blocking_io.secure(sock, self._ssl, origin.host)

    def _address_now(self, origin: Origin, connect_s: float) -> str:
        """`_address` with a blocking lookup (bounded by the connect timeout, as there)."""
        if self._guard is None:
            return origin.host
        return self._allowed(origin, blocking_io.resolve(origin.host, origin.port, connect_s))

    async def _tunnel(self, origin: Origin, proxy: Origin, connect_s: float) -> _Connection:
        """A connection to `origin` through `proxy`'s CONNECT tunnel, TLS inside it for an
        https origin (the proxy sees only where, never what). The guard checks the
        proxy's addresses: the proxy resolves the provider's name."""
        loop = asyncio.get_running_loop()
        where = f"{origin.host}:{origin.port}"
        try:
            async with asyncio.timeout(connect_s):
                address = await self._address(proxy)
                transport, tunnel = await loop.create_connection(_Tunnel, address, proxy.port)
                transport.write(f"CONNECT {where} HTTP/1.1\r\nhost: {where}\r\n\r\n".encode())
                await tunnel.established
                if origin.scheme == "https":
                    secured = await loop.start_tls(
                        transport, tunnel, self._ssl, server_hostname=origin.host
                    )
                    if secured is None:
                        raise ConnectError(f"no TLS to {where} through {proxy.host}")
                    transport = secured
        except TimeoutError as exc:
            raise ConnectTimeout(f"connect to {where} through a proxy timed out") from exc
        except OSError as exc:
            raise ConnectError(f"cannot connect to {where} through {proxy.host}: {exc}") from exc
        connection = _Connection()
        transport.set_protocol(connection)
        connection.connection_made(transport)
        return connection

    async def _address(self, origin: Origin) -> str:
        """The address to connect to: with a guard, the first one the host resolves to
        that the guard allows, every one of them checked (a name pointed somewhere it
        must not go is refused, not just its first answer)."""
        if self._guard is None:
            return origin.host
        infos = await asyncio.get_running_loop().getaddrinfo(
            origin.host, origin.port, type=socket.SOCK_STREAM
        )
        return self._allowed(origin, infos)

    def _allowed(self, origin: Origin, infos: list[Any]) -> str:
        """The first of the resolved addresses, once the guard allowed every one."""
        assert self._guard is not None
        addresses = [str(info[4][0]) for info in infos]
        for address in addresses:
            self._guard(address, origin.host)
        if not addresses:
            raise ConnectError(f"{origin.host} resolves to no address")
        return addresses[0]

    def _put_back(self, origin: Origin, connection: _Connection) -> None:
        idle = self._idle.setdefault(connection.loop, {}).setdefault(origin, [])
        if len(idle) < self._max_idle:
            idle.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        """Close the idle connections of every loop (each on its own loop's thread,
        where that loop is running)."""
        for loop, pool in list(self._idle.items()):
            # Copies: another thread's loop may be taking from or adding to its pool.
            for connections in list(pool.values()):
                for connection in list(connections):
                    _close_on(loop, connection)
        self._idle.clear()

    def forget(self, loop: asyncio.AbstractEventLoop) -> None:
        """Drop `loop`'s idle connections (it is about to be closed, with them)."""
        for connections in self._idle.pop(loop, {}).values():
            for connection in connections:
                connection.close()
