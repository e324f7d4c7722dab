"""RFC 8785 canonical JSON: the RFC's own examples, byte for byte."""

from __future__ import annotations

import struct

import pytest

from cordon import jsoncodec
from cordon.errors import UnreadableJSONError
from cordon.jcs import canonicalize, sha256_digest

pytestmark = pytest.mark.fast

# RFC 8785, Appendix B: IEEE 754 doubles (as hex) and their canonical text.
NUMBERS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "text"), NUMBERS, ids=[n[1] for n in NUMBERS])
def test_numbers_are_written_as_ecmascript_writes_them(bits: str, text: str) -> None:
    (value,) = struct.unpack(">d", bytes.fromhex(bits))
    assert canonicalize(value) == text.encode()


def test_the_rfcs_worked_example() -> None:
    """RFC 8785, 3.2.2: whitespace, number forms, escapes and key order."""
    source = (
        b'{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        b' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        b' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    ).encode()
    assert canonicalize(jsoncodec.loads(source)) == expected


def test_keys_are_ordered_by_utf16_code_units() -> None:
    """RFC 8785, 3.2.3: an emoji (a surrogate pair) sorts before U+FB33."""
    keys = ["\u20ac", "\r", "\ufb33", "1", "\U0001f600", "\u0080", "\u00f6"]
    text = canonicalize(dict.fromkeys(keys, 0)).decode()
    order = ["\\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    positions = [text.index(f'"{key}"') for key in order]
    assert positions == sorted(positions)


def test_integers_are_numbers_and_digests_are_stable() -> None:
    assert canonicalize({"b": 1, "a": [1.0, 2, -0.0]}) == b'{"a":[1,2,0],"b":1}'
    tool = {"name": "echo", "inputSchema": {"type": "object"}}
    assert sha256_digest(tool) == sha256_digest({"inputSchema": {"type": "object"}, "name": "echo"})
    assert sha256_digest(tool).startswith("sha256:") and len(sha256_digest(tool)) == 71


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "\ud800", {1: "x"}, {"\udc00": 1}])
def test_what_json_cannot_hold_is_refused(bad: object) -> None:
    with pytest.raises(UnreadableJSONError):
        canonicalize(bad)
