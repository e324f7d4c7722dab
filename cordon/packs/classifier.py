"""A pack's `classifier:` section: which external classifier to ask, and how.

The gateway makes the call (gateway.upstream.classifier); this is only the document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cordon.errors import PackError


@dataclass(frozen=True)
class ClassifierHook:
    url: str  # may hold ${VAR} / ${VAR:-default}, resolved at activation and per call
    categories: tuple[str, ...]
    timeout_s: float = 0.3
    fail_mode: str = "closed"
    threshold: float = 0.5


def parse(raw: Any) -> ClassifierHook | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("url"), str):
        raise PackError("classifier needs a url")
    fail_mode = str(raw.get("fail_mode", "closed"))
    if fail_mode not in ("closed", "open"):
        raise PackError("classifier.fail_mode is closed or open")
    categories = raw.get("categories") or []
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise PackError("classifier.categories is a list of names")
    try:
        return ClassifierHook(
            url=raw["url"],
            categories=tuple(categories),
            timeout_s=float(raw.get("timeout_ms", 300)) / 1000,
            fail_mode=fail_mode,
            threshold=float(raw.get("threshold", 0.5)),
        )
    except (TypeError, ValueError) as exc:
        raise PackError(f"classifier: {exc}") from exc
