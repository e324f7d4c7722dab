"""What the translated dialects (`bedrock`, `gemini`) share: reading an OpenAI chat
completion request (its text, its tool calls' arguments, its sampling settings) and
writing the OpenAI chat completion a provider's answer becomes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from cordon import jsoncodec
from cordon.errors import UpstreamError

__all__ = [
    "MAX_EVENT",
    "arguments",
    "chat_completion",
    "count",
    "json_object",
    "sampling",
    "sse_json",
    "text_of",
    "tool_call",
    "turns",
]

MAX_EVENT = 8 * 1024 * 1024  # one streamed event, read whole before it is translated


def text_of(content: Any) -> str:
    """A caller's message text: a string, or the text parts of a list of them. Only
    what the pack's rules read as text is taken: a part of another type (an image), or
    a `text` that is not a string, is `UpstreamError` (refused, never dropped or
    turned into text the rules did not see)."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise UpstreamError("message content is a string or a list of text parts")
    texts = []
    for part in content:
        kind = part.get("type", "text") if isinstance(part, dict) else None
        if kind != "text" or not isinstance(part.get("text"), str):
            raise UpstreamError(f"content of type {kind} is not translated for this provider")
        texts.append(part["text"])
    return "".join(texts)


def turns(
    chat: Mapping[str, Any],
    assistant: str,
    key: str,
    parts_of: Callable[[dict[str, Any]], list[dict[str, Any]]],
) -> tuple[list[str], list[dict[str, Any]]]:
    """A chat request's system (and developer) texts, and its other messages as the
    alternating turns Converse and Gemini take: `{"role": "user" | assistant, key:
    parts}`, a run of one role's messages joined into one turn."""
    system: list[str] = []
    joined: list[dict[str, Any]] = []
    for message in chat.get("messages") or []:
        if not isinstance(message, dict):
            raise UpstreamError("every message is an object")
        if message.get("role") in ("system", "developer"):
            system.append(text_of(message.get("content")))
            continue
        role = assistant if message.get("role") == "assistant" else "user"
        if joined and joined[-1]["role"] == role:  # the providers alternate roles
            joined[-1][key].extend(parts_of(message))
        else:
            joined.append({"role": role, key: parts_of(message)})
    return system, joined


def arguments(call: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """A caller's tool call: its function's name and its arguments as an object
    (arguments that are JSON but no object, or no JSON, are kept under `arguments`).
    Arguments that are not a string, as the rules read them, are `UpstreamError`."""
    function = call.get("function") or {}
    raw = function.get("arguments") or "{}"
    if not isinstance(raw, str):
        raise UpstreamError("a tool call's arguments are a string of JSON")
    try:
        parsed = jsoncodec.loads(raw)
    except ValueError:
        parsed = raw
    return str(function.get("name", "")), parsed if isinstance(parsed, dict) else {
        "arguments": parsed
    }


def count(value: Any) -> int | None:
    """A provider's token count, if it is one (a string or a float is not)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def sampling(chat: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """The request's sampling settings under the provider's `names` for `max_tokens`,
    `temperature`, `top_p` and `stop`."""
    config: dict[str, Any] = {}
    tokens = chat.get("max_completion_tokens") or chat.get("max_tokens")
    if isinstance(tokens, int):
        config[names["max_tokens"]] = tokens
    for ours in ("temperature", "top_p"):
        if isinstance(chat.get(ours), int | float):
            config[names[ours]] = chat[ours]
    stop = chat.get("stop")
    if stop:
        config[names["stop"]] = [stop] if isinstance(stop, str) else list(stop)
    return config


def chat_completion(
    model: str,
    text: list[str],
    calls: list[dict[str, Any]],
    finish: str,
    usage: tuple[Any, Any, Any],
) -> dict[str, Any]:
    """An OpenAI chat completion of `text` and tool `calls`; `usage` is (prompt,
    completion, total) tokens as the provider counted them."""
    reply: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(text) if text or not calls else None,
    }
    if calls:
        reply["tool_calls"] = calls
    prompt, completion, total = (count(n) for n in usage)
    now = time.time()
    return {
        "id": f"chatcmpl-{int(now * 1000)}",
        "object": "chat.completion",
        "created": int(now),
        "model": model,
        "choices": [{"index": 0, "message": reply, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total},
    }


def tool_call(call_id: str, name: str, args: Any) -> dict[str, Any]:
    """One OpenAI tool call."""
    function = {"name": name, "arguments": jsoncodec.dumps(args or {}).decode()}
    return {"id": call_id, "type": "function", "function": function}


async def sse_json(chunks: AsyncIterator[bytes], name: str) -> AsyncIterator[dict[str, Any]]:
    """A provider's server-sent events as JSON objects (their `data:` lines joined;
    comments, keep-alives and OpenAI's `[DONE]` left out). An event that is not a JSON
    object, one over MAX_EVENT bytes, or an `error` event is `UpstreamError`: naming
    the error's code only, since its message may quote the prompt and this text
    reaches the caller's stream and the record, where no rule runs on it.

    Each byte is scanned once (a stream that never ends an event costs what it sends,
    not its square): carriage returns go (JSON keeps none outside strings, where they
    are escaped), and an event ends at a blank line."""
    pending = bytearray()
    async for chunk in chunks:
        scanned = max(0, len(pending) - 1)
        pending += chunk.replace(b"\r", b"")
        while (end := pending.find(b"\n\n", scanned)) >= 0:
            event = bytes(pending[:end])
            del pending[: end + 2]
            scanned = 0
            data = b"\n".join(
                line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:")
            )
            if data and data != b"[DONE]":
                yield json_object(data, name)
        if len(pending) > MAX_EVENT:
            raise UpstreamError(f"{name}'s stream sent an event over {MAX_EVENT} bytes")


def json_object(data: bytes, name: str) -> dict[str, Any]:
    """One streamed event's JSON object; `UpstreamError` if it is none, or if it is an
    `error` event (named by its code only)."""
    try:
        found = jsoncodec.loads(data)
    except ValueError as exc:
        raise UpstreamError(f"{name}'s stream held an event that is not JSON") from exc
    if not isinstance(found, dict):
        raise UpstreamError(f"{name}'s stream held an event that is not a JSON object")
    error = found.get("error")
    if isinstance(error, dict):
        code = error.get("status") or error.get("code") or error.get("type") or "error"
        raise UpstreamError(f"{name} broke off the stream: {str(code)[:100]}")
    return found
