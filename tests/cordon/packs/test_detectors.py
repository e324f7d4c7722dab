"""Detectors, one table per type: what must be found, and near misses that must not."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cordon.packs.detectors import BUILTIN, DEFAULT_SET, iban_valid, luhn

POSITIVES = {
    "email": ["alice@example.com", "a.b+tag@sub.example.co.uk", "x_y@dept.uni.edu"],
    "phone": [
        "+44 20 7946 0958",
        "+14155552671",
        "(555) 123-4567",
        "555-123-4567",
        "020 7946 0958",
        "+49 30 901820",
    ],
    "ssn": ["123-45-6789", "078-05-1120"],
    "credit_card": [
        "4111 1111 1111 1111",
        "5500-0000-0000-0004",
        "378282246310005",
        "6011111111111117",
    ],
    "iban": [
        "GB82 WEST 1234 5698 7654 32",
        "DE89370400440532013000",
        "FR14 2004 1010 0505 0001 3M02 606",
    ],
    "ipv4": ["192.168.1.20", "10.0.0.1", "8.8.8.8"],
    "ipv6": ["2001:db8::8a2e:370:7334", "fe80::1", "2001:0db8:0000:0000:0000:ff00:0042:8329"],
    "api_key": [
        "sk-proj-abcdefghijklmnopqrstuvwxyz123456",
        "sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "xoxb-1234567890-abcdefghij",
    ],
    "jwt": ["eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVzLWhlcmU"],
    "private_key": [
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----"
    ],
}

NEAR_MISSES = {
    "version numbers": "upgrade to version 1.2.3 or 2.10.0-rc1",
    "dates and times": "on 2026-11-25 at 12:30:45",
    "an order number": "order 1234567 shipped",
    "an invalid Luhn card": "card 4111 1111 1111 1112",
    "an invalid IBAN checksum": "IBAN GB82 WEST 1234 5698 7654 33",
    "a long reference number": "ref 1234 5678 9012 3456 7890",
    "an out-of-range IPv4": "host 999.10.1.1 is not an address",
    "a clock time with seconds": "at 10:15:30 sharp",
    "a local-only address": "user@localhost is not an email",
    "an SSN-shaped non-SSN": "000-12-3456 and 123-00-4567 are not issued",
    "a short sk- word": "the sk-ills needed",
    "a plain ratio": "a 3:2 split",
}


@pytest.mark.parametrize(
    ("kind", "value"), [(k, v) for k, values in POSITIVES.items() for v in values]
)
def test_each_value_is_found_and_redacted_as_its_type(kind: str, value: str) -> None:
    counts: dict[str, int] = {}
    redacted = DEFAULT_SET.redact(f"before {value} after", DEFAULT_SET.by_name, counts)
    assert redacted == f"before [{kind.upper()}] after"
    assert counts == {kind: 1}


@pytest.mark.parametrize("text", NEAR_MISSES.values(), ids=NEAR_MISSES.keys())
def test_near_misses_are_left_alone(text: str) -> None:
    counts: dict[str, int] = {}
    assert DEFAULT_SET.redact(text, DEFAULT_SET.by_name, counts) == text
    assert counts == {}


def test_only_the_requested_patterns_run() -> None:
    counts: dict[str, int] = {}
    text = "bob@example.com 123-45-6789"
    assert DEFAULT_SET.redact(text, ["ssn"], counts) == "bob@example.com [SSN]"
    assert counts == {"ssn": 1}


def test_checksums() -> None:
    assert luhn("4111111111111111") and not luhn("4111111111111112")
    assert iban_valid("GB82WEST12345698765432") and not iban_valid("GB82WEST12345698765433")


def test_a_value_split_by_a_cut_is_held_whole() -> None:
    text = "write to alice@example.com now"
    cut = text.index("example")
    assert DEFAULT_SET.safe_cut(text, cut, ["email"]) == text.index("alice")


@pytest.mark.parametrize(
    "hostile",
    ["p" * 200_000, "p" * 200_000 + "@", "a@" + "b" * 200_000, "1 " * 100_000, "a." * 100_000],
    ids=["letters", "letters-then-at", "at-then-letters", "spaced-digits", "dotted"],
)
def test_detectors_take_linear_time_on_hostile_input(hostile: str) -> None:
    """A long run that almost matches must not cost quadratic time (a 200 KB prompt once
    took an email pattern minutes): each detector here finishes well inside the test's
    timeout, and finds nothing."""
    assert DEFAULT_SET.found(hostile) == []
    assert DEFAULT_SET.redact(hostile, tuple(DEFAULT_SET.by_name), {}) == hostile


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from([*"ab.@-_ 0123456789+/=:", "eyJ", "-----BEGIN ", "@example.com"]),
        max_size=40,
    ).map("".join)
)
def test_whether_a_detector_finds_something_is_whether_it_matches_anything(text: str) -> None:
    """`finds`, the policy engine's yes-or-no (no match object made), says what the
    matches say, for every built-in detector."""
    for detector in BUILTIN:
        assert detector.finds(text) == (next(iter(detector.finditer(text)), None) is not None)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from([*"ab.@-_ 0123456789+/=:", "eyJ", "sk-", "@example.com", "4111 1111"]),
        max_size=40,
    ).map("".join)
)
def test_the_set_names_every_detector_that_finds_something(text: str) -> None:
    assert DEFAULT_SET.found(text) == [d.name for d in BUILTIN if d.finds(text)]
