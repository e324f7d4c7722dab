"""Relay a provider's SSE stream event by event, with output rules applied.

Each dialect's adapter rewrites only the events that carry answer text, keeps
what the record needs (text released, usage), and says which event ends the
stream: that one is held until the record is committed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from cordon import jsoncodec
from cordon.errors import UpstreamError, UpstreamTooLargeError
from gateway.http.dialects import Dialect, map_json_text
from gateway.policy import StreamFilter


@dataclass
class Event:
    raw: bytes
    name: str | None
    data: str


class SSEParser:
    """Split a byte stream into server-sent events (blank-line separated).

    Bounded: an event larger than `max_event_bytes`, or a stream larger than
    `max_stream_bytes`, raises `UpstreamTooLargeError`; each byte is scanned once."""

    def __init__(
        self, max_event_bytes: int = 1024 * 1024, max_stream_bytes: int = 64 * 1024 * 1024
    ) -> None:
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer already searched for an event's end
        self._max_event = max_event_bytes
        self._max_stream = max_stream_bytes
        self._total = 0

    def feed(self, chunk: bytes) -> list[Event]:
        self._total += len(chunk)
        if self._total > self._max_stream:
            raise UpstreamTooLargeError(f"the provider's stream exceeds {self._max_stream} bytes")
        self._buffer += chunk.replace(b"\r\n", b"\n")
        events: list[Event] = []
        while True:
            end = self._buffer.find(b"\n\n", max(0, self._scanned - 1))
            if end < 0:
                self._scanned = len(self._buffer)
                if self._scanned > self._max_event:
                    raise UpstreamTooLargeError(f"a stream event exceeds {self._max_event} bytes")
                return events
            raw = bytes(self._buffer[: end + 2])
            del self._buffer[: end + 2]
            self._scanned = 0
            events.append(_parse(raw))

    def rest(self) -> bytes:
        rest = bytes(self._buffer)
        self._buffer.clear()
        self._scanned = 0
        return rest


def _parse(raw: bytes) -> Event:
    name = None
    data = []
    for line in raw.decode("utf-8", "replace").split("\n"):
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" ") if line[5:6] == " " else line[5:])
    return Event(raw, name, "\n".join(data))


def _json(event: Event) -> dict[str, Any] | None:
    try:
        data = jsoncodec.loads(event.data)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _unreadable(event: Event) -> Relay:
    """An event no rule can read is never relayed: one without data (a comment, a
    keep-alive) is dropped, one with data that is not a JSON object ends the stream."""
    if not event.data.strip():
        return Relay([])
    raise UpstreamError("the provider sent a stream event that is not JSON; it was not relayed")


def encode(name: str | None, data: dict[str, Any]) -> bytes:
    head = f"event: {name}\n".encode() if name else b""
    return head + b"data: " + jsoncodec.dumps(data) + b"\n\n"


@dataclass
class Relay:
    """What one event becomes: bytes to send now, and whether it ends the stream."""

    out: list[bytes] = field(default_factory=list)
    terminal: bool = False


class StreamAdapter:
    """Dialect-neutral bookkeeping; subclasses know their event shapes."""

    def __init__(
        self, make_filter: Callable[[], StreamFilter] | None, quiet: Callable[[str], str] | None
    ) -> None:
        self._make_filter = make_filter
        self._quiet = quiet
        self._filters: dict[Any, StreamFilter] = {}
        # per key, how to wrap held-back text in an event of its own at the end
        self._templates: dict[Any, Callable[[str], bytes]] = {}
        self.text: list[str] = []
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.finish_reasons: list[str] = []  # why the model stopped, as the API says it

    def _finished(self, reason: Any) -> None:
        """Note why the model stopped (for the call's span): a provider's word, so a
        short string, and a few at most however many a stream sends."""
        if isinstance(reason, str) and len(self.finish_reasons) < 8:
            self.finish_reasons.append(reason[:40])

    @property
    def scanned_chars(self) -> int:
        return sum(f.scanned_chars for f in self._filters.values())

    def _feed(self, key: Any, delta: str, template: Callable[[str], bytes]) -> str:
        if self._make_filter is None:
            self.text.append(delta)
            return delta
        self._templates[key] = template
        filt = self._filters.get(key)
        if filt is None:
            filt = self._filters[key] = self._make_filter()
        released = filt.feed(delta)
        self.text.append(released)
        return released

    def _flush(self, key: Any) -> str:
        filt = self._filters.get(key)
        if filt is None:
            return ""
        released = filt.flush()
        self.text.append(released)
        return released

    def _flush_all(self) -> list[bytes]:
        """Events carrying whatever text is still held back, before the stream ends."""
        out = []
        for key, template in self._templates.items():
            rest = self._flush(key)
            if rest:
                out.append(template(rest))
        return out

    def relay(self, event: Event) -> Relay:
        raise NotImplementedError


class ChatStream(StreamAdapter):
    def relay(self, event: Event) -> Relay:
        if event.data.strip() == "[DONE]":
            return Relay([*self._flush_all(), event.raw], terminal=True)
        chunk = _json(event)
        if chunk is None:
            return _unreadable(event)
        if isinstance(chunk.get("usage"), dict):
            self.prompt_tokens = chunk["usage"].get("prompt_tokens")
            self.completion_tokens = chunk["usage"].get("completion_tokens")
        changed = False
        before: list[bytes] = []  # held-back tool arguments, released ahead of a finish
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if not isinstance(delta, dict):
                continue
            key = choice.get("index", 0)
            changed = self._tool_calls(chunk, key, delta) or changed
            text = delta.get("content")
            released = None
            if isinstance(text, str):
                released = self._feed(key, text, partial(_chat_delta, chunk, key))
            if choice.get("finish_reason") is not None:
                self._finished(choice["finish_reason"])
                released = (released or "") + self._flush(key)
                before += self._flush_tools(key)
            if released is not None and released != text:
                delta["content"] = released
                changed = True
        return Relay([*before, encode(None, chunk) if changed else event.raw])

    def _tool_calls(self, chunk: dict[str, Any], key: Any, delta: dict[str, Any]) -> bool:
        """Tool-call argument fragments go through the output rules like answer text."""
        changed = False
        for call in delta.get("tool_calls") or []:
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("arguments"), str):
                continue
            tool = (key, "tool", call.get("index", 0))
            template = partial(_chat_tool_delta, chunk, key, call.get("index", 0))
            released = self._feed(tool, function["arguments"], template)
            if released != function["arguments"]:
                function["arguments"] = released
                changed = True
        return changed

    def _flush_tools(self, key: Any) -> list[bytes]:
        out = []
        for tool in [k for k in self._templates if isinstance(k, tuple) and k[:2] == (key, "tool")]:
            rest = self._flush(tool)
            if rest:
                out.append(self._templates[tool](rest))
        return out


def _chat_tool_delta(chunk: dict[str, Any], index: int, tool: int, text: str) -> bytes:
    base = {k: v for k, v in chunk.items() if k not in ("choices", "usage")}
    call = {"index": tool, "function": {"arguments": text}}
    choice = {"index": index, "delta": {"tool_calls": [call]}, "finish_reason": None}
    return encode(None, {**base, "choices": [choice]})


def _chat_delta(chunk: dict[str, Any], index: int, text: str) -> bytes:
    base = {k: v for k, v in chunk.items() if k not in ("choices", "usage")}
    choice = {"index": index, "delta": {"content": text}, "finish_reason": None}
    return encode(None, {**base, "choices": [choice]})


class ResponsesStream(StreamAdapter):
    TERMINAL = ("response.completed", "response.failed", "response.incomplete")

    def relay(self, event: Event) -> Relay:
        data = _json(event)
        if data is None:
            return _unreadable(event)
        kind = data.get("type") or event.name
        key = (data.get("item_id"), data.get("content_index"))
        if kind == "response.output_text.delta" and isinstance(data.get("delta"), str):
            template = partial(_with, event.name, data, "delta")
            released = self._feed(key, data["delta"], template)
            if released == data["delta"]:
                return Relay([event.raw])
            return Relay([encode(event.name, {**data, "delta": released})])
        if kind == "response.function_call_arguments.delta" and isinstance(data.get("delta"), str):
            args = (data.get("item_id"), "arguments")
            released = self._feed(args, data["delta"], partial(_with, event.name, data, "delta"))
            if released == data["delta"]:
                return Relay([event.raw])
            return Relay([encode(event.name, {**data, "delta": released})])
        if kind == "response.function_call_arguments.done":
            args = (data.get("item_id"), "arguments")
            wrap = self._templates.get(args)
            rest = self._flush(args)
            out = [wrap(rest)] if rest and wrap else []
            return Relay([*out, self._quietly_nested(event, data)])
        if kind == "response.output_text.done":
            wrap = self._templates.get(key)
            rest = self._flush(key)
            out = [wrap(rest)] if rest and wrap else []
            return Relay([*out, self._quietly(event, data, "text")])
        if kind in ("response.content_part.done", "response.output_item.done"):
            return Relay([self._quietly_nested(event, data)])
        if kind in self.TERMINAL:
            response = data.get("response") or {}
            usage = response.get("usage") if isinstance(response, dict) else None
            if isinstance(usage, dict):
                self.prompt_tokens = usage.get("input_tokens")
                self.completion_tokens = usage.get("output_tokens")
            if isinstance(response, dict):
                self._finished(response.get("status"))
            return Relay([*self._flush_all(), self._quietly_nested(event, data)], terminal=True)
        return Relay([event.raw])

    def _quietly(self, event: Event, data: dict[str, Any], key: str) -> bytes:
        if self._quiet is None or not isinstance(data.get(key), str):
            return event.raw
        return encode(event.name, {**data, key: self._quiet(data[key])})

    def _quietly_nested(self, event: Event, data: dict[str, Any]) -> bytes:
        if self._quiet is None:
            return event.raw
        quiet = self._quiet

        def walk(node: Any) -> Any:
            if isinstance(node, dict):
                out = {}
                for key, value in node.items():
                    quieted = _quiet_field(key, value, quiet)
                    out[key] = walk(value) if quieted is None else quieted
                return out
            if isinstance(node, list):
                return [walk(x) for x in node]
            return node

        return encode(event.name, walk(data))


def _quiet_field(key: str, value: Any, quiet: Callable[[str], str]) -> Any:
    """A repeated text field (`text`, tool-call `arguments`), through the rules; None for
    any other field."""
    if not isinstance(value, str):
        return None
    if key == "text":
        return quiet(value)
    if key == "arguments":
        return map_json_text(value, quiet)
    return None


class MessagesStream(StreamAdapter):
    def relay(self, event: Event) -> Relay:
        data = _json(event)
        if data is None:
            return _unreadable(event)
        kind = data.get("type") or event.name
        if kind == "message_start":
            usage = (data.get("message") or {}).get("usage") or {}
            self.prompt_tokens = usage.get("input_tokens")
        elif kind == "message_delta":
            usage = data.get("usage") or {}
            self.completion_tokens = usage.get("output_tokens")
            self._finished((data.get("delta") or {}).get("stop_reason"))
            if usage.get("input_tokens"):  # counted only at the end (a translated stream)
                self.prompt_tokens = usage["input_tokens"]
        elif kind == "content_block_delta":
            delta = data.get("delta") or {}
            field_name = _BLOCK_DELTAS.get(str(delta.get("type")))
            if field_name is not None and isinstance(delta.get(field_name), str):
                template = partial(_block_delta, data.get("index"), delta["type"], field_name)
                released = self._feed(data.get("index"), delta[field_name], template)
                if released != delta[field_name]:
                    changed = {**delta, field_name: released}
                    return Relay([encode(event.name, {**data, "delta": changed})])
        elif kind == "content_block_stop":
            wrap = self._templates.get(data.get("index"))
            rest = self._flush(data.get("index"))
            if rest and wrap:
                return Relay([wrap(rest), event.raw])
        elif kind == "message_stop":
            return Relay([*self._flush_all(), event.raw], terminal=True)
        return Relay([event.raw])


# Anthropic's streamed block deltas that carry content, and the field that holds it:
# answer text, and a tool_use block's input as partial JSON.
_BLOCK_DELTAS = {"text_delta": "text", "input_json_delta": "partial_json"}


def _block_delta(index: Any, kind: str, field_name: str, text: str) -> bytes:
    delta = {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": kind, field_name: text},
    }
    return encode("content_block_delta", delta)


def _with(name: str | None, data: dict[str, Any], key: str, text: str) -> bytes:
    return encode(name, {**data, key: text})


ADAPTERS: dict[str, type[StreamAdapter]] = {
    "chat": ChatStream,
    "responses": ResponsesStream,
    "messages": MessagesStream,
}


def adapter_for(
    dialect: Dialect,
    make_filter: Callable[[], StreamFilter] | None,
    quiet: Callable[[str], str] | None,
) -> StreamAdapter:
    return ADAPTERS[dialect.route](make_filter, quiet)


def stream_error(dialect: Dialect, message: str, code: str) -> bytes:
    """How a stream ends when it must end badly, in the dialect's own terms."""
    if dialect.api == "anthropic":
        return encode(
            "error", {"type": "error", "error": {"type": "api_error", "message": message}}
        )
    if dialect.route == "responses":
        return encode(
            "error",
            {
                "type": "error",
                "code": code,
                "message": message,
                "param": None,
                "sequence_number": 0,
            },
        )
    return encode(
        None, {"error": {"message": message, "type": "api_error", "param": None, "code": code}}
    )
