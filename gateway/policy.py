"""Evaluate the active pack's rules against a call's prompt and its answer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from gateway import redaction
from gateway.dialects import Dialect
from gateway.packs import Pack

# Characters of streamed output held back so a value split across chunks is still
# seen whole. It bounds both the longest value redaction is sure to catch and the
# text a caller waits for; the stream's end flushes it.
HOLD_BACK_CHARS = 128


@dataclass
class Decision:
    """What the pack decided for one call; it becomes the record's outcome fields."""

    outcome: str = "allow"
    rules: list[str] = field(default_factory=list)
    redactions: dict[str, int] = field(default_factory=dict)
    blocked_by: str | None = None

    def fired(self, rule_id: str, outcome: str) -> None:
        if rule_id not in self.rules:
            self.rules.append(rule_id)
        if outcome == "block" or self.outcome == "allow":
            self.outcome = outcome

    def count(self, counts: dict[str, int]) -> None:
        for name, found in counts.items():
            self.redactions[name] = self.redactions.get(name, 0) + found


def apply_input(
    pack: Pack, dialect: Dialect, payload: dict[str, Any], decision: Decision
) -> dict[str, Any]:
    """Run input rules; return the payload to send upstream (or mark the call blocked)."""
    for rule in pack.rules_of("input_filter"):
        counts: dict[str, int] = {}
        redacted = dialect.map_prompt(payload, partial(_redact_into, counts, rule.patterns))
        if not counts:
            continue
        if rule.action == "block":
            decision.fired(rule.id, "block")
            decision.blocked_by = rule.id
            return payload
        payload = redacted
        decision.count(counts)
        decision.fired(rule.id, "redact")
    return payload


def _redact_into(counts: dict[str, int], patterns: tuple[str, ...], text: str) -> str:
    return redaction.redact(text, patterns, counts)


def output_filter(pack: Pack, decision: Decision | None) -> Callable[[str], str] | None:
    """A text transform applying every output rule, or None when the pack has none.

    With a `decision`, what it redacts is counted there; without one it only
    redacts (for a stream's summary events, whose text was already counted).
    """
    rules = pack.rules_of("output_filter")
    if not rules:
        return None

    def apply(text: str) -> str:
        for rule in rules:
            counts: dict[str, int] = {}
            text = redaction.redact(text, rule.patterns, counts)
            if counts and decision is not None:
                decision.count(counts)
                decision.fired(rule.id, "redact")
        return text

    return apply


class StreamFilter:
    """Output rules over a stream of text deltas, with a bounded hold-back window.

    `feed()` returns the text that may be released now; `flush()` the rest. Text
    is released only once it lies `HOLD_BACK_CHARS` behind the newest character and
    no detector match straddles the release point.
    """

    def __init__(self, apply: Callable[[str], str], patterns: tuple[str, ...]) -> None:
        self._apply = apply
        self._patterns = patterns
        self._pending = ""
        self.scanned_chars = 0

    def feed(self, delta: str) -> str:
        self._pending += delta
        self.scanned_chars += len(delta)
        cut = len(self._pending) - HOLD_BACK_CHARS
        if cut <= 0:
            return ""
        cut = redaction.safe_cut(self._pending, cut, self._patterns)
        released, self._pending = self._pending[:cut], self._pending[cut:]
        return self._apply(released) if released else ""

    def flush(self) -> str:
        released, self._pending = self._pending, ""
        return self._apply(released) if released else ""


def output_patterns(pack: Pack) -> tuple[str, ...]:
    return tuple({p for rule in pack.rules_of("output_filter") for p in rule.patterns})
