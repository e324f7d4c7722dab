"""OpenAI's chat completions as a wire to translate to, for a caller who speaks
Anthropic's Messages API to an Azure OpenAI deployment: the chat request goes out as
it is (a stream asks for its usage), the completion comes back whole, and a stream's
chunks are read as steps for `gateway.upstream.steps.MessageEvents`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from gateway.upstream.steps import End, Step, Text, ToolArgs, ToolStart
from gateway.upstream.translate import sse_json

__all__ = ["answer", "request", "steps"]


def request(chat: dict[str, Any]) -> dict[str, Any]:
    """The chat request to send: a stream asks for its usage in its last chunk."""
    if chat.get("stream"):
        return {**chat, "stream_options": {"include_usage": True}}
    return chat


def answer(completion: dict[str, Any], model: str) -> dict[str, Any]:
    """The provider's chat completion, already in the chat shape."""
    return completion


async def steps(chunks: AsyncIterator[bytes]) -> AsyncIterator[Step]:
    """Chat completion chunks as steps (the first choice's); no `End` if the stream
    stopped before a finish reason."""
    finish: str | None = None
    usage: tuple[Any, Any, Any] = (None, None, None)
    async for chunk in sse_json(chunks, "the provider"):
        counted = chunk.get("usage")
        if isinstance(counted, dict):
            usage = (
                counted.get("prompt_tokens"),
                counted.get("completion_tokens"),
                counted.get("total_tokens"),
            )
        choices = chunk.get("choices") or []
        choice = choices[0] if choices and isinstance(choices[0], dict) else {}
        delta = choice.get("delta") or {}
        if isinstance(delta.get("content"), str) and delta["content"]:
            yield Text(delta["content"])
        for call in delta.get("tool_calls") or []:
            index, function = int(call.get("index", 0)), call.get("function") or {}
            if call.get("id"):
                yield ToolStart(index, str(call["id"]), str(function.get("name", "")))
            if function.get("arguments"):
                yield ToolArgs(index, str(function["arguments"]))
        if choice.get("finish_reason"):
            finish = str(choice["finish_reason"])
    if finish is not None:
        yield End(finish, usage)
