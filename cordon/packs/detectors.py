"""Detectors for personal data and secrets, and their typed-placeholder redaction.

Each detector is a regular expression, optionally confirmed by a check (Luhn for
card numbers, ISO 13616 mod-97 for IBANs, octet ranges for IPv4), so a number that
merely looks like one is left alone. Redaction replaces a value with `[TYPE]` and
counts it per type; counts go into records, values never do.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from cordon.errors import PackError

_DIGIT = re.compile(r"\d")


def has_digit(text: str) -> bool:
    return _DIGIT.search(text) is not None


def contains(*needles: str) -> Callable[[str], bool]:
    """A hint that holds when any needle is in the text (a C-speed substring search)."""
    return lambda text: any(needle in text for needle in needles)


def both(first: Callable[[str], bool], second: Callable[[str], bool]) -> Callable[[str], bool]:
    """A hint that holds when both do (the cheaper first)."""
    return lambda text: first(text) and second(text)


@dataclass(frozen=True)
class Detector:
    name: str
    pattern: re.Pattern[str]
    check: Callable[[str], bool] | None = None
    # What finding this kind of value says about the data, when no rule says otherwise.
    sensitivity: str = "confidential"
    # A cheap test that must hold for the pattern to have any chance: most text skips
    # most detectors without running a regular expression over it.
    hint: Callable[[str], bool] | None = None
    # For streams: every character a match can hold, and its longest possible length
    # (None: unbounded). A match still being written lies in the text's trailing run of
    # such characters, so what precedes that run can be released. Without an alphabet
    # (custom patterns), a stream holds back a fixed window instead.
    alphabet: frozenset[str] | None = None
    max_span: int | None = None

    def may_match(self, text: str) -> bool:
        return self.hint is None or self.hint(text)

    def hold_start(self, text: str, fallback: int, longest: int) -> int:
        """Where a match that more text could still complete may begin: the start of the
        trailing run of alphabet characters, no further back than the longest match
        (`longest` for unbounded ones); `fallback` chars back without an alphabet."""
        if self.alphabet is None:
            return max(0, len(text) - fallback)
        limit = max(0, len(text) - (self.max_span or longest))
        start = len(text)
        while start > limit and text[start - 1] in self.alphabet:
            start -= 1
        return start

    @property
    def placeholder(self) -> str:
        return f"[{self.name.upper()}]"

    def finds(self, text: str) -> bool:
        """Whether it finds anything in `text` (`finditer`, without making one)."""
        if not self.may_match(text):
            return False
        if self.check is None:
            return self.pattern.search(text) is not None
        return any(self.check(match.group()) for match in self.pattern.finditer(text))

    def finditer(self, text: str) -> Iterable[re.Match[str]]:
        if not self.may_match(text):
            return
        for match in self.pattern.finditer(text):
            if self.check is None or self.check(match.group()):
                yield match


def luhn(value: str) -> bool:
    digits = [int(c) for c in value if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, digit in enumerate(reversed(digits)):
        if i % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def iban_valid(value: str) -> bool:
    compact = value.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    try:
        return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1
    except ValueError:
        return False


def ipv4_valid(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def ipv6_valid(value: str) -> bool:
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return ":" in value and value.count(":") >= 2


_H = r"[0-9A-Fa-f]{1,4}"
LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
DIGITS = "0123456789"


def _chars(*groups: str) -> frozenset[str]:
    return frozenset("".join(groups))


# Order matters: narrower shapes first, so an SSN is not taken for a phone number and
# a key's digits are not taken for a card.
BUILTIN: tuple[Detector, ...] = (
    Detector(
        "private_key",
        re.compile(
            r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z]+ )*PRIVATE KEY-----"
        ),
        sensitivity="restricted",
        hint=contains("PRIVATE KEY-----"),
    ),
    Detector(
        "jwt",
        re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}"),
        sensitivity="restricted",
        hint=contains("eyJ"),
        alphabet=_chars(LETTERS, DIGITS, "_.-"),
    ),
    Detector(
        "api_key",
        re.compile(
            r"\b(?:sk-(?:proj-|ant-(?:api\d\d-)?)?[A-Za-z0-9_-]{20,}"  # OpenAI, Anthropic
            r"|AKIA[0-9A-Z]{16}"  # AWS access key id
            r"|AIza[0-9A-Za-z_-]{35}"  # Google API key
            r"|gh[pousr]_[A-Za-z0-9]{36,}"  # GitHub tokens
            r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack tokens
            r"|(?:sk|rk)_live_[A-Za-z0-9]{20,})"  # Stripe secret keys
        ),
        sensitivity="restricted",
        hint=contains("sk-", "AKIA", "AIza", "gh", "xox", "_live_"),
        alphabet=_chars(LETTERS, DIGITS, "_-"),
    ),
    Detector(
        # The lookbehind lets a match begin only where a run of local-part characters
        # begins: without it a long run and no valid domain after it costs quadratic time.
        "email",
        re.compile(
            r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
        ),
        hint=contains("@"),
        alphabet=_chars(LETTERS, DIGITS, "._%+-@"),
    ),
    Detector(
        "iban",
        re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"),
        iban_valid,
        hint=has_digit,
        alphabet=_chars(LETTERS.upper(), DIGITS, " "),
        max_span=42,
    ),
    # Patterns below start with a digit so the regex engine can skip other characters fast.
    Detector(
        "credit_card",
        re.compile(r"\d(?<![\d-]\d)(?:[ -]?\d){12,18}(?![\d-])"),
        luhn,
        hint=has_digit,
        alphabet=_chars(DIGITS, " -"),
        max_span=37,
    ),
    Detector(
        "ssn",
        re.compile(r"\d(?<!\d\d)\d{2}(?<!000)(?<!666)(?<!9\d\d)-(?!00)\d{2}-(?!0000)\d{4}(?!\d)"),
        hint=both(contains("-"), has_digit),
        alphabet=_chars(DIGITS, "-"),
        max_span=11,
    ),
    Detector(
        "ipv6",
        re.compile(
            rf"(?<![\w:])(?:(?:{_H}:){{7}}{_H}|(?:{_H}:){{1,7}}:|(?:{_H}:){{1,6}}:{_H}"
            rf"|(?:{_H}:){{1,5}}(?::{_H}){{1,2}}|(?:{_H}:){{1,4}}(?::{_H}){{1,3}}"
            rf"|(?:{_H}:){{1,3}}(?::{_H}){{1,4}}|(?:{_H}:){{1,2}}(?::{_H}){{1,5}}"
            rf"|{_H}:(?::{_H}){{1,6}}|::(?:{_H}:){{0,5}}{_H})(?![\w:])"
        ),
        ipv6_valid,
        sensitivity="internal",
        hint=contains(":"),
        alphabet=_chars(DIGITS, "abcdefABCDEF:"),
        max_span=39,
    ),
    Detector(
        "ipv4",
        re.compile(r"\d(?<![\w.]\d)\d{0,2}\.(?:\d{1,3}\.){2}\d{1,3}(?![\w.]|\.\d)"),
        ipv4_valid,
        sensitivity="internal",
        hint=both(contains("."), has_digit),
        alphabet=_chars(DIGITS, "."),
        max_span=15,
    ),
    Detector(
        "phone",
        re.compile(
            # Each branch starts with a literal '+', '(' or a digit, so the engine can
            # skip to candidates; the look-behinds come right after that first character.
            r"(?:\+(?<![\w.+]\+)\d{1,3}[ .-]?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])"  # +44 20 ...
            r"|\((?<![\w.+]\()\d{2,4}\)[ .-]?"  # (555) ...
            r"|\d(?<![\w.+]\d)(?<!\d[ .-]\d)\d{1,3}[ .-])"  # 555-... / 020 ...
            r"\d{3,4}[ .-]?\d{3,4}(?![\w.])(?![ .-]\d)"  # not part of a longer digit run
            r"|\+(?<![\w+]\+)[1-9]\d{7,14}(?!\w)"  # E.164 written solid
        ),
        hint=has_digit,
        alphabet=_chars(DIGITS, " .()+-"),
        max_span=25,
    ),
)
BUILTIN_NAMES = tuple(d.name for d in BUILTIN)


def compile_custom(patterns: Mapping[str, str]) -> tuple[Detector, ...]:
    """User-defined detectors from a pack: name -> regular expression."""
    custom = []
    for name, expression in patterns.items():
        if name in BUILTIN_NAMES:
            raise PackError(f"detector {name!r} would replace a built-in detector")
        try:
            custom.append(Detector(name, re.compile(expression)))
        except re.error as exc:
            raise PackError(f"detector {name!r}: not a valid regular expression: {exc}") from exc
    return tuple(custom)


class DetectorSet:
    """The detectors a pack can name: built-ins plus its own, in matching order."""

    def __init__(self, custom: tuple[Detector, ...] = ()) -> None:
        self.all = BUILTIN + custom
        self.by_name = {d.name: d for d in self.all}
        # `select` of the tuples a pack names on every call (its rules' patterns)
        self._selected: dict[tuple[str, ...], tuple[Detector, ...]] = {}

    def unknown(self, names: Iterable[str]) -> list[str]:
        return [name for name in names if name not in self.by_name]

    def select(self, names: Iterable[str]) -> tuple[Detector, ...]:
        if isinstance(names, tuple):
            found = self._selected.get(names)
            if found is None:
                if len(self._selected) > 256:  # the tuples a pack's rules name: a few
                    self._selected.clear()
                found = self._selected[names] = self._select(names)
            return found
        return self._select(names)

    def _select(self, names: Iterable[str]) -> tuple[Detector, ...]:
        wanted = set(names)
        return tuple(d for d in self.all if d.name in wanted)

    def redact(self, text: str, names: Iterable[str], counts: dict[str, int]) -> str:
        """Replace each detected value with `[TYPE]`, adding to `counts` per type."""
        for detector in self.select(names):
            text = _replace(detector, text, counts)
        return text

    def found(self, text: str, names: Iterable[str] | None = None) -> list[str]:
        """Names of the detectors that find something in `text`."""
        pool = self.all if names is None else self.select(names)
        return [detector.name for detector in pool if detector.finds(text)]

    def hold_start(self, text: str, names: Iterable[str], fallback: int, longest: int) -> int:
        """The earliest position from which a match of any named detector could still be
        completed by text yet to come (`Detector.hold_start`)."""
        starts = [d.hold_start(text, fallback, longest) for d in self.select(names)]
        return min(starts, default=len(text))

    def safe_cut(
        self, text: str, cut: int, names: Iterable[str], extra: Iterable[re.Pattern[str]] = ()
    ) -> int:
        """Move `cut` back to the start of any match that straddles it, until none does."""
        patterns = [d.pattern for d in self.select(names)] + list(extra)
        moved = True
        while moved and cut > 0:
            moved = False
            for pattern in patterns:
                for match in pattern.finditer(text):
                    if match.start() < cut < match.end():
                        cut, moved = match.start(), True
        return cut


def _replace(detector: Detector, text: str, counts: dict[str, int]) -> str:
    found = 0

    def substitute(match: re.Match[str]) -> str:
        nonlocal found
        if detector.check is not None and not detector.check(match.group()):
            return match.group()
        found += 1
        return detector.placeholder

    text = detector.pattern.sub(substitute, text)
    if found:
        counts[detector.name] = counts.get(detector.name, 0) + found
    return text


DEFAULT_SET = DetectorSet()
