"""A NATS connection that keeps reconnecting, and a loop that starts a piece of work
again after the connection or the server went away."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError

from cordon.nats.endpoint import Endpoint

log = logging.getLogger("cordon.nats")


async def connect(endpoint: Endpoint, name: str, on_reconnect: asyncio.Event | None = None) -> NATS:
    async def reconnected() -> None:
        log.info("%s reconnected", name)
        if on_reconnect is not None:
            on_reconnect.set()

    async def disconnected() -> None:
        log.warning("%s disconnected", name)

    async def error(exc: Exception) -> None:
        log.warning("%s: %s", name, exc)

    return await endpoint.connect(
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.25,
        reconnected_cb=reconnected,
        disconnected_cb=disconnected,
        error_cb=error,
    )


async def keep_running(
    what: str,
    body: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    retry_on: tuple[type[BaseException], ...] = (NatsError, TimeoutError),
) -> None:
    """Run `body` until `stop`, starting it again after the failures it may meet."""
    while not stop.is_set():
        try:
            await body()
        except retry_on as exc:
            expected = isinstance(exc, NatsError | TimeoutError)
            log.warning("%s interrupted, resuming: %s", what, exc, exc_info=not expected)
            await asyncio.sleep(0.5)
