"""Settings files: every process reads one, and fails the same clear way on a bad one."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cordon.errors import ConfigError

__all__ = ["load_json"]

T = TypeVar("T")


def load_json(path: Path, build: Callable[[dict[str, Any]], T]) -> T:
    """Read a JSON settings file and `build` settings from it.

    Any problem (unreadable file, bad JSON, missing or mistyped key) becomes one
    `ConfigError` that names the file, so every process fails the same clear way.
    """
    try:
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict):
            raise ValueError("settings must be a JSON object")
        return build(raw)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"invalid settings {path}: {exc}") from exc
