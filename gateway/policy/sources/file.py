"""A policy file on disk, re-read when it changes and when asked (SIGHUP).

Changes are found by polling rather than inotify: it works the same on every
filesystem and in every container, and a policy file changes rarely. Each poll
compares the file's identity (device, inode, size, mtime) *after* following symlinks,
because Kubernetes updates a mounted ConfigMap by swapping a `..data` symlink to a new
directory: the path never changes, the file behind it does. A changed identity leads to
a read, and only bytes that differ from the last ones yielded are yielded, so a touch,
or a ConfigMap re-synced with the same content, is no update. A file that is missing
or unreadable yields nothing (the runtime keeps the policy it has) and is logged once
per spell of failure, not once per poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from cordon.errors import ConfigError, PolicySourceError
from gateway.policy.sources.update import MAX_SOURCE_BYTES, PolicySource, SourceUpdate, digest

__all__ = ["FileSource"]

# (resolved path, device, inode, size, mtime_ns): what a change of the file changes.
_Identity = tuple[str, int, int, int, int]


class FileSource(PolicySource):
    """Yields the file's content at start, then each change, then on `reload_now()`.

    One consumer iterates `updates()`."""

    kind = "file"

    def __init__(self, path: Path, watch_interval_s: float = 1.0) -> None:
        if not watch_interval_s > 0:
            raise ConfigError(f"watch interval {watch_interval_s!r} must be positive")
        super().__init__(str(path))
        self.path = path
        self.watch_interval_s = watch_interval_s
        self._forced = False
        self._seen: _Identity | None = None  # the identity last read
        self._digest: str | None = None  # the digest last yielded
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    def reload_now(self) -> None:
        """Re-read at once and yield the content even if it is unchanged (SIGHUP is an
        operator asking for it). Safe from the loop (`loop.add_signal_handler`) and
        from another thread."""
        self._forced = True
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return  # not iterating yet: the first update comes at once anyway
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            wake.set()
        else:
            loop.call_soon_threadsafe(wake.set)

    async def updates(self) -> AsyncIterator[SourceUpdate]:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        while True:
            forced, self._forced = self._forced, False
            # A slow mount (NFS, a FUSE volume) must not stall the loop's calls.
            update = await asyncio.to_thread(self._check, forced)
            if update is not None:
                yield update
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.watch_interval_s):
                    await self._wake.wait()
            self._wake.clear()

    def _check(self, forced: bool) -> SourceUpdate | None:
        """The update to yield now, if any (runs in a worker thread)."""
        try:
            before = self._identity()
            if before == self._seen and not forced:
                return None
            data = self._read()
            after = self._identity()
        except (OSError, PolicySourceError) as exc:
            self._failed(str(exc))
            self._seen = None  # read it again as soon as it is back
            return None
        if after != before:  # written while we read: read it whole at the next poll
            self._forced = self._forced or forced
            return None
        self._seen = after
        self._recovered()
        found = digest(data)
        if found == self._digest and not forced:
            return None
        self._digest = found
        return SourceUpdate(data, {"file": str(self.path), "digest": found})

    def _identity(self) -> _Identity:
        real = os.path.realpath(self.path)
        st = os.stat(real)
        return (real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def _read(self) -> bytes:
        with open(self.path, "rb") as file:
            data = file.read(MAX_SOURCE_BYTES + 1)
        if len(data) > MAX_SOURCE_BYTES:
            raise PolicySourceError(
                f"policy file {self.path} is larger than {MAX_SOURCE_BYTES} bytes"
            )
        return data
