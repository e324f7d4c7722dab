"""An optional external classifier, called over HTTP with its own timeout and fail mode.

A pack may name one (`classifier:` in the document). The gateway posts
`{"text": <prompt>, "categories": [...]}` and expects `{"categories": {name: score}}`;
a score at or above `threshold` blocks the call (rule id `classifier:<category>`).
If the classifier cannot answer in time, `fail_mode: closed` refuses the call (503)
and `open` lets it through flagged `classifier-unavailable`.
"""

from __future__ import annotations

from collections.abc import Mapping

from cordon import jsoncodec
from cordon.errors import ClassifierUnavailableError, HttpClientError, PackError
from cordon.packs import ClassifierHook
from gateway.upstream import httpclient, providers

UNAVAILABLE = "classifier-unavailable"


def resolve_url(hook: ClassifierHook, env: Mapping[str, str]) -> str:
    return providers.interpolate(hook.url, env)


async def classify(
    client: httpclient.HttpClient, hook: ClassifierHook, text: str, env: Mapping[str, str]
) -> list[str]:
    """Categories scored at or above the threshold; `ClassifierUnavailableError` if no answer."""
    body = jsoncodec.dumps({"text": text, "categories": list(hook.categories)})
    try:
        response = await client.request(
            "POST",
            resolve_url(hook, env),
            body,
            {"content-type": "application/json"},
            connect=hook.timeout_s,
            first_byte=hook.timeout_s,
            total=hook.timeout_s,
        )
        answer = jsoncodec.loads(await response.read(limit=64 * 1024))
        scores = answer["categories"]
        if response.status != 200 or not isinstance(scores, dict):
            raise ValueError(f"status {response.status}")
    except (HttpClientError, PackError, ValueError, KeyError, TypeError) as exc:
        raise ClassifierUnavailableError(f"classifier: {exc}") from exc
    return [
        str(c)
        for c, score in scores.items()
        if isinstance(score, int | float) and score >= hook.threshold
    ]
