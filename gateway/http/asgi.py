"""The few ASGI primitives the gateway needs, without a framework on the hot path."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from cordon import jsoncodec
from cordon.errors import BadRequestError, BodyTooLargeError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON = (b"content-type", b"application/json")
EVENT_STREAM = (b"content-type", b"text/event-stream")


def request_headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


async def read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(f"request body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequestError("client went away before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


MAX_JSON_DEPTH = 64  # far beyond any API's shape; deeper only to exhaust someone's stack


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = jsoncodec.loads(body)
    except ValueError as exc:
        raise BadRequestError(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise BadRequestError("request body must be a JSON object")
    if _depth_exceeds(payload, MAX_JSON_DEPTH):
        raise BadRequestError(f"request body is nested deeper than {MAX_JSON_DEPTH} levels")
    return payload


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether `value` nests containers deeper than `limit` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


async def respond(send: Send, status: int, body: bytes, headers: Headers | None = None) -> None:
    all_headers = [JSON, (b"content-length", str(len(body)).encode())]
    if headers:
        all_headers = [h for h in all_headers if h[0] not in {k for k, _ in headers}] + headers
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


async def respond_json(send: Send, status: int, value: Any) -> None:
    await respond(send, status, jsoncodec.dumps(value))
