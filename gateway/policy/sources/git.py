"""A policy file in a git repository, polled: policy changes go through review and
land as commits, and every record names the commit it was decided under.

Each poll fetches the one ref wanted into a bare mirror under the cache directory
(only new objects travel, and a restart does not fetch the history again), resolves
it (a branch, or a tag, annotated tags peeled to their commit) and, when the commit
is new, reads the file from that commit's tree. dulwich does the git work, in a
worker thread, without a `git` binary; it is imported here only when a poll runs, so
a sidecar fed by a file never loads it. A poll that fails (the remote away, the ref or
the file missing, the file too large) keeps the last commit delivered and is kept in
`last_error` for the status endpoint: `updates()` logs it and tries again next
interval, `poll_once()` raises it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import stat
import threading
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from cordon.errors import ConfigError, PolicySourceError
from gateway.policy.sources.update import (
    MAX_SOURCE_BYTES,
    PolicySource,
    SourceUpdate,
    digest,
    redacted_url,
)

if TYPE_CHECKING:
    from dulwich.objects import Commit, ObjectID
    from dulwich.refs import Ref
    from dulwich.repo import Repo

__all__ = ["DEFAULT_PATH", "DEFAULT_REF", "FETCH_TIMEOUT_S", "GitSource"]

log = logging.getLogger("cordon.gateway.sources")

DEFAULT_REF = "main"
DEFAULT_PATH = "cordon.yaml"
# An HTTP remote that accepts the connection and then stalls must not hold the poll
# (and its worker thread) forever.
FETCH_TIMEOUT_S = 30.0


class GitSource(PolicySource):
    """Yields the file at the ref's commit at start, then at each new commit.

    `commit` is the commit last delivered; `last_error` why the last poll failed,
    cleared by the next that succeeds."""

    kind = "git"

    def __init__(
        self, source: str, ref: str, path: str, cache_dir: Path, poll_interval_s: float
    ) -> None:
        if not source or not ref or not path.strip("/"):
            raise ConfigError(f"git policy source needs a source, a ref and a path: {source!r}")
        if not poll_interval_s > 0:
            raise ConfigError(f"poll interval {poll_interval_s!r} must be positive")
        self.source = source
        self.ref = ref
        self.path = path.strip("/")
        self.cache_dir = cache_dir
        self.poll_interval_s = poll_interval_s
        self.commit: str | None = None
        super().__init__(redacted_url(source))  # what logs and records say: no credentials
        self._lock = asyncio.Lock()
        # A poll's thread outlives a cancelled `poll_once`; the next waits for it.
        self._mirror_lock = threading.Lock()

    @property
    def mirror(self) -> Path:
        """The bare mirror this source fetches into (one per source, by its name)."""
        return self.cache_dir / (hashlib.sha256(self.source.encode()).hexdigest()[:16] + ".git")

    async def updates(self) -> AsyncIterator[SourceUpdate]:
        while True:
            try:
                update = await self.poll_once()
            except PolicySourceError:
                update = None  # logged and kept in last_error; the policy in force stays
            if update is not None:
                yield update
            await asyncio.sleep(self.poll_interval_s)

    async def poll_once(self) -> SourceUpdate | None:
        """Fetch; the update if the ref is at a commit not yet delivered, else None."""
        async with self._lock:
            try:
                commit, data = await asyncio.to_thread(self._fetch, self.commit)
            except PolicySourceError as exc:
                self._failed(str(exc))
                raise
            self._recovered()
            if data is None:
                return None
            self.commit = commit
            log.info("policy source %s: %s at %s", self.where, self.ref, commit)
            return SourceUpdate(data, self._origin(commit, data))

    def _origin(self, commit: str, data: bytes) -> dict[str, str]:
        return {
            "file": self.path,
            "digest": digest(data),
            "commit": commit,
            "ref": self.ref,
            "source": self.where,
        }

    def _fetch(self, known: str | None) -> tuple[str, bytes | None]:
        """(commit the ref is at, the file there, or None if that commit is `known`)."""
        with self._mirror_lock:
            try:
                with self._open_mirror() as mirror:
                    commit = self._fetch_ref(mirror)
                    if commit.id.decode() == known:
                        return known, None
                    if known is not None and not _follows(mirror, commit.id, known.encode()):
                        raise PolicySourceError(
                            f"git source {self.where}: {self.ref} moved to "
                            f"{commit.id.decode()[:12]}, which does not follow {known[:12]} "
                            "(a force-push or a moved tag): an older policy is not taken "
                            "back this way; commit a revert instead"
                        )
                    return commit.id.decode(), self._read_file(mirror, commit)
            except PolicySourceError:
                raise
            except Exception as exc:  # dulwich, urllib3, ssh, the disk: one answer
                message = str(exc).replace(self.source, self.where) or type(exc).__name__
                raise PolicySourceError(f"git source {self.where}: {message}") from exc

    def _open_mirror(self) -> Repo:
        from dulwich.errors import NotGitRepository
        from dulwich.repo import Repo

        try:
            return Repo(str(self.mirror))
        except NotGitRepository:
            # Absent, or half-made by an interrupted start: it is only a cache.
            shutil.rmtree(self.mirror, ignore_errors=True)
            self.mirror.parent.mkdir(parents=True, exist_ok=True)
            return Repo.init_bare(str(self.mirror), mkdir=True)

    def _fetch_ref(self, mirror: Repo) -> Commit:
        """Fetch the ref's objects into the mirror; the commit it is at."""
        from dulwich.client import get_transport_and_path
        from dulwich.config import ConfigFile, StackedConfig
        from dulwich.objects import Commit, Tag

        ours = ConfigFile()
        ours.set(("http",), "timeout", str(FETCH_TIMEOUT_S))
        # The machine's git config first (proxy, CA, insteadOf), as `git fetch` would.
        config = StackedConfig([*StackedConfig.default_backends(), ours])
        client, remote_path = get_transport_and_path(self.source, config=config)
        candidates = self._ref_names()

        def determine_wants(
            refs: Mapping[Ref, ObjectID], depth: int | None = None
        ) -> list[ObjectID]:
            found = _pick(refs, candidates)
            return [found[1]] if found and found[1] not in mirror.object_store else []

        result = client.fetch(
            remote_path, mirror, determine_wants=determine_wants, ref_prefix=candidates
        )
        found = _pick({k: v for k, v in result.refs.items() if v is not None}, candidates)
        if found is None:
            raise PolicySourceError(f"git source {self.where}: no branch or tag {self.ref!r}")
        name, sha = found
        mirror.refs[name] = sha  # keeps the objects, and tells the next fetch what we have
        obj = mirror.object_store[sha]
        while isinstance(obj, Tag):  # an annotated tag: peel it to what it tags
            obj = mirror.object_store[obj.object[1]]
        if not isinstance(obj, Commit):
            raise PolicySourceError(
                f"git source {self.where}: {self.ref!r} is a {obj.type_name.decode()}, not a commit"
            )
        return obj

    def _read_file(self, mirror: Repo, commit: Commit) -> bytes:
        from dulwich.objects import Blob, Tree

        store = mirror.object_store
        at = f"{self.path} at commit {commit.id.decode()[:12]} of {self.ref!r} in {self.where}"
        tree = store[commit.tree]
        try:
            if not isinstance(tree, Tree):
                raise KeyError(commit.tree)
            mode, sha = tree.lookup_path(store.__getitem__, self.path.encode())
        except Exception as exc:  # KeyError, NotTreeError, SubmoduleEncountered
            raise PolicySourceError(f"no file {at}") from exc
        blob = store[sha]
        if not isinstance(blob, Blob) or not stat.S_ISREG(mode):
            raise PolicySourceError(f"{at} is not a regular file")
        data = blob.as_raw_string()
        if len(data) > MAX_SOURCE_BYTES:
            raise PolicySourceError(f"{at} is larger than {MAX_SOURCE_BYTES} bytes")
        return data

    def _ref_names(self) -> list[Ref]:
        """Which remote refs may be meant: a full name as given, else branch, then tag."""
        if self.ref.startswith("refs/"):
            return [cast("Ref", self.ref.encode())]
        return [cast("Ref", f"refs/{kind}/{self.ref}".encode()) for kind in ("heads", "tags")]

    def status(self) -> dict[str, Any]:
        return {**super().status(), "commit": self.commit}


def _pick(refs: Mapping[Ref, ObjectID], candidates: list[Ref]) -> tuple[Ref, ObjectID] | None:
    """The first candidate the remote has, and its object."""
    for name in candidates:
        if (sha := refs.get(name)) is not None:
            return name, sha
    return None


ANCESTRY_LIMIT = 100_000  # commits looked through for the last one delivered


def _follows(mirror: Repo, commit: bytes, earlier: bytes) -> bool:
    """Whether `earlier` is an ancestor of `commit` (the ref moved forward)."""
    for seen, entry in enumerate(mirror.get_walker(include=[commit])):  # type: ignore[list-item]
        if entry.commit.id == earlier:
            return True
        if seen >= ANCESTRY_LIMIT:
            break
    return False
