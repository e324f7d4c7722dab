"""JSON on the hot path, read one strict way everywhere.

Every JSON document Cordon reads (a caller's body, a provider's answer or stream
event, a tool call's arguments) goes through `loads`, and what it accepts the rest
of the pipeline (policy, signing, the record codec, summaries) can handle. There is
no second reader with other rules: orjson alone decides, and refuses invalid UTF-8,
lone surrogates (escaped or as CESU bytes), NaN and infinities, and numbers beyond a
double (integers beyond 64 bits but within a double read as doubles, as JavaScript
and most providers read them). On top of orjson, `loads` refuses

- a repeated key in one object: orjson keeps the last, a provider may keep the first,
  so a rule could pass one value while the provider acts on another;
- nesting deeper than `max_depth`.

Everything it refuses is an `UnreadableJSONError` (also a `ValueError`).
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from cordon.errors import UnreadableJSONError

__all__ = ["DEFAULT_MAX_DEPTH", "dumps", "loads"]

DEFAULT_MAX_DEPTH = 1024  # orjson's own limit; callers that know their shape ask for less

# An escape sequence inside a JSON string. With every escape gone, each remaining `"`
# delimits a string: the text splits into outside, string, outside, string, ...
_ESCAPE = re.compile(rb"\\.", re.DOTALL)


def loads(data: bytes | str, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UnreadableJSONError(str(exc)) from exc
    if isinstance(value, dict | list):
        keys = _count_keys(value, max_depth)
        if keys is None:
            raise UnreadableJSONError(f"nested deeper than {max_depth} levels")
        if keys != _keys_in_text(data, keys):
            raise UnreadableJSONError("an object repeats a key")
    return value


def _count_keys(value: dict[str, Any] | list[Any], max_depth: int) -> int | None:
    """How many keys the parsed document's objects hold; None if it nests too deep.
    Level by level, so no depth can exhaust the stack."""
    keys = 0
    level: list[Any] = [value]
    for _ in range(max_depth):
        deeper: list[Any] = []
        for node in level:
            if type(node) is dict:
                keys += len(node)
                node = node.values()
            for child in node:
                if type(child) is dict or type(child) is list:
                    deeper.append(child)
        if not deeper:
            return keys
        level = deeper
    return None


def _keys_in_text(data: bytes | str, parsed_keys: int) -> int:
    """How many keys the text writes. Every `:` outside a string separates a key from its
    value, so when the text holds no more colons than the parsed objects hold keys, no
    key was dropped as a repeat (the common case, decided without a scan). Otherwise the
    colons outside strings are counted (on text orjson accepted, so well-formed)."""
    raw = data.encode() if isinstance(data, str) else data
    if raw.count(b":") <= parsed_keys:
        return parsed_keys
    if b"\\" in raw:
        raw = _ESCAPE.sub(b"", raw)
    return b"".join(raw.split(b'"')[::2]).count(b":")


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value).encode()
