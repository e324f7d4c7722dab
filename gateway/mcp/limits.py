"""Per-tool rate limits a pack sets (`rate: {calls, per_s}`): a token bucket per
caller, tool and replica, so one agent in a loop cannot spend another's share."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

from cordon.packs.tools import Rate

__all__ = ["RateLimits"]

MAX_BUCKETS = 10_000  # past this, full buckets (idle callers) are forgotten


class RateLimits:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: Hashable, rate: Rate) -> bool:
        """Spend one call of `key`'s allowance; False if none is left now."""
        now = self._clock()
        tokens, at = self._buckets.get(key, (float(rate.calls), now))
        tokens = min(float(rate.calls), tokens + (now - at) * rate.calls / rate.per_s)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > MAX_BUCKETS:
            self._forget_idle(now, rate)
        return True

    def _forget_idle(self, now: float, rate: Rate) -> None:
        idle = [k for k, (_, at) in self._buckets.items() if now - at > rate.per_s]
        for key in idle:
            del self._buckets[key]
