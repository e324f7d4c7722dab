"""Files that hold secrets (keys, passwords, tokens, configs that carry them)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_private"]


def write_private(path: Path, data: str | bytes) -> None:
    """Write `data` to `path`, readable by its owner only from the first byte.

    Created 0600 by `open` itself: writing first and then `chmod` leaves a moment in
    which another user can open the file. An existing file is made 0600 before it is
    rewritten."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(data.encode() if isinstance(data, str) else data)
