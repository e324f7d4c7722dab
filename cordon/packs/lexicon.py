"""Content categories (hate, violence, self_harm, ...) from versioned word lists.

This is lexical screening and says so: a category is found when one of its terms
appears as whole words, case-insensitively. It catches explicit wording and
misses paraphrase and context. The lists ship with the package (versioned in the
file) and a pack can add terms per category.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

LEXICON_FILE = "lexicons/content-v1.json"
_WORD_START = re.compile(r"\w")
_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=1)
def shipped() -> dict[str, tuple[str, ...]]:
    data = json.loads(resources.files("cordon.packs").joinpath(LEXICON_FILE).read_text())
    return {category: tuple(terms) for category, terms in data["categories"].items()}


def _pattern(terms: Iterable[str]) -> re.Pattern[str]:
    alternatives = sorted(
        {re.escape(t.strip().lower()) for t in terms if t.strip()}, key=len, reverse=True
    )
    return re.compile(
        r"(?<!\w)(?:" + "|".join(alternatives).replace(r"\ ", r"\s+") + r")(?!\w)", re.IGNORECASE
    )


@dataclass(frozen=True)
class Lexicon:
    patterns: Mapping[str, re.Pattern[str]]
    # Per category, the longest word of each term: if none is in the lowercased text,
    # no term can be, and the category's regular expression need not run.
    keys: Mapping[str, tuple[str, ...]]
    # Per category, its terms lowercased with single spaces, sorted: for streams.
    terms: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def hold_start(self, text: str, categories: Iterable[str]) -> int:
        """The earliest word start from which the text so far is the beginning of one of
        the categories' terms: a term there could still be completed by text to come."""
        terms = sorted(t for c in categories for t in self.terms.get(c, ()))
        if not terms:
            return len(text)
        longest = max(len(t) for t in terms)
        tail_start = max(0, len(text) - 2 * longest)  # terms allow runs of whitespace
        for match in _WORD_START.finditer(text, tail_start):
            start = match.start()
            if start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
                continue  # inside a word, not at its start
            said = _SPACES.sub(" ", text[start:].lower())
            if len(said) > longest:
                continue
            at = bisect.bisect_left(terms, said)
            if at < len(terms) and terms[at].startswith(said):
                return start
        return len(text)

    def categories(self) -> tuple[str, ...]:
        return tuple(self.patterns)

    def found(self, text: str, categories: Iterable[str]) -> list[str]:
        lowered = text.lower()
        holds = lowered.__contains__  # mapped in C: no Python frame per key
        return [
            c
            for c in categories
            if c in self.patterns
            and any(map(holds, self.keys[c]))
            and self.patterns[c].search(text)
        ]

    def redact(self, text: str, categories: Iterable[str], counts: dict[str, int]) -> str:
        for category in categories:
            pattern = self.patterns.get(category)
            if pattern is None:
                continue
            text, n = pattern.subn(f"[{category.upper()}]", text)
            if n:
                counts[category] = counts.get(category, 0) + n
        return text


def build(extra: Mapping[str, Iterable[str]] | None = None) -> Lexicon:
    terms = {category: list(words) for category, words in shipped().items()}
    for category, words in (extra or {}).items():
        terms.setdefault(category, []).extend(words)
    terms = {category: words for category, words in terms.items() if words}
    return Lexicon(
        {category: _pattern(words) for category, words in terms.items()},
        {category: tuple(_key(w) for w in words) for category, words in terms.items()},
        {
            category: tuple(sorted({_SPACES.sub(" ", w.strip().lower()) for w in words}))
            for category, words in terms.items()
        },
    )


def _key(term: str) -> str:
    return max(term.lower().split(), key=len)


DEFAULT = build()
