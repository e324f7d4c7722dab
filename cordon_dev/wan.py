"""A wide-area link for local topologies: a TCP proxy that delays and partitions.

Each region's leaf connection to central can be routed through a `WanLink` (DevStack
with `wan=True`), so tests and benches see what a real distance does: every byte is
held `delay_s` in each direction (ordering kept, throughput not limited), and
`partition()` cuts every connection and refuses new ones until `heal()`.

It runs its own event loop in a daemon thread, so synchronous tests can drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine
from typing import Any

__all__ = ["WanLink"]

CHUNK = 65_536


class WanLink:
    def __init__(self, host: str, listen_port: int, target_port: int, delay_s: float = 0.0) -> None:
        self.host = host
        self.listen_port = listen_port
        self.target_port = target_port
        self.delay_s = delay_s
        self.partitioned = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # -- driven from any thread ---------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        self._call(self._listen())

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def partition(self) -> None:
        """Cut the link: open connections are reset, new ones refused, until `heal()`."""
        self.partitioned = True
        self._call(self._cut())

    def heal(self) -> None:
        self.partitioned = False

    def set_delay(self, seconds: float) -> None:
        """One-way delay for bytes sent from now on (each direction)."""
        self.delay_s = seconds

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    # -- on the link's loop -------------------------------------------------------
    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.listen_port)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._cut()

    async def _cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.partitioned:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for each in (writer, up_writer):
                self._writers.discard(each)
                each.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction, each chunk released `delay_s` after it arrived."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    return
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(deliver())
        try:
            while data := await reader.read(CHUNK):
                queue.put_nowait((time.monotonic() + self.delay_s, data))
            queue.put_nowait((0.0, b""))
            await sender
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await sender
            writer.transport.abort()  # one side gone: the whole connection goes
