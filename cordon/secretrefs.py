"""Secret references in a pack: `{env: NAME}` (a variable of the replica's environment
that its `allowed_env` names) or `{store: NAME}` (a file in its secret store). Shared by
provider targets, tool servers and `cordon tools digest`, none of which may read more."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cordon.errors import PackError

__all__ = ["Secret", "resolve_secret", "secret_source"]

# A file of the store, by its own name: no path, no dot-file (a Secret volume's
# `..data` and its timestamped folders are its machinery, not its keys).
PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class Secret:
    """A secret's value as of now: a constant (`{env}`), or a file (`{store}`) read
    again whenever it changes. A Kubernetes Secret volume rotates a key by swapping the
    file behind a symlink: the next call after the swap sends the new key, with no
    restart and no new pack. A stat per use is what noticing costs."""

    def __init__(self, value: str = "", path: Path | None = None) -> None:
        self._value, self._path = value, path
        self._stamp = _stamp(path) if path is not None else None

    def value(self) -> str:
        if self._path is None:
            return self._value
        stamp = _stamp(self._path)
        if stamp is not None and stamp != self._stamp:
            with contextlib.suppress(OSError):  # mid-swap: keep the last key a moment
                self._value, self._stamp = self._path.read_text().strip(), stamp
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"  # never its value, in a repr, a log line or a record


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        found = os.stat(path)  # follows the symlink a Secret volume keeps
    except OSError:
        return None
    return found.st_mtime_ns, found.st_ino, found.st_size


def secret_source(ref: Any, env: Mapping[str, str], store: Path | None, target_id: str) -> Secret:
    """The secret `ref` names; `PackError` (the pack is refused) if it cannot be had."""
    if ref is None:
        return Secret()
    if not isinstance(ref, dict) or len(ref) != 1:
        raise PackError(
            f"target {target_id}: secret_key_ref must be {{env: NAME}} or {{store: NAME}}"
        )
    ((kind, name),) = ref.items()
    if kind == "env":
        value = env.get(str(name), "")
        if not value:
            raise PackError(
                f"target {target_id}: secret env var {name} is not set "
                "(or the replica's allowed_env does not name it)"
            )
        return Secret(value)
    if kind == "store":
        if store is None:
            raise PackError(f"target {target_id}: no secret store is configured for {name}")
        if not PLAIN_NAME.match(str(name)):
            raise PackError(f"target {target_id}: secret name {name!r} is not a plain name")
        path = store / str(name)
        try:
            return Secret(path.read_text().strip(), path)
        except OSError as exc:
            raise PackError(f"target {target_id}: secret {name} not in the store") from exc
    raise PackError(f"target {target_id}: secret_key_ref kind {kind!r} is not env or store")


def resolve_secret(ref: Any, env: Mapping[str, str], store: Path | None, target_id: str) -> str:
    """The secret's value now."""
    return secret_source(ref, env, store, target_id).value()
