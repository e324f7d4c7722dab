"""An optional external classifier, called over HTTP with its own timeout and fail mode.

A pack may name one (`classifier:` in the document). The gateway posts
`{"text": <prompt>, "categories": [...]}` and expects `{"categories": {name: score}}`;
a score at or above `threshold` blocks the call (rule id `classifier:<category>`).
If the classifier cannot answer in time, `fail_mode: closed` refuses the call (503)
and `open` lets it through flagged `classifier-unavailable`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from gateway import httpclient, jsoncodec, providers
from gateway.errors import GatewayError, PackError

UNAVAILABLE = "classifier-unavailable"


class ClassifierUnavailableError(GatewayError):
    """The classifier did not give a usable answer in time."""


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


def resolve_url(hook: ClassifierHook) -> str:
    return providers.interpolate(hook.url, os.environ)


async def classify(client: httpclient.HttpClient, hook: ClassifierHook, text: str) -> list[str]:
    """Categories scored at or above the threshold; `ClassifierUnavailableError` if no answer."""
    body = jsoncodec.dumps({"text": text, "categories": list(hook.categories)})
    try:
        response = await client.post(
            resolve_url(hook),
            body,
            {"content-type": "application/json"},
            connect=hook.timeout_s,
            first_byte=hook.timeout_s,
            total=hook.timeout_s,
        )
        answer = jsoncodec.loads(await response.read())
        scores = answer["categories"]
        if response.status != 200 or not isinstance(scores, dict):
            raise ValueError(f"status {response.status}")
    except (httpclient.HttpClientError, PackError, ValueError, KeyError, TypeError) as exc:
        raise ClassifierUnavailableError(f"classifier: {exc}") from exc
    return [
        str(c)
        for c, score in scores.items()
        if isinstance(score, int | float) and score >= hook.threshold
    ]
