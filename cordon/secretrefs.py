"""Secret references in a pack: `{env: NAME}` (a variable of the replica's environment
that its `allowed_env` names) or `{store: NAME}` (a file in its secret store). Shared by
provider targets, tool servers and `cordon tools digest`, none of which may read more."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cordon.errors import PackError

__all__ = ["resolve_secret"]


def resolve_secret(ref: Any, env: Mapping[str, str], store: Path | None, target_id: str) -> str:
    if ref is None:
        return ""
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
        return value
    if kind == "store":
        if store is None:
            raise PackError(f"target {target_id}: no secret store is configured for {name}")
        path = store / str(name)
        if path.resolve().parent != store.resolve():
            raise PackError(f"target {target_id}: secret name {name!r} is not a plain name")
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise PackError(f"target {target_id}: secret {name} not in the store") from exc
    raise PackError(f"target {target_id}: secret_key_ref kind {kind!r} is not env or store")
