"""What a policy source hands the runtime: the file's bytes as found, and where they
came from, in the words the record will carry (so an auditor can fetch the very bytes
a decision was made under: the file's digest, and for git the commit)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["MAX_SOURCE_BYTES", "SourceUpdate", "digest"]

# A policy file is a few kilobytes; anything past this is a mistake (a binary committed
# in its place, a log file mounted there) and is refused rather than parsed.
MAX_SOURCE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class SourceUpdate:
    """The policy file's bytes, and `origin`: {"file", "digest"} always, plus
    {"commit", "ref", "source"} from a git repository."""

    data: bytes
    origin: dict[str, str]


def digest(data: bytes) -> str:
    """The `digest` an origin carries: `sha256:<hex>` of the bytes as found."""
    return "sha256:" + hashlib.sha256(data).hexdigest()
