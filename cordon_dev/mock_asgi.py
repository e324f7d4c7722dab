"""What the mock servers share of raw ASGI: the types, reading a body, answering whole."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["Message", "Receive", "Scope", "Send", "body", "respond"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def body(receive: Receive) -> bytes:
    chunks = []
    while True:
        received = await receive()
        chunks.append(received.get("body", b""))
        if not received.get("more_body"):
            return b"".join(chunks)


async def respond(
    send: Send, status: int, content: bytes, headers: dict[str, str] | None = None
) -> None:
    fields = {"content-type": "application/json", **(headers or {})}
    fields["content-length"] = str(len(content))
    raw_headers = [(k.encode(), v.encode()) for k, v in fields.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": content})
