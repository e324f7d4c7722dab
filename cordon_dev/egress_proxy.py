"""A small HTTP CONNECT proxy on loopback, in a thread of its own: what a corporate
egress proxy does. It counts the tunnels it opened and to where, and can send a named
host elsewhere (`redirect`), so a configuration file that names the real provider
(`https://api.openai.com/v1`, as the seeds print it) reaches a mock provider holding a
certificate for that name from a test CA, with the file left exactly as written."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Mapping

__all__ = ["ConnectProxy"]


class ConnectProxy:
    def __init__(self, redirect: Mapping[str, tuple[str, int]] | None = None) -> None:
        self.tunnels: list[str] = []
        self.port = 0
        self._redirect = dict(redirect or {})
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        method, where, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            writer.close()
            return
        host, port = where.rsplit(":", 1)
        target_host, target_port = self._redirect.get(where, (host, int(port)))
        upstream_reader, upstream_writer = await asyncio.open_connection(target_host, target_port)
        self.tunnels.append(where)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
