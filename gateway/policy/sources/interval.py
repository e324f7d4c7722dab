"""How often a source is polled, as a settings file writes it (`60s`, `5m`, `500ms`,
or a plain number of seconds), read strictly: a poll interval of zero would spin, and
a typo must stop the sidecar at start rather than be read as some default."""

from __future__ import annotations

import math
import re

from cordon.errors import ConfigError

__all__ = ["parse_interval"]

_INTERVAL = re.compile(r"(?P<number>\d+(?:\.\d+)?|\.\d+)\s*(?P<unit>ms|s|m|h)?")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_interval(value: str | int | float) -> float:
    """Seconds, from `60s`, `5m`, `1h`, `500ms` or a plain (positive) number."""
    if isinstance(value, bool):  # YAML's `yes` is a bool, and a bool is an int
        raise ConfigError(f"interval {value!r} is not a duration (write e.g. 60s or 5m)")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _INTERVAL.fullmatch(value.strip())):
        seconds = float(match["number"]) * _SECONDS[match["unit"]]
    else:
        raise ConfigError(f"interval {value!r} is not a duration (write e.g. 60s or 5m)")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"interval {value!r} must be a positive, finite duration")
    return seconds
