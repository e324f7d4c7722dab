"""The mock provider's cloud wires: Amazon Bedrock and Google Gemini / Vertex AI, as
their published API references show them, so the gateway's translations are tested
against the real shapes without a cloud account.

Bedrock: `POST /model/<modelId>/converse` (SigV4-signed), `/converse-stream` (AWS
event-stream frames with CRC32 checksums: `messageStart`, `contentBlockStart`,
`contentBlockDelta`, `contentBlockStop`, `messageStop`, `metadata`) and `/invoke` for
Titan (`inputText`) and Cohere (`texts`) embedding models.
Gemini: `.../models/<model>:generateContent`, `:streamGenerateContent?alt=sse` (SSE
chunks of `GenerateContentResponse`), `:batchEmbedContents` and Vertex AI's `:predict`
embeddings, the key in
`x-goog-api-key` or a bearer token this mock issued at `POST /token` (a service
account's JWT grant, as Vertex AI takes it; the same paths under
`/v1/projects/<p>/locations/<l>/publishers/google`).

Replies follow the OpenAI mock's: `echo: <last user text>`, a call of the first tool
with `{"echo": <text>}` when tools are offered, `tool said: <result>` after one. The
`500` mode answers in the provider's error shape; `break-stream`, `garbage-stream` and
`error-stream` and `oversize-stream` spoil a stream after its first two events (see
`_misbehaving`); `string-tool-input` answers a tool call whose input is a bare string.
"""

from __future__ import annotations

import binascii
import json
import struct
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from cordon_dev.mock_asgi import Receive, Scope, Send, body, respond

__all__ = ["Cloud", "event_frame", "serves"]


class Cloud(Protocol):
    """What a handler here needs of the mock provider serving it."""

    mode: str
    stats: Any  # Counter[str]
    seen_auth: dict[str, str]
    last_request: dict[str, Any]
    issued_tokens: set[str]

    def stream(
        self, receive: Receive, send: Send, events: list[bytes], content_type: str
    ) -> Awaitable[None]: ...


Handler = Callable[[Cloud, Scope, Receive, Send], Awaitable[None]]


GEMINI_OPERATIONS = (
    ":generateContent",
    ":streamGenerateContent",
    ":batchEmbedContents",
    ":predict",
)


def serves(scope: Scope) -> Handler | None:
    """The handler for a request to one of the cloud wires, or None."""
    path, method = scope["path"], scope["method"]
    if method != "POST":
        return None
    if path == "/token":
        return _token
    if path.startswith("/model/"):
        return _bedrock
    if path.endswith(GEMINI_OPERATIONS):
        return _gemini
    return None


async def _token(cloud: Cloud, scope: Scope, receive: Receive, send: Send) -> None:
    from cordon_dev.google_token import serve_token

    cloud.stats["google token"] += 1
    await serve_token(receive, send, cloud.issued_tokens)


# -- Bedrock -------------------------------------------------------------------------


async def _bedrock(cloud: Cloud, scope: Scope, receive: Receive, send: Send) -> None:
    headers = dict(scope["headers"])
    signature = headers.get(b"authorization", b"").decode()
    cloud.seen_auth["authorization"] = signature
    cloud.seen_auth["x-amz-date"] = headers.get(b"x-amz-date", b"").decode()
    model, _, operation = scope["path"].removeprefix("/model/").rpartition("/")
    cloud.seen_auth["model"] = model
    if not signature.startswith("AWS4-HMAC-SHA256 Credential="):
        error = {"x-amzn-errortype": "MissingAuthenticationTokenException"}
        await respond(send, 403, _aws_error("Missing Authentication Token"), error)
        return
    request = json.loads(await body(receive))
    cloud.last_request = request
    cloud.stats[f"bedrock {operation}"] += 1
    if cloud.mode == "500":
        await respond(send, 500, _aws_error("mock is failing on purpose"))
    elif operation == "converse":
        answer = converse_answer(request)
        if cloud.mode == "string-tool-input":  # a tool input that is no object
            for block in answer["output"]["message"]["content"]:
                if "toolUse" in block:
                    block["toolUse"]["input"] = block["toolUse"]["input"]["echo"]
        await respond(send, 200, json.dumps(answer).encode())
    elif operation == "converse-stream":
        frames = _misbehaving(cloud.mode, converse_events(request), _converse_reply(request)[0])
        await cloud.stream(receive, send, frames, "application/vnd.amazon.eventstream")
    elif operation == "invoke":
        await respond(send, 200, json.dumps(_invoke_embedding(model, request)).encode())
    else:
        await respond(send, 404, _aws_error(f"unknown operation {operation}"))


def _misbehaving(mode: str, events: list[bytes], text: str) -> list[bytes]:
    """A stream as `mode` spoils it after its first two events: `break-stream` ends it,
    `garbage-stream` sends an unreadable event (a frame failing its checksum, a chunk
    that is not JSON), `error-stream` the provider's error, its message holding the
    prompt's text (which no rule has seen)."""
    if mode == "break-stream":
        return events[:2]
    bedrock = not events[0].startswith(b"data:")
    if mode == "garbage-stream":
        spoiled = (
            events[2][:-1] + bytes([events[2][-1] ^ 0xFF]) if bedrock else b"data: {nope\r\n\r\n"
        )
        return [*events[:2], spoiled]
    if mode == "oversize-stream":  # an event that never ends, or a frame declaring 20 MiB
        huge = 20 * 1024 * 1024
        if bedrock:
            return [*events[:2], struct.pack(">II", huge, 0) + b"\0" * 65536]
        return [*events[:2], b"data: " + b"x" * (9 * 1024 * 1024)]
    if mode == "error-stream":
        message = {"message": f"throttled while writing: {text}"}
        error = (
            event_frame("throttlingException", message, "exception")
            if bedrock
            else b"data: " + json.dumps({"error": {"code": 429, **message}}).encode() + b"\r\n\r\n"
        )
        return [*events[:2], error]
    return events


def _aws_error(message: str) -> bytes:
    return json.dumps({"message": message}).encode()


def _last_user(request: dict[str, Any], key: str, role: str = "user") -> list[dict[str, Any]]:
    """The blocks (Converse: content; Gemini: parts) of the last message of `role`."""
    turns = [m for m in request.get(key, []) if m.get("role") == role]
    if not turns:
        return []
    blocks: list[dict[str, Any]] = turns[-1].get("content" if key == "messages" else "parts", [])
    return blocks


def _text(blocks: list[dict[str, Any]]) -> str:
    return " ".join(str(b["text"]) for b in blocks if "text" in b)


def _converse_reply(request: dict[str, Any]) -> tuple[str, str | None]:
    """(the reply's text, the tool to call or None)."""
    blocks = _last_user(request, "messages")
    results = [b["toolResult"] for b in blocks if "toolResult" in b]
    if results:
        return "tool said: " + _text(results[-1].get("content", [])), None
    tools = (request.get("toolConfig") or {}).get("tools") or []
    name = tools[0]["toolSpec"]["name"] if tools else None
    return "echo: " + _text(blocks), name


def converse_answer(request: dict[str, Any]) -> dict[str, Any]:
    text, tool = _converse_reply(request)
    if tool is not None:
        use = {"toolUseId": "tooluse_mock_1", "name": tool, "input": {"echo": text}}
        content: list[dict[str, Any]] = [{"toolUse": use}]
        reason = "tool_use"
    else:
        content, reason = [{"text": text}], "end_turn"
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": reason,
        "usage": _converse_usage(text),
        "metrics": {"latencyMs": 1},
    }


def _converse_usage(text: str) -> dict[str, int]:
    words = len(text.split())
    return {"inputTokens": words, "outputTokens": words + 1, "totalTokens": 2 * words + 1}


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [words[0]] + [" " + w for w in words[1:]]


def converse_events(request: dict[str, Any]) -> list[bytes]:
    """A ConverseStream answer's frames: the reply word by word, or a tool use whose
    input arrives in two pieces."""
    text, tool = _converse_reply(request)
    frames = [event_frame("messageStart", {"role": "assistant"})]
    if tool is not None:
        start = {"toolUse": {"toolUseId": "tooluse_mock_1", "name": tool}}
        frames.append(event_frame("contentBlockStart", {"contentBlockIndex": 0, "start": start}))
        given = json.dumps({"echo": text})
        for piece in (given[: len(given) // 2], given[len(given) // 2 :]):
            delta = {"contentBlockIndex": 0, "delta": {"toolUse": {"input": piece}}}
            frames.append(event_frame("contentBlockDelta", delta))
        reason = "tool_use"
    else:
        for word in _words(text):
            delta = {"contentBlockIndex": 0, "delta": {"text": word}}
            frames.append(event_frame("contentBlockDelta", delta))
        reason = "end_turn"
    frames.append(event_frame("contentBlockStop", {"contentBlockIndex": 0}))
    frames.append(event_frame("messageStop", {"stopReason": reason}))
    metadata = {"usage": _converse_usage(text), "metrics": {"latencyMs": 1}}
    frames.append(event_frame("metadata", metadata))
    return frames


def event_frame(event_type: str, payload: dict[str, Any], message_type: str = "event") -> bytes:
    """One AWS event-stream message: prelude (total and headers length, CRC32), string
    headers, the JSON payload, and the message's CRC32."""
    fields = {
        ":event-type": event_type,
        ":content-type": "application/json",
        ":message-type": message_type,
    }
    if message_type == "exception":
        fields = {":exception-type": event_type, ":message-type": message_type}
    headers = b"".join(
        bytes([len(k)]) + k.encode() + b"\x07" + struct.pack(">H", len(v)) + v.encode()
        for k, v in fields.items()
    )
    data = json.dumps(payload).encode()
    prelude = struct.pack(">II", 12 + len(headers) + len(data) + 4, len(headers))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + headers + data
    return message + struct.pack(">I", binascii.crc32(message))


def _invoke_embedding(model: str, request: dict[str, Any]) -> dict[str, Any]:
    if model.startswith("cohere."):
        texts = request.get("texts") or []
        return {"embeddings": [_vector(str(t)) for t in texts], "texts": texts}
    text = str(request.get("inputText", ""))
    return {"embedding": _vector(text), "inputTextTokenCount": len(text.split())}


def _vector(text: str) -> list[float]:
    return [float(len(text)), 0.5, -0.25]


# -- Gemini / Vertex AI ----------------------------------------------------------------


async def _gemini(cloud: Cloud, scope: Scope, receive: Receive, send: Send) -> None:
    headers = dict(scope["headers"])
    key = headers.get(b"x-goog-api-key", b"").decode()
    bearer = headers.get(b"authorization", b"").decode().removeprefix("Bearer ")
    cloud.seen_auth["x-goog-api-key"] = key
    cloud.seen_auth["authorization"] = bearer
    if not key and bearer not in cloud.issued_tokens:
        status = 401 if bearer else 403
        message = (
            "Request had invalid authentication credentials"
            if bearer
            else ("Method doesn't allow unregistered callers")
        )
        await respond(send, status, _google_error(status, message))
        return
    path = scope["path"]
    cloud.seen_auth["path"] = path
    model, _, operation = path.rsplit("/models/", 1)[-1].partition(":")
    cloud.seen_auth["model"] = model
    request = json.loads(await body(receive))
    cloud.last_request = request
    cloud.stats[f"gemini {operation}"] += 1
    if cloud.mode == "500":
        await respond(send, 500, _google_error(500, "mock is failing on purpose"))
    elif operation == "generateContent":
        answer = gemini_answer(request)
        if cloud.mode == "string-tool-input":  # function call args that are no object
            for part in answer["candidates"][0]["content"]["parts"]:
                if "functionCall" in part:
                    part["functionCall"]["args"] = part["functionCall"]["args"]["echo"]
        await respond(send, 200, json.dumps(answer).encode())
    elif operation == "streamGenerateContent":
        query = scope.get("query_string", b"").decode()
        if "alt=sse" not in query:  # without it Gemini streams one JSON array
            await respond(send, 400, _google_error(400, "this mock streams with alt=sse only"))
            return
        chunks = _misbehaving(cloud.mode, gemini_events(request), _gemini_reply(request)[0])
        await cloud.stream(receive, send, chunks, "text/event-stream")
    elif operation == "predict":  # Vertex AI's text embedding models
        found = [
            {"embeddings": {"values": _vector(i["content"]), "statistics": {"token_count": 2}}}
            for i in request["instances"]
        ]
        await respond(send, 200, json.dumps({"predictions": found}).encode())
    else:
        vectors = [{"values": _vector(_text(r["content"]["parts"]))} for r in request["requests"]]
        await respond(send, 200, json.dumps({"embeddings": vectors}).encode())


def _google_error(status: int, message: str) -> bytes:
    names = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}
    error = {"code": status, "message": message, "status": names.get(status, "INTERNAL")}
    return json.dumps({"error": error}).encode()


def _gemini_reply(request: dict[str, Any]) -> tuple[str, str | None]:
    parts = _last_user(request, "contents")
    results = [p["functionResponse"] for p in parts if "functionResponse" in p]
    if results:
        return "tool said: " + str((results[-1].get("response") or {}).get("content", "")), None
    declared = [d for t in request.get("tools") or [] for d in t.get("functionDeclarations", [])]
    return "echo: " + _text(parts), declared[0]["name"] if declared else None


def _gemini_usage(text: str) -> dict[str, int]:
    words = len(text.split())
    return {
        "promptTokenCount": words,
        "candidatesTokenCount": words + 1,
        "totalTokenCount": 2 * words + 1,
    }


def _candidate(parts: list[dict[str, Any]], finish: str | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return candidate


def gemini_answer(request: dict[str, Any]) -> dict[str, Any]:
    text, tool = _gemini_reply(request)
    if tool is not None:
        parts: list[dict[str, Any]] = [{"functionCall": {"name": tool, "args": {"echo": text}}}]
    else:
        parts = [{"text": text}]
    return {"candidates": [_candidate(parts, "STOP")], "usageMetadata": _gemini_usage(text)}


def gemini_events(request: dict[str, Any]) -> list[bytes]:
    """A `streamGenerateContent?alt=sse` answer: a chunk per word (the last with the
    finish reason), or one chunk with the function call; CRLF-separated, as Google's."""
    text, tool = _gemini_reply(request)
    if tool is not None:
        call = {"functionCall": {"name": tool, "args": {"echo": text}}}
        answers: list[dict[str, Any]] = [{"candidates": [_candidate([call], "STOP")]}]
    else:
        words = _words(text)
        answers = [
            {"candidates": [_candidate([{"text": w}], "STOP" if i == len(words) - 1 else None)]}
            for i, w in enumerate(words)
        ]
    answers[-1]["usageMetadata"] = _gemini_usage(text)
    return [b"data: " + json.dumps(a).encode() + b"\r\n\r\n" for a in answers]
