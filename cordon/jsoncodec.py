"""JSON on the hot path: orjson, with the standard library as the fallback.

orjson is several times faster than `json` for the bodies the gateway parses and
re-encodes on every call. It refuses integers beyond 64 bits, which JSON allows,
so anything it refuses goes through `json` and the caller sees no difference.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)  # same verdict, but big integers parse and errors read well


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value).encode()
