"""A mock model provider: a real HTTP server speaking OpenAI's wire format.

It answers `echo: <last user message>` so tests can put a value in a prompt and
find it (or its redaction) in the answer. Raw ASGI, so the bench measures the
gateway and not the mock.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MODELS = ("mock-gpt", "mock-gpt-mini")


def _last_user_text(request: dict[str, Any]) -> str:
    for message in reversed(request.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def completion(request: dict[str, Any]) -> dict[str, Any]:
    text = "echo: " + _last_user_text(request)
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in request.get("messages", []))
    return {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", MODELS[0]),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(text.split()),
            "total_tokens": prompt_tokens + len(text.split()),
        },
    }


def stream_events(request: dict[str, Any]) -> list[bytes]:
    answer = completion(request)
    words = answer["choices"][0]["message"]["content"].split(" ")
    base = {k: answer[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    events = []
    for i, word in enumerate(words):
        delta = {"role": "assistant", "content": word} if i == 0 else {"content": " " + word}
        chunk = base | {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        events.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    final = base | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    events.append(b"data: " + json.dumps(final).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(
    send: Send, status: int, body: bytes, content_type: bytes = b"application/json"
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path, method = scope["path"], scope["method"]
    if path == "/healthz":
        await _respond(send, 200, b'{"status":"ok"}')
    elif path == "/v1/models" and method == "GET":
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "mock"} for m in MODELS]
        await _respond(send, 200, json.dumps({"object": "list", "data": data}).encode())
    elif path == "/v1/chat/completions" and method == "POST":
        await _chat(receive, send)
    else:
        error = {"error": {"message": f"no route {method} {path}", "type": "invalid_request_error"}}
        await _respond(send, 404, json.dumps(error).encode())


async def _chat(receive: Receive, send: Send) -> None:
    try:
        request = json.loads(await _body(receive))
    except ValueError:
        error = {"error": {"message": "invalid JSON", "type": "invalid_request_error"}}
        await _respond(send, 400, json.dumps(error).encode())
        return
    if not request.get("stream"):
        await _respond(send, 200, json.dumps(completion(request)).encode())
        return
    headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for event in stream_events(request):
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def run(host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
