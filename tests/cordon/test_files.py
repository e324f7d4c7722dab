"""Files that hold secrets are the owner's alone from their first byte."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cordon.files import write_private


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private(tmp_path / "keys" / "secret", "s3cret")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "keys" / "secret") == 0o600
    assert (tmp_path / "keys" / "secret").read_text() == "s3cret"


def test_an_existing_readable_file_is_closed_before_it_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.json"
    path.write_text("old")
    path.chmod(0o644)
    write_private(path, b"new")
    assert _mode(path) == 0o600 and path.read_bytes() == b"new"
