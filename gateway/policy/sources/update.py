"""What a policy source hands the runtime: the file's bytes as found, and where they
came from, in the words the record will carry (so an auditor can fetch the very bytes
a decision was made under: the file's digest, and for git the commit)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["MAX_SOURCE_BYTES", "PolicySource", "SourceUpdate", "digest", "redacted_url"]

log = logging.getLogger("cordon.gateway.sources")

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


class PolicySource:
    """What every source has: its updates, and why it last failed to be read
    (`last_error`, `last_error_at` in epoch seconds) until it is read again, said in
    the log once per spell of failure rather than once per poll."""

    kind = "source"

    def __init__(self, where: str) -> None:
        self.where = where  # what logs and the status say: no credentials
        self.last_error: str | None = None
        self.last_error_at: float | None = None

    def updates(self) -> AsyncIterator[SourceUpdate]:
        raise NotImplementedError

    def status(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
        }

    def _failed(self, message: str) -> None:
        if message != self.last_error:
            log.warning(
                "policy %s source unreadable, the policy in force stays: %s", self.kind, message
            )
        self.last_error, self.last_error_at = message, time.time()

    def _recovered(self) -> None:
        if self.last_error is not None:
            log.info("policy %s source %s is readable again", self.kind, self.where)
        self.last_error, self.last_error_at = None, None


def redacted_url(source: str) -> str:
    """The source without a password or an HTTP token (records and logs carry it); an
    ssh user name stays, it names a login rather than proving one."""
    parts = urlsplit(source)
    web = parts.scheme in ("http", "https")
    if parts.password is None and not (web and parts.username):
        return source  # a path, file://, ssh://git@host/...: nothing secret
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    if parts.username and not web:
        host = f"{parts.username}@{host}"
    return urlunsplit(parts._replace(netloc=host))
