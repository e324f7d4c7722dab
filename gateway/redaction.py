"""Detectors for personal data and their typed-placeholder redaction.

Counts of what was redacted go into records; the values never do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Order matters: the narrower shapes go first so an SSN is not taken for a phone.
DETECTORS: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    "ssn": re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)"),
    "phone": re.compile(
        r"(?<![\w.+])(?:\+\d{1,3}[ .-]?)?"  # country code
        r"(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])"  # area code, bracketed or separated
        r"\d{3,4}[ .-]?\d{3,4}(?![\w.])"
    ),
}


def unknown_patterns(patterns: Iterable[str]) -> list[str]:
    return [name for name in patterns if name not in DETECTORS]


def redact(text: str, patterns: Iterable[str], counts: dict[str, int]) -> str:
    """Replace each detected value with `[TYPE]`, adding to `counts` per type."""
    for name in DETECTORS:
        if name not in patterns:
            continue
        text, found = DETECTORS[name].subn(f"[{name.upper()}]", text)
        if found:
            counts[name] = counts.get(name, 0) + found
    return text


def safe_cut(text: str, cut: int, patterns: Iterable[str]) -> int:
    """Move `cut` back to the start of any match that straddles it, until none does."""
    active = [DETECTORS[name] for name in DETECTORS if name in patterns]
    moved = True
    while moved and cut > 0:
        moved = False
        for detector in active:
            for match in detector.finditer(text):
                if match.start() < cut < match.end():
                    cut, moved = match.start(), True
    return cut
