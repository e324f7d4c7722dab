"""A pack's staged rollout, as its owner writes it (the `rollout:` section):

    rollout:
      waves: [[eu-west], [us-east, ap-south]]
      soak: 10m
      halt_on:
        activation_failures: 1   # replicas of an open wave refusing the revision
        error_ratio: 0.05        # failed / answered calls under the revision, per wave
        min_calls: 20            # the ratio is judged only past this many calls

The replicator carries the revision to one wave at a time: the next wave opens once
every live replica of the current one enforces it and `soak` has passed with no halt
condition met. Regions the pack covers but no wave names go last, as a wave of their
own. The section is part of the signed document, so only a pack owner can stage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cordon.errors import DocumentError

__all__ = ["Rollout", "parse_duration", "parse_rollout"]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class Rollout:
    waves: tuple[tuple[str, ...], ...]
    soak_s: float = 300.0
    activation_failures: int = 1
    error_ratio: float | None = None
    min_calls: int = 20

    def planned(self, covered: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
        """The waves over `covered` regions (the pack's): regions it does not cover
        left out, empty waves dropped, unnamed covered regions as a last wave."""
        named = {region for wave in self.waves for region in wave}
        waves = [tuple(r for r in wave if r in covered or "*" in covered) for wave in self.waves]
        rest = tuple(r for r in covered if r != "*" and r not in named)
        return tuple(wave for wave in (*waves, rest) if wave)


def parse_duration(value: Any) -> float:
    """Seconds from `90`, `45s`, `10m`, `2h`, `1d` or `250ms`."""
    if isinstance(value, bool):
        raise DocumentError(f"not a duration: {value!r}")
    if isinstance(value, int | float) and value >= 0:
        return float(value)
    match = _DURATION.match(str(value).strip())
    if not match:
        raise DocumentError(f"not a duration: {value!r} (like 30s, 10m, 2h)")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def parse_rollout(document: Any) -> Rollout | None:
    """The document's rollout, or None when it has none (every region at once)."""
    section = document.get("rollout") if isinstance(document, dict) else None
    if section is None:
        return None
    if not isinstance(section, dict):
        raise DocumentError("rollout: must be a map")
    waves = section.get("waves")
    if not isinstance(waves, list) or not waves:
        raise DocumentError("rollout.waves: a list of waves, each a list of regions")
    parsed: list[tuple[str, ...]] = []
    seen: set[str] = set()
    for index, wave in enumerate(waves):
        if not isinstance(wave, list) or not all(isinstance(r, str) and r for r in wave):
            raise DocumentError(f"rollout.waves[{index}]: a list of region names")
        if seen & set(wave):
            raise DocumentError(f"rollout.waves[{index}]: {sorted(seen & set(wave))} twice")
        seen |= set(wave)
        parsed.append(tuple(wave))
    halt = section.get("halt_on") or {}
    if not isinstance(halt, dict):
        raise DocumentError("rollout.halt_on: must be a map")
    ratio = halt.get("error_ratio")
    if ratio is not None and not (isinstance(ratio, int | float) and 0 <= ratio <= 1):
        raise DocumentError("rollout.halt_on.error_ratio: a number from 0 to 1")
    return Rollout(
        waves=tuple(parsed),
        soak_s=parse_duration(section.get("soak", 300)),
        activation_failures=_positive(halt, "activation_failures", 1),
        error_ratio=None if ratio is None else float(ratio),
        min_calls=_positive(halt, "min_calls", 20),
    )


def _positive(section: dict[str, Any], key: str, default: int) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DocumentError(f"rollout.halt_on.{key}: a whole number, 1 or more")
    return value
