"""The JSON Canonicalization Scheme (RFC 8785): one byte string per JSON value, so a
digest of it means the same everywhere.

Cordon pins what it approves by such digests (next: an MCP tool's definition, by the
SHA-256 of its canonical form without `_meta`), and anyone can recompute them with any
RFC 8785 implementation. Objects are ordered by their keys' UTF-16 code units, numbers
are written as ECMAScript writes an IEEE double, strings escape only what JSON must.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from cordon.errors import UnreadableJSONError

__all__ = ["canonicalize", "sha256_digest"]

_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n"}
_SHORT_ESCAPES |= {"\r": "\\r", "\t": "\\t"}


def canonicalize(value: Any) -> bytes:
    """`value` (what a JSON reader returns) in its RFC 8785 form, UTF-8.
    `UnreadableJSONError` for what JSON cannot hold (NaN, infinity, a lone surrogate,
    a key that is not a string)."""
    return "".join(_parts(value)).encode()


def sha256_digest(value: Any) -> str:
    """`sha256:<hex>` of `value`'s canonical form."""
    return "sha256:" + hashlib.sha256(canonicalize(value)).hexdigest()


def _parts(value: Any) -> list[str]:
    out: list[str] = []
    _write(value, out)
    return out


def _write(value: Any, out: list[str]) -> None:
    if value is None or isinstance(value, bool):
        out.append({None: "null", True: "true", False: "false"}[value])
    elif isinstance(value, int | float):
        out.append(_number(float(value)))
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, Mapping):
        _object(value, out)
    elif isinstance(value, Sequence):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise UnreadableJSONError(f"not a JSON value: {type(value).__name__}")


def _object(value: Mapping[Any, Any], out: list[str]) -> None:
    if not all(isinstance(key, str) for key in value):
        raise UnreadableJSONError("an object key is not a string")
    out.append("{")
    for i, key in enumerate(sorted(value, key=_utf16_units)):
        if i:
            out.append(",")
        out.append(_string(key))
        out.append(":")
        _write(value[key], out)
    out.append("}")


def _utf16_units(key: str) -> bytes:
    """Big-endian UTF-16 sorts as its code units do (RFC 8785, 3.2.3)."""
    try:
        return key.encode("utf-16-be")
    except UnicodeEncodeError as exc:
        raise UnreadableJSONError("a key holds a lone surrogate") from exc


def _string(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnreadableJSONError("a string holds a lone surrogate") from exc
    escaped = []
    for char in text:
        if char in _SHORT_ESCAPES:
            escaped.append(_SHORT_ESCAPES[char])
        elif char < " ":
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def _number(value: float) -> str:
    """ECMAScript's Number.prototype.toString of an IEEE double (RFC 8785, 3.2.2.3)."""
    if math.isnan(value) or math.isinf(value):
        raise UnreadableJSONError("NaN and infinity are not JSON numbers")
    if value == 0:
        return "0"  # -0 too
    sign = "-" if value < 0 else ""
    digits, point = _shortest(abs(value))
    k = len(digits)
    if k <= point <= 21:
        return sign + digits + "0" * (point - k)
    if 0 < point <= 21:
        return sign + digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return sign + "0." + "0" * -point + digits
    exponent = point - 1
    mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{sign}{mantissa}e{'+' if exponent > 0 else '-'}{abs(exponent)}"


def _shortest(value: float) -> tuple[str, int]:
    """The fewest significant digits that read back as `value` (Python's repr gives
    them), and where the decimal point falls: value = 0.<digits> x 10^point."""
    text = repr(value)
    mantissa, _, exp = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    leading_zeros = len(whole + fraction) - len(digits)
    point = len(whole) - leading_zeros + (int(exp) if exp else 0)
    return digits.rstrip("0") or "0", point
