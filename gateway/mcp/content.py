"""The pack's content rules over what MCP carries: a tool's arguments (input rules,
before the tool sees them), its result, a resource's contents, a prompt's messages
and a server's log lines (output rules, before the agent sees them), and a tool's
definition (both: a description is the server's text and becomes the model's
prompt — instructions hidden in one are a known attack).

Every string is seen, keys included, at any depth. Base64 (`blob`, `data`) is never
scanned as text, which would corrupt it, but a `blob` that decodes to UTF-8 text is
scanned as that text and re-encoded if a rule changed it.
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
BASE64_KEYS = frozenset({"blob", "data"})


class Arguments:
    """Where input rules find a tool's (or a prompt's) arguments: `{"arguments": {...}}`
    is the payload `gateway.policy.apply_input` reads and rewrites."""

    route = "mcp"

    def prompt_text(self, payload: dict[str, Any]) -> str:
        return "\n".join(strings(payload.get("arguments")))

    def map_prompt(self, payload: dict[str, Any], fn: Text) -> dict[str, Any]:
        return {**payload, "arguments": map_json(payload.get("arguments"), fn)}


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
    """`fn` on every string of what a server sends the agent, base64 excepted."""
    if isinstance(node, str):
        return fn(node)
    if isinstance(node, list):
        return [map_released(value, fn) for value in node]
    if not isinstance(node, dict):
        return node
    mapped: dict[str, Any] = {}
    for key, value in node.items():
        if key in BASE64_KEYS and isinstance(value, str):
            mapped[key] = _map_base64(value, fn) if key == "blob" else value
        else:
            mapped[fn(key)] = map_released(value, fn)
    return mapped


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
