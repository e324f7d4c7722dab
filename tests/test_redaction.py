"""Detectors and typed-placeholder redaction."""

from __future__ import annotations

import pytest

from gateway.redaction import redact

ALL = ("email", "phone", "ssn")


@pytest.mark.parametrize(
    ("text", "expected", "counts"),
    [
        ("mail alice@example.com now", "mail [EMAIL] now", {"email": 1}),
        ("a.b+tag@sub.example.co.uk", "[EMAIL]", {"email": 1}),
        ("ssn 123-45-6789.", "ssn [SSN].", {"ssn": 1}),
        ("call +44 20 7946 0958 today", "call [PHONE] today", {"phone": 1}),
        ("call (555) 123-4567", "call [PHONE]", {"phone": 1}),
        ("or 555-123-4567", "or [PHONE]", {"phone": 1}),
        ("two: x@y.io and z@w.io", "two: [EMAIL] and [EMAIL]", {"email": 2}),
    ],
)
def test_positives_are_replaced_and_counted(
    text: str, expected: str, counts: dict[str, int]
) -> None:
    found: dict[str, int] = {}
    assert redact(text, ALL, found) == expected
    assert found == counts


@pytest.mark.parametrize(
    "text",
    [
        "version 1.2.3 released",
        "at 12:30 on 2026-11-25",
        "user@localhost is not an address",
        "order 1234567 shipped",
        "1234-56-789 is not an SSN",
    ],
)
def test_near_misses_are_left_alone(text: str) -> None:
    found: dict[str, int] = {}
    assert redact(text, ALL, found) == text
    assert found == {}


def test_only_the_requested_patterns_run() -> None:
    found: dict[str, int] = {}
    assert redact("bob@example.com 123-45-6789", ("ssn",), found) == "bob@example.com [SSN]"
    assert found == {"ssn": 1}
