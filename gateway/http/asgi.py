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


# Set in the scope by the connection guard (gateway.http.connections) when it ended a
# body the app will not get whole (it stalled; an upgrade took the rest): the refusal
# to raise, a `BadRequestError`.
BODY_REFUSED = "cordon.body_refused"


async def read_body(scope: Scope, receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    """The whole body, at most `limit` bytes; the connection guard's refusal if it ended
    the body early (`ClientTimeoutError`: a slow or lying client holds no slot)."""
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
            refused = scope.get(BODY_REFUSED)
            if isinstance(refused, BadRequestError):
                raise refused
            return b"".join(chunks)


MAX_JSON_DEPTH = 64  # far beyond any API's shape; deeper only to exhaust someone's stack


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The request body as the one strict reader reads it (`cordon.jsoncodec`): what it
    accepts, policy, signing and the record codec all handle."""
    try:
        payload = jsoncodec.loads(body, MAX_JSON_DEPTH)
    except ValueError as exc:
        message = f"request body is not valid JSON as the gateway reads it: {exc}"
        raise BadRequestError(message) from exc
    if not isinstance(payload, dict):
        raise BadRequestError("request body must be a JSON object")
    return payload


async def respond(send: Send, status: int, body: bytes, headers: Headers | None = None) -> None:
    all_headers = [JSON, (b"content-length", str(len(body)).encode())]
    if headers:
        given = {name for name, _ in headers}
        all_headers = [h for h in all_headers if h[0] not in given] + headers
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


async def respond_json(send: Send, status: int, value: Any) -> None:
    await respond(send, status, jsoncodec.dumps(value))
