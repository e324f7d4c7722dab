"""A translated stream, step by step: what a provider's stream says (Bedrock's
ConverseStream events, Gemini's `streamGenerateContent` chunks), in the order it says
it, and the writers that put each step in the caller's stream at once (OpenAI's chat
completion chunks, Anthropic's message events). Nothing is gathered before it is
written, so the relay's early-release window is the same as for a stream the gateway
does not translate."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from cordon import jsoncodec
from gateway.upstream.translate import count

__all__ = [
    "ChatChunks",
    "End",
    "MessageEvents",
    "Step",
    "Text",
    "ToolArgs",
    "ToolStart",
    "Writer",
    "anthropic_stop",
]

Usage = tuple[Any, Any, Any]  # (prompt, completion, total) tokens as the provider counted


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class ToolStart:
    index: int  # the tool call's place among this answer's calls, from 0
    id: str
    name: str


@dataclass(frozen=True)
class ToolArgs:
    index: int
    json: str  # a piece of the call's arguments, as JSON text


@dataclass(frozen=True)
class End:
    finish: str  # OpenAI's finish reason
    usage: Usage


Step = Text | ToolStart | ToolArgs | End


class Writer(Protocol):
    def write(self, step: Step) -> bytes: ...


def _sse(data: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + jsoncodec.dumps(data) + b"\n\n"


class ChatChunks:
    """Steps as OpenAI `chat.completion.chunk` events, ending in `[DONE]`; the usage
    rides the chunk that carries the finish reason."""

    def __init__(self, model: str) -> None:
        now = time.time()
        self._base = {
            "id": f"chatcmpl-{int(now * 1000)}",
            "object": "chat.completion.chunk",
            "created": int(now),
            "model": model,
        }
        self._started = False

    def write(self, step: Step) -> bytes:
        if isinstance(step, End):
            prompt, completion, total = (count(n) for n in step.usage)
            usage = {"prompt_tokens": prompt, "completion_tokens": completion}
            final = self._chunk({}, step.finish) | {"usage": usage | {"total_tokens": total}}
            return _sse(final) + b"data: [DONE]\n\n"
        if isinstance(step, Text):
            delta: dict[str, Any] = {"content": step.text}
        elif isinstance(step, ToolStart):
            function = {"name": step.name, "arguments": ""}
            call = {"index": step.index, "id": step.id, "type": "function", "function": function}
            delta = {"tool_calls": [call]}
        else:
            delta = {"tool_calls": [{"index": step.index, "function": {"arguments": step.json}}]}
        if not self._started:
            delta = {"role": "assistant", **delta}
            self._started = True
        return _sse(self._chunk(delta, None))

    def _chunk(self, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return self._base | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


ANTHROPIC_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


def anthropic_stop(finish: str) -> str:
    """OpenAI's finish reason as Anthropic's stop reason."""
    return ANTHROPIC_STOP.get(finish, "end_turn")


class MessageEvents:
    """Steps as Anthropic's message events: `message_start`, a content block per text
    run or tool call (`content_block_start`, deltas, `content_block_stop`), then
    `message_delta` with the stop reason and usage, and `message_stop`."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._block = -1  # the open content block's index; -1 before the first
        self._open: str | None = None  # "text", "tool" or None (closed)
        self._tools: dict[int, int] = {}  # a tool call's index -> its content block
        self._started = False

    def write(self, step: Step) -> bytes:
        out = b"" if self._started else self._start()
        if isinstance(step, Text):
            if self._open != "text":
                out += self._open_block({"type": "text", "text": ""}, "text")
            delta = {"type": "text_delta", "text": step.text}
            out += self._delta(delta)
        elif isinstance(step, ToolStart):
            block = {"type": "tool_use", "id": step.id, "name": step.name, "input": {}}
            out += self._open_block(block, "tool")
            self._tools[step.index] = self._block
        elif isinstance(step, ToolArgs):
            # arguments go to their call's block while it is the open one (Anthropic's
            # blocks do not interleave); those of a call never started are dropped
            if self._open == "tool" and self._tools.get(step.index) == self._block:
                out += self._delta({"type": "input_json_delta", "partial_json": step.json})
        else:
            out += self._close() + self._finish(step)
        return out

    def _start(self) -> bytes:
        self._started = True
        message: dict[str, Any] = {
            "id": f"msg_{int(time.time() * 1000)}",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": self._model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return _sse({"type": "message_start", "message": message}, "message_start")

    def _open_block(self, block: dict[str, Any], kind: str) -> bytes:
        out = self._close()
        self._block += 1
        self._open = kind
        start = {"type": "content_block_start", "index": self._block, "content_block": block}
        return out + _sse(start, "content_block_start")

    def _delta(self, delta: dict[str, Any]) -> bytes:
        event = {"type": "content_block_delta", "index": self._block, "delta": delta}
        return _sse(event, "content_block_delta")

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return _sse({"type": "content_block_stop", "index": self._block}, "content_block_stop")

    def _finish(self, end: End) -> bytes:
        prompt, completion, _ = (count(n) for n in end.usage)
        delta = {"stop_reason": anthropic_stop(end.finish), "stop_sequence": None}
        usage = {"input_tokens": prompt or 0, "output_tokens": completion or 0}
        message_delta = {"type": "message_delta", "delta": delta, "usage": usage}
        stop = {"type": "message_stop"}
        return _sse(message_delta, "message_delta") + _sse(stop, "message_stop")
