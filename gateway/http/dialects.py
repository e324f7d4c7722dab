"""The calls the gateway serves, each in its provider's own wire format.

A dialect knows where the prompt and the answer text live in its JSON, how it
reports usage, what its errors look like, and how its stream ends. The call
pipeline (gateway.http.calls) is the same for all of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cordon import jsoncodec
from cordon.errors import CordonError
from gateway.policy import map_json

Text = Callable[[str], str]


def _map_content(content: Any, fn: Text) -> Any:
    """Apply `fn` to a message's text: a string, or every text its parts, blocks or items
    carry."""
    if isinstance(content, str):
        return fn(content)
    if isinstance(content, list):
        return [_map_part(part, fn) for part in content]
    return content


def _map_part(part: Any, fn: Text) -> Any:
    """Every text one message, content part, block or item carries, wherever its API puts
    it: `text` (parts, blocks, system prompts), `content` (messages, tool results),
    `output` (Responses function_call_output), `summary` (reasoning), tool-call
    `arguments` (a JSON document in a string: chat's `tool_calls[].function`, Responses'
    function_call) and Anthropic `tool_use.input`."""
    if not isinstance(part, dict):
        return part
    out = dict(part)
    for key in ("text", "output"):
        if isinstance(out.get(key), str):
            out[key] = fn(out[key])
    for key in ("content", "summary"):
        if key in out:
            out[key] = _map_content(out[key], fn)
    if isinstance(out.get("arguments"), str):
        out["arguments"] = map_json_text(out["arguments"], fn)
    if out.get("type") == "tool_use" and isinstance(out.get("input"), dict | list):
        out["input"] = map_json(out["input"], fn)
    for key in ("function", "function_call"):
        if isinstance(out.get(key), dict):
            out[key] = _map_part(out[key], fn)
    if isinstance(out.get("tool_calls"), list):
        out["tool_calls"] = [_map_part(call, fn) for call in out["tool_calls"]]
    return out


def map_json_text(text: str, fn: Text) -> str:
    """`fn` on every string inside a JSON document held in a string (tool-call arguments);
    the result is still valid JSON. Text that is not JSON the reader accepts — a
    fragment, or JSON written to confuse (a key twice, a lone surrogate) — is mapped as
    text with its `\\u` escapes decoded, so no escape hides a value from the rules; if
    they change nothing it goes out as it came."""
    try:
        value = jsoncodec.loads(text)
    except ValueError:
        readable = _unescaped(text) if "\\u" in text else text
        mapped_text = fn(readable)
        return text if mapped_text == readable else mapped_text
    mapped = map_json(value, fn)
    return text if mapped == value else jsoncodec.dumps(mapped).decode()


# A JSON `\\u` escape: a surrogate pair, or one code unit.
_UNICODE_ESCAPE = re.compile(
    r"\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})|\\u([0-9a-f]{4})", re.IGNORECASE
)


def _unescaped(text: str) -> str:
    """`text` with its JSON `\\u` escapes as the characters they stand for (a lone
    surrogate as U+FFFD, which any encoder can carry)."""

    def char(match: re.Match[str]) -> str:
        high, low, single = match.groups()
        if high is not None:
            return chr(0x10000 + ((int(high, 16) - 0xD800) << 10) + int(low, 16) - 0xDC00)
        code = int(single, 16)
        return "\ufffd" if 0xD800 <= code <= 0xDFFF else chr(code)

    return _UNICODE_ESCAPE.sub(char, text)


def _map_messages(messages: Any, fn: Text) -> Any:
    if not isinstance(messages, list):
        return messages
    return [_map_part(m, fn) for m in messages]


MAX_MODEL_CHARS = 256  # provider model ids are far shorter

# Our error kinds, as OpenAI's API names them.
_OPENAI_TYPES = {
    "authentication_error": "invalid_request_error",
    "permission_error": "invalid_request_error",
    "not_found_error": "invalid_request_error",
    "request_too_large": "invalid_request_error",
    "invalid_request_error": "invalid_request_error",
    "rate_limit_error": "rate_limit_error",
}


# The error type of an answer, by its status: one table for every refusal of the gateway
# (the status and code come from the error classes, `cordon.errors`).
_KIND_BY_STATUS = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
}


def kind_of(status: int, code: str) -> str:
    """The error type both APIs' SDKs expect for a refusal with `status` and `code`."""
    if code == "overloaded":
        return "overloaded_error"
    client_side = "invalid_request_error" if 400 <= status < 500 else "api_error"
    return _KIND_BY_STATUS.get(status, client_side)


def openai_error(message: str, kind: str, code: str) -> bytes:
    error_type = _OPENAI_TYPES.get(kind, "api_error")
    body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return jsoncodec.dumps(body)


# Anthropic's error types are a closed set; ours map onto it.
_ANTHROPIC_TYPES = {
    "invalid_request_error": "invalid_request_error",
    "authentication_error": "authentication_error",
    "permission_error": "permission_error",
    "not_found_error": "not_found_error",
    "request_too_large": "request_too_large",
    "rate_limit_error": "rate_limit_error",
    "overloaded_error": "overloaded_error",
}


def anthropic_error(message: str, kind: str, code: str) -> bytes:
    error_type = _ANTHROPIC_TYPES.get(kind, "api_error")
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return jsoncodec.dumps(body)


def neutral_error(message: str, kind: str, code: str) -> bytes:
    """An error both APIs' SDKs read, for refusals made before a request names its API
    (at the connection: malformed HTTP, headers too slow or too large): Anthropic's
    envelope, with OpenAI's `message`, `type`, `param` and `code` inside it."""
    error_type = _ANTHROPIC_TYPES.get(kind, "api_error")
    error = {"type": error_type, "message": message, "param": None, "code": code}
    return jsoncodec.dumps({"type": "error", "error": error})


def _collector(parts: list[str]) -> Text:
    def collect(text: str) -> str:
        parts.append(text)
        return text

    return collect


@dataclass(frozen=True)
class Dialect:
    route: str
    api: str
    upstream_path: str
    streams: bool
    prompt_keys: tuple[str, ...]

    def error(self, message: str, kind: str, code: str) -> bytes:
        return (anthropic_error if self.api == "anthropic" else openai_error)(message, kind, code)

    def refusal(self, status: int, message: str, code: str) -> bytes:
        """The body of a refusal: its type read from the status (`kind_of`)."""
        return self.error(message, kind_of(status, code), code)

    def error_of(self, exc: CordonError, message: str | None = None) -> bytes:
        """The body answering `exc`, with the code its class declares."""
        return self.refusal(exc.status, message or str(exc), exc.code)

    def validate(self, payload: dict[str, Any]) -> str | None:
        if not isinstance(payload.get("model"), str) or not payload["model"]:
            return "'model' is required and must be a string"
        if len(payload["model"]) > MAX_MODEL_CHARS:
            # The model name is kept whole in the record (content is kept as a digest when
            # too large, the model is not): bounded here, before any provider is asked.
            return f"'model' must be at most {MAX_MODEL_CHARS} characters"
        present = [k for k in self.prompt_keys if payload.get(k) not in (None, "", [])]
        if not present:
            return f"'{self.prompt_keys[0]}' is required and must not be empty"
        if self.route == "messages" and not isinstance(payload.get("max_tokens"), int):
            return "'max_tokens' is required and must be an integer"
        if "stream" in payload and not isinstance(payload["stream"], bool):
            return "'stream' must be a boolean"
        if payload.get("stream") and not self.streams:
            return f"'stream' is not supported for {self.route}"
        return None

    def map_prompt(self, payload: dict[str, Any], fn: Text) -> dict[str, Any]:
        """A copy of `payload` with `fn` applied to every prompt text."""
        out = dict(payload)
        if self.route in ("chat", "messages"):
            out["messages"] = _map_messages(payload.get("messages"), fn)
            if self.route == "messages" and "system" in payload:
                out["system"] = _map_content(payload["system"], fn)
        elif self.route == "responses":
            given = payload.get("input")
            out["input"] = fn(given) if isinstance(given, str) else _map_messages(given, fn)
            if isinstance(payload.get("instructions"), str):
                out["instructions"] = fn(payload["instructions"])
        elif self.route == "embeddings":
            given = payload.get("input")
            if isinstance(given, str):
                out["input"] = fn(given)
            elif isinstance(given, list):
                out["input"] = [fn(x) if isinstance(x, str) else x for x in given]
        return out

    def map_answer(self, answer: dict[str, Any], fn: Text) -> None:
        """Apply `fn` in place to every text of a (non-streamed) answer."""
        if self.route == "chat":
            for choice in answer.get("choices") or []:
                if isinstance(choice, dict) and isinstance(choice.get("message"), dict):
                    choice["message"] = _map_part(choice["message"], fn)
        elif self.route == "responses":
            if isinstance(answer.get("output"), list):
                answer["output"] = [_map_part(item, fn) for item in answer["output"]]
        elif self.route == "messages":
            answer["content"] = _map_content(answer.get("content"), fn)

    def answer_text(self, answer: dict[str, Any]) -> str:
        parts: list[str] = []
        self.map_answer(answer, _collector(parts))
        return "".join(parts)

    def prompt_text(self, payload: dict[str, Any]) -> str:
        parts: list[str] = []
        self.map_prompt(payload, _collector(parts))
        return "\n".join(parts)

    def usage(self, answer: dict[str, Any]) -> tuple[int | None, int | None]:
        usage = answer.get("usage")
        if not isinstance(usage, dict):
            return None, None
        if self.route in ("responses", "messages"):
            return usage.get("input_tokens"), usage.get("output_tokens")
        return usage.get("prompt_tokens"), usage.get("completion_tokens")

    def finish_reasons(self, answer: dict[str, Any]) -> list[str]:
        """Why the model stopped, as the API says it (for the call's trace)."""
        if self.route == "chat":
            choices = answer.get("choices")
            reasons = [c.get("finish_reason") for c in choices or [] if isinstance(c, dict)]
            return [r for r in reasons if isinstance(r, str)]
        reason = answer.get("stop_reason" if self.route == "messages" else "status")
        return [reason] if isinstance(reason, str) else []


CHAT = Dialect("chat", "openai", "/chat/completions", True, ("messages",))
EMBEDDINGS = Dialect("embeddings", "openai", "/embeddings", False, ("input",))
RESPONSES = Dialect("responses", "openai", "/responses", True, ("input",))
MESSAGES = Dialect("messages", "anthropic", "/messages", True, ("messages",))


def for_path(path: str) -> Dialect:
    """The dialect whose error shape a caller of `path` reads (OpenAI's unless Anthropic's)."""
    return MESSAGES if path.startswith("/v1/messages") else CHAT
