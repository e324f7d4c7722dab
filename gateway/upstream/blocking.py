"""Blocking socket I/O under the HTTP client (`gateway.upstream.httpclient`), for an
event loop that serves one call and nothing else.

The in-process SDK serves a synchronous caller's call on a loop of the caller's own
thread (`cordon_sdk.here`): nothing else runs on that loop, so waiting for the provider
in a blocking `recv` holds up nobody, and saves each call the loop's turns (the
selector, the transport's callbacks, the futures waking the task) that an asynchronous
socket costs. The HTTP client's connection protocol is the same either way: a
`BlockingTransport` stands in for the loop's transport and feeds it what arrives.

`BLOCKING` says which calls do this: it is set in the context such a loop runs its call
in, and nowhere else. `WHILE_WAITING`, in the same context, is work for the time the
provider takes to answer (run once, after the request is sent, before the first read).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

__all__ = [
    "BLOCKING",
    "WHILE_WAITING",
    "BlockingTransport",
    "connect",
    "feed_until",
    "resolve",
    "wait_work",
]

BLOCKING: ContextVar[bool] = ContextVar("cordon_blocking_io", default=False)
WHILE_WAITING: ContextVar[Callable[[], None] | None] = ContextVar(
    "cordon_while_waiting", default=None
)
READ_BYTES = 256 * 1024


class BlockingTransport:
    """What the HTTP client's protocols use of an asyncio transport, over a blocking
    socket. Nothing is read until `feed_until` is called."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._closing = False
        self.send_timeout = 60.0  # the request's whole time, once it has one

    def write(self, data: bytes) -> None:
        """Send all of `data` within `send_timeout`; a connection the peer dropped (or
        that took no more in time) is closed, and the next read says so to the protocol
        (as the loop's transport would)."""
        try:
            self._sock.settimeout(self.send_timeout)
            self._sock.sendall(data)
        except OSError:
            self.close()

    def recv(self, timeout: float) -> bytes:
        """What arrives within `timeout` seconds; b"" once the peer closed.
        `TimeoutError` if nothing did."""
        self._sock.settimeout(max(timeout, 0.001))
        return self._sock.recv(READ_BYTES)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._sock.close()

    def pause_reading(self) -> None:
        """Nothing is read but what `feed_until` asks for."""

    def resume_reading(self) -> None:
        """Nothing is read but what `feed_until` asks for."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def feed_until(
    transport: BlockingTransport, protocol: asyncio.Protocol, done: Any, deadline: float
) -> bool:
    """Feed `protocol` what the socket receives until `done()` says so: True; False if
    `deadline` (a `time.monotonic()` time) came first. A dropped connection is the
    protocol's `connection_lost`, as the loop would tell it."""
    while not done():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        lost: OSError | None = None
        try:
            data = b"" if transport.is_closing() else transport.recv(left)
        except TimeoutError:
            return False
        except OSError as exc:
            data, lost = b"", exc
        if not data:
            transport.close()
            protocol.connection_lost(lost)
            return True
        protocol.data_received(data)
    return True


def wait_work() -> None:
    """Run this context's `WHILE_WAITING` work, once: the request is on its way."""
    work = WHILE_WAITING.get()
    if work is not None:
        WHILE_WAITING.set(None)
        work()


def resolve(host: str, port: int, timeout: float) -> list[Any]:
    """`socket.getaddrinfo` for a TCP connection, answered within `timeout` seconds or
    `TimeoutError`. An address is read at once; a name is looked up on a daemon thread of
    its own, as a lookup cannot be interrupted: one that answers late is dropped, and
    holds up no other lookup, no fork and no exit."""
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass  # a name
    answered = threading.Event()
    answer: list[Any] = []

    def look_up() -> None:
        try:
            answer.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            answer.append(exc)
        answered.set()

    threading.Thread(target=look_up, name=f"cordon-lookup-{host}", daemon=True).start()
    if not answered.wait(max(timeout, 0.001)):
        raise TimeoutError(f"no address for {host} within {timeout:g} s")
    if isinstance(answer[0], OSError):
        raise answer[0]
    return list(answer[0])


def connect(
    host: str, port: int, timeout: float, tls: ssl.SSLContext | None, server_name: str
) -> socket.socket:
    """A blocking TCP connection to `host` (a name or an address; a name's addresses
    tried in turn), with TLS for `server_name` when `tls` is given, made within `timeout`
    seconds, the lookup included. `OSError` (or `TimeoutError`) if it could not be."""
    deadline = time.monotonic() + timeout
    failed: OSError = OSError(f"{host} resolves to no address")
    for family, kind, proto, _, address in resolve(host, port, timeout):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"connect to {host}:{port} timed out")
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(left)
            sock.connect(address)  # the whole address: an IPv6 one keeps its scope
        except OSError as exc:
            sock.close()
            if isinstance(exc, TimeoutError):
                raise  # the whole deadline was this address's
            failed = exc  # refused, unreachable: the next address
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is None:
            return sock
        sock.settimeout(max(deadline - time.monotonic(), 0.001))  # one deadline for both
        return secure(sock, tls, server_name)
    raise failed


def secure(sock: socket.socket, tls: ssl.SSLContext, host: str) -> socket.socket:
    """`sock` with TLS for `host` (the handshake under the socket's timeout)."""
    try:
        return tls.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise
