"""The pack's content rules over what MCP carries: a tool's arguments (input rules,
before the tool sees them), its result, a resource's contents, a prompt's messages
and a server's log lines (output rules, before the agent sees them), and a tool's
definition (both: a description is the server's text and becomes the model's
prompt — instructions hidden in one are a known attack).

What a server sends the agent is seen whole: every string, keys included, at any depth,
but for the base64 of an image or a sound (`data`) and of a binary resource (`blob`),
which a text rule would corrupt; a `blob` that decodes to UTF-8 text is scanned as that
text and re-encoded if a rule changed it. A definition's descriptions and titles are
scanned (its names are what the agent calls it by; the pinned digest covers the rest).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from gateway.policy import map_json

__all__ = ["TEXT_KEYS", "Arguments", "map_definition", "map_released"]

Text = Callable[[str], str]
TEXT_KEYS = frozenset({"description", "title"})  # a definition's words for the model
MEDIA_TYPES = frozenset({"image", "audio"})  # content blocks whose `data` is binary


class Arguments:
    """Where input rules find what an agent sends a tool server: `{"arguments": {...},
    "meta": {...}}` (a call's arguments and its request's `_meta`; a prompt's arguments;
    a resource's URI) is the payload `gateway.policy.apply_input` reads and rewrites."""

    route = "mcp"
    keys = ("arguments", "meta")

    def prompt_text(self, payload: dict[str, Any]) -> str:
        return "\n".join(text for key in self.keys for text in strings(payload.get(key)))

    def map_prompt(self, payload: dict[str, Any], fn: Text) -> dict[str, Any]:
        mapped = {key: map_json(payload[key], fn) for key in self.keys if key in payload}
        return {**payload, **mapped}


def strings(node: Any) -> list[str]:
    """Every string of a JSON value, keys included."""
    found: list[str] = []
    _collect(node, found)
    return found


def _collect(node: Any, found: list[str]) -> None:
    if isinstance(node, str):
        found.append(node)
    elif isinstance(node, dict):
        for key, value in node.items():
            found.append(key)
            _collect(value, found)
    elif isinstance(node, list):
        for value in node:
            _collect(value, found)


def map_released(node: Any, fn: Text) -> Any:
    """`fn` on every string of what a server sends the agent, keys included, but for
    the binary a content block carries: an image's or audio's `data` and a resource's
    `blob` when they are base64 (a `blob` of UTF-8 text is scanned as that text)."""
    if isinstance(node, str):
        return fn(node)
    if isinstance(node, list):
        return [map_released(value, fn) for value in node]
    if not isinstance(node, dict):
        return node
    binary = node.get("type") in MEDIA_TYPES
    mapped: dict[str, Any] = {}
    for key, value in node.items():
        if key == "data" and binary and isinstance(value, str) and _is_base64(value):
            mapped[key] = value  # an image or a sound: no text rule reads it
        elif key == "blob" and isinstance(value, str) and _is_base64(value):
            mapped[key] = _map_base64(value, fn)
        else:
            mapped[fn(key)] = map_released(value, fn)
    return mapped


def _is_base64(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except binascii.Error:
        return False
    return True


def _map_base64(value: str, fn: Text) -> str:
    try:
        text = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return value  # binary: no rule reads it
    mapped = fn(text)
    return value if mapped == text else base64.b64encode(mapped.encode()).decode()


def map_definition(node: Any, fn: Text) -> Any:
    """`fn` on a tool definition's descriptions and titles, at any depth (the input
    schema's too); names and schema keywords are left as the server wrote them."""
    if isinstance(node, list):
        return [map_definition(value, fn) for value in node]
    if not isinstance(node, dict):
        return node
    return {
        key: fn(value) if key in TEXT_KEYS and isinstance(value, str) else map_definition(value, fn)
        for key, value in node.items()
    }
