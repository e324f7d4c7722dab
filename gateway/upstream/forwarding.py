"""Send a call to the first target that answers, falling back in the pack's order.

Fallback happens on connect errors, timeouts before the first byte, 5xx and 429
(the 429'd target rests for its `retry-after`). Once a target has answered with
anything else — including the first byte of a stream — the call is that target's:
nothing is retried after the caller may have seen output.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from cordon.errors import (
    NoTargetAvailableError,
    UnknownModelError,
    UpstreamError,
    UpstreamTimeout,
)
from gateway import metrics
from gateway.upstream.client import UpstreamClient, UpstreamResponse
from gateway.upstream.providers import Target
from gateway.upstream.routing import Router

MAX_REST_S = 60.0


@dataclass
class Forwarded:
    """The answer a call gets: a live response, or a failure body already read."""

    target: Target
    status: int
    headers: Mapping[str, str]
    response: UpstreamResponse | None = None
    body: bytes | None = None
    attempts: list[str] = field(default_factory=list)


ERROR_BODY_LIMIT = 1024 * 1024  # a provider's error answer, read whole


async def _error_body(response: UpstreamResponse) -> bytes:
    """An error answer's body, or nothing if it cannot be read whole (the caller then gets
    an error of ours in its API's shape, see gateway.http.calls)."""
    try:
        return await response.read(ERROR_BODY_LIMIT)
    except UpstreamError:
        return b""


def retry_after_seconds(value: str | None) -> float:
    if not value:
        return 1.0
    try:
        return min(MAX_REST_S, max(0.0, float(value)))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is None:
            return 1.0
        return min(MAX_REST_S, max(0.0, parsed.timestamp() - time.time()))


async def forward(
    router: Router,
    client: UpstreamClient,
    api: str,
    model: str,
    path: str,
    body: bytes,
    passthrough: Mapping[str, str],
    targets: list[Target] | None = None,
) -> Forwarded:
    """Try `targets` (the router's choice for `model` unless given: a call that planned
    its route already passes it, so a balanced router turns once per call) in order."""
    targets = router.serving(api, model) if targets is None else targets
    asked = router.named(model)[1]  # the model without the target a caller named
    if not targets:
        raise UnknownModelError(f"model {model!r} is not served by this gateway")
    attempts: list[str] = []
    failed: Forwarded | None = None
    timed_out = False
    for target in targets:
        if not router.breakers.allow(target.id):
            attempts.append(f"{target.id}:circuit_open")
            continue
        try:
            response = await client.open(target, path, body, passthrough, asked)
        except UpstreamError as exc:
            reason = "timeout" if isinstance(exc, UpstreamTimeout) else "connect"
            timed_out = timed_out or reason == "timeout"
            _failed(router, target, reason, attempts)
            continue
        if response.status == 429 or response.status >= 500:
            reason = str(response.status)
            if response.status == 429:
                router.breakers.rest(
                    target.id, retry_after_seconds(response.headers.get("retry-after"))
                )
                attempts.append(f"{target.id}:429")
                metrics.UPSTREAM_FAILURES.labels(target.id, "429").inc()
            else:
                _failed(router, target, "5xx", attempts, reason)
            failed = Forwarded(
                target,
                response.status,
                response.headers,
                body=await _error_body(response),
                attempts=attempts,
            )
            continue
        router.breakers.succeeded(target.id)
        return Forwarded(
            target, response.status, response.headers, response=response, attempts=attempts
        )
    if failed is not None:
        return failed
    raise NoTargetAvailableError(
        f"no provider answered for model {model!r} ({', '.join(attempts)})",
        timed_out,
        tuple(attempts),
    )


def _failed(
    router: Router, target: Target, reason: str, attempts: list[str], detail: str = ""
) -> None:
    router.breakers.failed(target.id)
    metrics.UPSTREAM_FAILURES.labels(target.id, reason).inc()
    attempts.append(f"{target.id}:{detail or reason}")
