"""The provider HTTP client against real sockets: framing, pooling, timeouts."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from cordon.errors import (
    ConnectError,
    ConnectTimeout,
    HttpClientError,
    RemoteProtocolError,
    ResponseTimeout,
    ResponseTooLargeError,
)
from cordon_dev.procs import free_port
from gateway.upstream.blocking import BLOCKING
from gateway.upstream.httpclient import HttpClient

T = TypeVar("T")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> str:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/x"

    yield start
    for server in servers:
        server.close()


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return head + await reader.readexactly(length)


def _post(client: HttpClient, url: str, first_byte: float = 2.0) -> Awaitable[object]:
    return client.request(
        "POST",
        url,
        b'{"a": 1}',
        {"content-type": "application/json"},
        connect=1,
        first_byte=first_byte,
        total=5,
    )


def _kept_alive(connections: list[int]) -> Handler:
    """`hello` to every request, on connections it keeps open; each one counted."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        while True:
            try:
                request = await _read_request(reader)
            except asyncio.IncompleteReadError:
                return
            assert b"POST /v1/x HTTP/1.1" in request and request.endswith(b'{"a": 1}')
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")

    return handler


async def _one_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    await writer.drain()
    writer.close()  # without saying `connection: close`


def _two_chunks(released: Callable[[], bool]) -> Handler:
    """`first`, then `second` only once `released()` says so."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        while not released():
            await asyncio.sleep(0.01)
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")

    return handler


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    await asyncio.sleep(5)


async def _garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    writer.write(b"SMTP ready\r\n\r\n")


async def test_content_length_body_and_one_connection_for_many_calls(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    connections: list[int] = []
    url = await serve(_kept_alive(connections))
    client = HttpClient()
    for _ in range(3):
        response = await _post(client, url)
        assert response.status == 200  # type: ignore[attr-defined]
        assert await response.read() == b"hello"  # type: ignore[attr-defined]
    assert len(connections) == 1
    client.close()


async def test_chunked_body_arrives_chunk_by_chunk(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    release = asyncio.Event()
    client = HttpClient()
    response = await _post(client, await serve(_two_chunks(release.is_set)))
    chunks = response.chunks()  # type: ignore[attr-defined]
    assert await anext(chunks) == b"first"  # before the rest was even sent
    release.set()
    assert [c async for c in chunks] == [b"second"]
    client.close()


async def test_a_pooled_connection_the_server_closed_is_retried_fresh(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    url = await serve(_one_per_connection)
    client = HttpClient()
    assert await (await _post(client, url)).read() == b"ok"  # type: ignore[attr-defined]
    await asyncio.sleep(0.05)
    assert await (await _post(client, url)).read() == b"ok"  # type: ignore[attr-defined]
    client.close()


async def test_no_first_byte_in_time_is_a_timeout(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    with pytest.raises(ResponseTimeout, match="first byte"):
        await _post(HttpClient(), await serve(_silent), first_byte=0.2)


async def test_refused_connection_and_garbage_are_errors(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    with pytest.raises(ConnectError, match="cannot connect"):
        await _post(HttpClient(), f"http://127.0.0.1:{free_port()}/v1/x")

    with pytest.raises(RemoteProtocolError, match="malformed HTTP"):
        await _post(HttpClient(), await serve(_garbage))


async def test_closing_a_response_drops_the_connection(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    dropped = asyncio.Event()

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        try:
            while True:
                writer.write(b"1\r\nx\r\n")
                await writer.drain()
                await asyncio.sleep(0.01)
        except ConnectionError:
            dropped.set()

    client = HttpClient()
    response = await _post(client, await serve(endless))
    response.close()  # type: ignore[attr-defined]
    await asyncio.wait_for(dropped.wait(), 2)


async def test_a_header_holding_a_line_break_is_never_sent(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    """A secret with a line break in it (a key file set as an API key) would add header
    lines of its own: the request is refused before a byte is sent."""
    seen: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await _read_request(reader))
        writer.close()

    url = await serve(record)
    hostile = {"x-goog-api-key": "k\r\nx-injected: yes"}
    with pytest.raises(HttpClientError, match="line break"):
        await HttpClient().request("POST", url, b"{}", hostile, connect=1, first_byte=1, total=2)
    assert seen == []


# --- blocking I/O (gateway.upstream.blocking): a loop serving one call in its thread ---


def _blocking(work: Callable[[], Awaitable[T]]) -> Awaitable[T]:
    """`work` with blocking I/O, on a loop of another thread (the servers run on this
    one), as the in-process SDK runs a synchronous caller's call."""

    def run() -> T:
        BLOCKING.set(True)
        return asyncio.run(work())  # type: ignore[arg-type]

    return asyncio.to_thread(run)


async def test_blocking_io_keeps_one_connection_and_retries_one_the_server_closed(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    connections: list[int] = []
    kept_url, closing_url = await serve(_kept_alive(connections)), await serve(_one_per_connection)

    async def calls() -> list[bytes]:
        client = HttpClient()
        bodies = [await (await _post(client, kept_url)).read() for _ in range(3)]  # type: ignore[attr-defined]
        for _ in range(2):
            bodies.append(await (await _post(client, closing_url)).read())  # type: ignore[attr-defined]
            time.sleep(0.05)  # the server's close arrives while the connection is idle
        client.close()
        return bodies

    assert await _blocking(calls) == [b"hello"] * 3 + [b"ok"] * 2
    assert len(connections) == 1


async def test_blocking_io_reads_a_body_as_the_reader_asks_and_refuses_one_too_large(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    asked = threading.Event()  # set on the client's thread

    async def large(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n" + b"x" * 100_000)

    slow_url, large_url = await serve(_two_chunks(asked.is_set)), await serve(large)

    async def calls() -> list[bytes]:
        client = HttpClient()
        chunks = (await _post(client, slow_url)).chunks()  # type: ignore[attr-defined]
        first = await anext(chunks)
        asked.set()
        read = [first, *[chunk async for chunk in chunks]]
        with pytest.raises(ResponseTooLargeError):
            await (await _post(client, large_url)).read(limit=1000)  # type: ignore[attr-defined]
        client.close()
        return read

    assert await _blocking(calls) == [b"first", b"second"]


async def test_blocking_io_times_out_and_says_what_failed(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    silent_url, garbage_url = await serve(_silent), await serve(_garbage)

    async def calls() -> None:
        with pytest.raises(ResponseTimeout, match="first byte"):
            await _post(HttpClient(), silent_url, first_byte=0.2)
        with pytest.raises(ConnectError, match="cannot connect"):
            await _post(HttpClient(), f"http://127.0.0.1:{free_port()}/v1/x")
        with pytest.raises(RemoteProtocolError, match="malformed HTTP"):
            await _post(HttpClient(), garbage_url)

    await _blocking(calls)


UNANSWERED = "provider.unanswered.test"


@pytest.fixture
def names(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[Any]]]:
    """A resolver of our own for the names a test puts in the dict it is given, as the
    system's would answer them (a numeric-only lookup of a name fails, asking no one);
    `UNANSWERED` never answers (DNS down) until the test ends."""
    released, real, known = threading.Event(), socket.getaddrinfo, {}

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != UNANSWERED and host not in known:
            return real(host, port, *args, **kwargs)
        flags = kwargs.get("flags", args[3] if len(args) > 3 else 0)
        if flags & socket.AI_NUMERICHOST:
            raise socket.gaierror(socket.EAI_NONAME, "not a numeric host")
        if host == UNANSWERED:
            released.wait(20)
            raise socket.gaierror(socket.EAI_AGAIN, "the test ended")
        return known[host]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield known
    released.set()


@pytest.mark.timeout(10)
@pytest.mark.parametrize("guarded", [False, True], ids=["unguarded", "guarded"])
@pytest.mark.parametrize("io", ["loop", "blocking"])
async def test_a_lookup_that_never_answers_is_a_connect_timeout(
    names: dict[str, list[Any]], io: str, guarded: bool
) -> None:
    """The connect timeout bounds the name's lookup too, in both I/O modes, with or
    without the egress guard (which resolves the name itself to check every address)."""

    async def call() -> None:
        client = HttpClient(guard=(lambda address, host: None) if guarded else None)
        with pytest.raises(ConnectTimeout, match=UNANSWERED):
            url = f"http://{UNANSWERED}:8080/v1/x"
            await client.request("POST", url, b"{}", {}, connect=0.3, first_byte=1, total=2)

    await (_blocking(call) if io == "blocking" else call())


@pytest.mark.parametrize("io", ["loop", "blocking"])
async def test_a_names_addresses_are_tried_in_turn(
    names: dict[str, list[Any]], serve: Callable[[Handler], Awaitable[str]], io: str
) -> None:
    """A name whose first address takes no connection (IPv6 first, the provider on IPv4
    only) is reached at the next one."""
    port = int((await serve(_kept_alive([]))).split(":")[2].split("/")[0])
    stream = (socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
    names["two.addresses.test"] = [
        (socket.AF_INET6, *stream, ("::1", port, 0, 0)),
        (socket.AF_INET, *stream, ("127.0.0.1", port)),
    ]

    async def call() -> bytes:
        client = HttpClient()
        response = await _post(client, f"http://two.addresses.test:{port}/v1/x")
        body: bytes = await response.read()  # type: ignore[attr-defined]
        client.close()
        return body

    assert await (_blocking(call) if io == "blocking" else call()) == b"hello"
