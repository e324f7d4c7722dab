"""Evaluate the active pack against a call: who may ask, what the prompt holds, what
the answer may say. Rule types are described in cordon.packs."""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from cordon.errors import OutputBlockedError
from cordon.packs import LEVELS, Pack, Rule
from cordon.packs.document import categories_of, patterns_of
from gateway.identity import Identity

# Streamed output is held back only from where a value that more text could complete
# may begin (each detector's alphabet and longest match, each term's beginning), so a
# value split across chunks is still seen whole and the rest goes out at once.
# HOLD_BACK_CHARS is the fixed window for detectors without an alphabet (a pack's own
# patterns); LONGEST_VALUE bounds an unbounded one (an address, a key, a token): values
# longer than that may be released in part.
HOLD_BACK_CHARS = 128
LONGEST_VALUE = 1024

# What a call came to, as its record and metrics say: the pack's rules decide "allow",
# "redact" or "block"; the call pipeline sets "error" (no answer for the caller) and
# "cancelled" (the caller left mid-stream).
# A tool call (issue 24) can also come to a tool's own error (`isError`), the tool
# server's JSON-RPC error, or no answer from the tool server.
Outcome = Literal[
    "allow",
    "redact",
    "block",
    "error",
    "cancelled",
    "tool_error",
    "protocol_error",
    "upstream_unavailable",
]
# What one fired rule did to the call: `Decision.fired` folds it into the outcome.
Effect = Literal["redact", "block", "flag"]


class PromptShape(Protocol):
    """Where a call's prompt lives in its body: what input rules need of a dialect.

    `gateway.http.dialects.Dialect` is one; declaring only this keeps policy below the
    HTTP layer."""

    @property
    def route(self) -> str: ...

    def prompt_text(self, payload: dict[str, Any]) -> str: ...

    def map_prompt(self, payload: dict[str, Any], fn: Callable[[str], str]) -> dict[str, Any]: ...


@dataclass
class Decision:
    """What the pack decided for one call; it becomes the record's outcome fields."""

    outcome: Outcome = "allow"
    rules: list[str] = field(default_factory=list)
    redactions: dict[str, int] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    blocked_by: str | None = None
    classification: str = "internal"

    def fired(self, rule_id: str, effect: Effect) -> None:
        if rule_id not in self.rules:
            self.rules.append(rule_id)
        if effect == "block":
            self.outcome = "block"
            self.blocked_by = self.blocked_by or rule_id
        elif effect == "redact" and self.outcome == "allow":
            self.outcome = "redact"
        if effect == "flag" and rule_id not in self.flags:
            self.flags.append(rule_id)

    def count(self, counts: dict[str, int]) -> None:
        for name, found in counts.items():
            self.redactions[name] = self.redactions.get(name, 0) + found


def _level(name: str) -> int:
    return LEVELS.index(name)


def _holds(rule: Rule, identity: Identity) -> bool:
    """Roles: any of them; scopes: all of them."""
    roles_ok = not rule.roles or any(r in identity.roles for r in rule.roles)
    scopes_ok = all(s in identity.scopes for s in rule.scopes)
    return roles_ok and scopes_ok


def _covers_call(rule: Rule, model: str, route: str) -> bool:
    models_ok = not rule.models or any(fnmatch.fnmatchcase(model, m) for m in rule.models)
    routes_ok = not rule.routes or route in rule.routes
    return models_ok and routes_ok


def apply_input(
    pack: Pack,
    dialect: PromptShape,
    payload: dict[str, Any],
    identity: Identity,
    decision: Decision,
) -> dict[str, Any]:
    """Identity rules, classification, then input filters; returns the payload to send."""
    model = str(payload.get("model", ""))
    for rule in pack.rules_of("identity"):
        if not _covers_call(rule, model, dialect.route):
            continue
        if _holds(rule, identity) != (rule.action == "allow"):
            decision.fired(rule.id, "block")
            return payload
    text = dialect.prompt_text(payload)
    # Once; every rule below reuses it. The categories are looked for again only after
    # a redaction (its placeholders may spell a term: `[HATE]`); placeholders match no
    # detector, so what a rule redacted is simply gone from `found`.
    found = _Found(set(pack.detectors.found(text)), _input_categories(pack, text))
    if not _classify(pack, found, identity, decision):
        return payload
    for rule in pack.input_rules:
        if not found.hit(rule):
            continue
        if rule.action == "block":
            decision.fired(rule.id, "block")
            return payload
        if rule.action != "redact":
            decision.fired(rule.id, "flag")
            continue
        counts: dict[str, int] = {}
        payload = dialect.map_prompt(payload, _redactor(pack, rule, counts, found.detectors))
        found.detectors -= set(rule.patterns)
        text = dialect.prompt_text(payload)
        found.categories = _input_categories(pack, text)
        if counts:
            decision.count(counts)
            decision.fired(rule.id, "redact")
    return payload


@dataclass
class _Found:
    """What one text holds: the names of the detectors and the categories that find
    something in it."""

    detectors: set[str]
    categories: set[str]

    def hit(self, rule: Rule) -> bool:
        """Does the rule's detector or category find anything?"""
        return any(p in self.detectors for p in rule.patterns) or any(
            c in self.categories for c in rule.categories
        )


def _input_categories(pack: Pack, text: str) -> set[str]:
    return set(pack.lexicon.found(text, pack.input_categories))


def _redactor(
    pack: Pack, rule: Rule, counts: dict[str, int], found: set[str] | None = None
) -> Callable[[str], str]:
    patterns = rule.patterns if found is None else tuple(p for p in rule.patterns if p in found)

    def redact(text: str) -> str:
        text = pack.detectors.redact(text, patterns, counts)
        return pack.lexicon.redact(text, pack.lexicon.found(text, rule.categories), counts)

    return redact


def _classify(pack: Pack, found: _Found, identity: Identity, decision: Decision) -> bool:
    """Set the call's classification; False if a clearance rule blocks the call."""
    # The floor is the pack's default; each detector's sensitivity and each matching
    # classification rule can only raise it.
    level = _level(pack.default_classification)
    for name in found.detectors:
        level = max(level, _level(pack.detectors.by_name[name].sensitivity))
    for rule in pack.classification_rules:
        if (rule.patterns or rule.categories) and rule.level and found.hit(rule):
            level = max(level, _level(rule.level))
            decision.fired(rule.id, "flag")
    decision.classification = LEVELS[level]
    for rule in pack.classification_rules:
        applies = rule.require_scopes and rule.level is not None and level >= _level(rule.level)
        if applies and not all(scope in identity.scopes for scope in rule.require_scopes):
            decision.fired(rule.id, "block")
            return False
    return True


def map_json(node: Any, fn: Callable[[str], str]) -> Any:
    """`fn` on every string of a JSON value, keys included."""
    if isinstance(node, str):
        return fn(node)
    if isinstance(node, dict):
        return {fn(key): map_json(value, fn) for key, value in node.items()}
    if isinstance(node, list):
        return [map_json(value, fn) for value in node]
    return node


class OutputPolicy:
    """Output rules as one text transform; `OutputBlockedError` when a block rule hits.

    `both_ways`: input rules too, for text that travels both ways — a tool's
    description is the tool server's output and becomes part of the model's prompt."""

    def __init__(self, pack: Pack, decision: Decision | None, both_ways: bool = False) -> None:
        self._pack = pack
        self._decision = decision
        if both_ways:
            self.rules = tuple(r for r in pack.rules if r.scans_output() or r.scans_input())
            self.patterns = patterns_of(self.rules)
            self.categories = categories_of(self.rules)
        else:  # a call's answer: what the pack worked out once
            self.rules, self.patterns = pack.output_rules, pack.output_patterns
            self.categories = pack.output_categories

    @functools.cached_property
    def extra_patterns(self) -> tuple[re.Pattern[str], ...]:
        """The categories' expressions, for a stream's cuts (a whole answer needs none)."""
        return tuple(self._pack.lexicon.patterns[c] for c in self.categories)

    def __call__(self, text: str) -> str:
        pack = self._pack
        found = _Found(
            set(pack.detectors.found(text, self.patterns)),
            set(pack.lexicon.found(text, self.categories)),
        )
        for rule in self.rules:
            if not found.hit(rule):
                continue
            if rule.action != "redact":
                if rule.action == "block":
                    raise OutputBlockedError(rule.id)
                if self._decision is not None:
                    self._decision.fired(rule.id, "flag")
                continue
            counts: dict[str, int] = {}
            text = _redactor(pack, rule, counts, found.detectors)(text)
            # As for input: the categories again only after a redaction.
            found.categories = set(pack.lexicon.found(text, self.categories))
            if counts and self._decision is not None:
                self._decision.count(counts)
                self._decision.fired(rule.id, "redact")
        return text

    def safe_cut(self, text: str, cut: int) -> int:
        return self._pack.detectors.safe_cut(text, cut, self.patterns, self.extra_patterns)

    def hold_start(self, text: str) -> int:
        """Where the text that must wait for more begins (see HOLD_BACK_CHARS)."""
        detectors = self._pack.detectors.hold_start(
            text, self.patterns, HOLD_BACK_CHARS, LONGEST_VALUE
        )
        return min(detectors, self._pack.lexicon.hold_start(text, self.categories))


def output_policy(
    pack: Pack, decision: Decision | None, both_ways: bool = False
) -> OutputPolicy | None:
    """The pack's output rules (and input rules, `both_ways`), or None when it has none
    (the fast path)."""
    policy = OutputPolicy(pack, decision, both_ways)
    return policy if policy.rules else None


class StreamFilter:
    """Output rules over a stream of text deltas, holding back as little as is safe.

    `feed()` returns the text that may be released now; `flush()` the rest. Text is
    released up to where a value that more text could still complete may begin
    (`OutputPolicy.hold_start`), and never so that a detector or category match
    straddles the release point.
    """

    def __init__(self, policy: OutputPolicy) -> None:
        self._policy = policy
        self._pending = ""
        self.scanned_chars = 0

    def feed(self, delta: str) -> str:
        self._pending += delta
        self.scanned_chars += len(delta)
        cut = self._policy.hold_start(self._pending)
        if cut <= 0:
            return ""
        cut = self._policy.safe_cut(self._pending, cut)
        released, self._pending = self._pending[:cut], self._pending[cut:]
        return self._policy(released) if released else ""

    def flush(self) -> str:
        released, self._pending = self._pending, ""
        return self._policy(released) if released else ""
