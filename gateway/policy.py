"""Evaluate the active pack's rules against a request and its answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway import redaction
from gateway.packs import Pack


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


def _redact_content(content: Any, patterns: tuple[str, ...], counts: dict[str, int]) -> Any:
    if isinstance(content, str):
        return redaction.redact(content, patterns, counts)
    if isinstance(content, list):
        return [
            {**part, "text": redaction.redact(part["text"], patterns, counts)}
            if isinstance(part, dict) and isinstance(part.get("text"), str)
            else part
            for part in content
        ]
    return content


def apply_input(pack: Pack, messages: list[Any], decision: Decision) -> list[Any]:
    """Run input rules over chat messages; return the messages to send upstream."""
    for rule in pack.rules_of("input_filter"):
        counts: dict[str, int] = {}
        redacted = [
            {**m, "content": _redact_content(m.get("content"), rule.patterns, counts)}
            if isinstance(m, dict)
            else m
            for m in messages
        ]
        if not counts:
            continue
        if rule.action == "block":
            decision.fired(rule.id, "block")
            decision.blocked_by = rule.id
            return messages
        messages = redacted
        _merge(decision.redactions, counts)
        decision.fired(rule.id, "redact")
    return messages


def apply_output(pack: Pack, text: str, decision: Decision) -> str:
    """Run output rules over the text of one answer."""
    for rule in pack.rules_of("output_filter"):
        counts: dict[str, int] = {}
        text = redaction.redact(text, rule.patterns, counts)
        if counts:
            _merge(decision.redactions, counts)
            decision.fired(rule.id, "redact")
    return text


def _merge(into: dict[str, int], counts: dict[str, int]) -> None:
    for name, count in counts.items():
        into[name] = into.get(name, 0) + count
