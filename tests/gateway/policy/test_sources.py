"""Where a sidecar's policy file comes from: a file re-read on change and on SIGHUP, and
a git repository polled. Real files, real repositories (made with dulwich), short
intervals."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from dulwich import porcelain
from dulwich.repo import Repo

from cordon.errors import PolicySourceError
from gateway.policy.sources import (
    MAX_SOURCE_BYTES,
    FileSource,
    GitSource,
    SourceUpdate,
)

ROOT = Path(__file__).resolve().parents[3]
TICK = 0.05  # the sources' interval in these tests
SOON = 1.0  # how long "within one interval" may take on a busy CI machine
QUIET = 4 * TICK  # how long "nothing" is watched for
AUTHOR = b"Test <test@example.com>"


class Collected:
    """A source's updates, gathered by a task: a test waits for the next one, or checks
    that none came, without cancelling the source's generator mid-poll."""

    def __init__(self, updates: AsyncIterator[SourceUpdate]) -> None:
        self.queue: asyncio.Queue[SourceUpdate] = asyncio.Queue()
        self.task = asyncio.create_task(self._gather(updates))

    async def _gather(self, updates: AsyncIterator[SourceUpdate]) -> None:
        async for update in updates:
            await self.queue.put(update)

    async def next(self, timeout: float = SOON) -> SourceUpdate:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def nothing(self, for_s: float = QUIET) -> None:
        await asyncio.sleep(for_s)
        assert self.queue.empty(), self.queue.get_nowait()
        assert not self.task.done(), self.task


@asynccontextmanager
async def collecting(updates: AsyncIterator[SourceUpdate]) -> AsyncIterator[Collected]:
    collected = Collected(updates)
    try:
        yield collected
    finally:
        collected.task.cancel()
        await asyncio.gather(collected.task, return_exceptions=True)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- the file ------------------------------------------------------------------------


async def test_a_file_yields_its_content_then_each_edit(tmp_path: Path) -> None:
    policy = tmp_path / "cordon.yaml"
    policy.write_bytes(b"rules: 1\n")
    async with collecting(FileSource(policy, TICK).updates()) as got:
        first = await got.next()
        assert first.data == b"rules: 1\n"
        assert first.origin == {"file": str(policy), "digest": sha256(b"rules: 1\n")}
        policy.write_bytes(b"rules: 22\n")
        started = time.monotonic()
        assert (await got.next()).data == b"rules: 22\n"
        assert time.monotonic() - started < SOON
        await got.nothing()


async def test_a_touch_without_a_change_yields_nothing(tmp_path: Path) -> None:
    policy = tmp_path / "cordon.yaml"
    policy.write_bytes(b"rules: 1\n")
    async with collecting(FileSource(policy, TICK).updates()) as got:
        await got.next()
        later = policy.stat().st_mtime_ns + 5_000_000_000
        os.utime(policy, ns=(later, later))
        policy.write_bytes(b"rules: 1\n")  # rewritten, same bytes
        await got.nothing()


async def test_reload_now_rereads_at_once_and_yields_even_the_same_bytes(
    tmp_path: Path,
) -> None:
    policy = tmp_path / "cordon.yaml"
    policy.write_bytes(b"rules: 1\n")
    source = FileSource(policy, watch_interval_s=30.0)  # no poll comes during the test
    async with collecting(source.updates()) as got:
        await got.next()
        source.reload_now()  # SIGHUP with nothing changed: the operator asked
        assert (await got.next(timeout=0.5)).data == b"rules: 1\n"
        policy.write_bytes(b"rules: 2\n")
        source.reload_now()
        assert (await got.next(timeout=0.5)).data == b"rules: 2\n"
        # From another thread (a plain signal handler, a status endpoint's worker).
        threading.Thread(target=source.reload_now).start()
        assert (await got.next(timeout=0.5)).data == b"rules: 2\n"
        await got.nothing()


async def test_a_configmap_symlink_swap_is_picked_up(tmp_path: Path) -> None:
    # Kubernetes' layout: cordon.yaml -> ..data/cordon.yaml, ..data -> ..<timestamp>;
    # an update writes a new timestamped directory and renames a new ..data over the old.
    mount = tmp_path / "config"
    (mount / "..2025_01").mkdir(parents=True)
    (mount / "..2025_01" / "cordon.yaml").write_bytes(b"rules: 1\n")
    (mount / "..data").symlink_to("..2025_01")
    (mount / "cordon.yaml").symlink_to("..data/cordon.yaml")
    async with collecting(FileSource(mount / "cordon.yaml", TICK).updates()) as got:
        assert (await got.next()).data == b"rules: 1\n"
        old = (mount / "..2025_01" / "cordon.yaml").stat()
        (mount / "..2025_02").mkdir()
        new = mount / "..2025_02" / "cordon.yaml"
        new.write_bytes(b"rules: 2\n")  # same size, and the same mtime below: only the
        os.utime(new, ns=(old.st_atime_ns, old.st_mtime_ns))  # file behind the link differs
        (mount / "..data_tmp").symlink_to("..2025_02")
        os.replace(mount / "..data_tmp", mount / "..data")
        update = await got.next()
        assert update.data == b"rules: 2\n"
        assert update.origin["file"] == str(mount / "cordon.yaml")
        await got.nothing()


async def test_a_deleted_file_yields_nothing_and_the_next_good_write_is_yielded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    policy = tmp_path / "cordon.yaml"
    policy.write_bytes(b"rules: 1\n")
    source = FileSource(policy, TICK)
    async with collecting(source.updates()) as got:
        await got.next()
        policy.unlink()
        await got.nothing()
        assert source.last_error is not None and "cordon.yaml" in source.last_error
        assert source.last_error_at is not None
        # Logged once for the spell of failure, not once per poll.
        assert sum("unreadable" in r.getMessage() for r in caplog.records) == 1
        policy.write_bytes(b"rules: 3\n")
        assert (await got.next()).data == b"rules: 3\n"
        assert source.last_error is None


async def test_a_file_missing_at_start_is_yielded_once_written(tmp_path: Path) -> None:
    policy = tmp_path / "cordon.yaml"
    source = FileSource(policy, TICK)
    async with collecting(source.updates()) as got:
        await got.nothing()
        assert source.last_error is not None
        policy.write_bytes(b"rules: 1\n")
        assert (await got.next()).data == b"rules: 1\n"


async def test_a_file_past_the_size_cap_is_refused(tmp_path: Path) -> None:
    policy = tmp_path / "cordon.yaml"
    policy.write_bytes(b"#" * (MAX_SOURCE_BYTES + 1))
    source = FileSource(policy, TICK)
    async with collecting(source.updates()) as got:
        await got.nothing()
        assert source.last_error is not None and "larger than" in source.last_error


# -- the git repository ----------------------------------------------------------------


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Repo]:
    """A working repository on branch `main` with cordon.yaml committed."""
    repo = porcelain.init(str(tmp_path / "upstream"))
    repo.refs.set_symbolic_ref(b"HEAD", b"refs/heads/main")
    commit(repo, {"cordon.yaml": b"rules: 1\n"})
    yield repo
    repo.close()


def commit(repo: Repo, files: dict[str, bytes | None], message: str = "change") -> str:
    """Write (bytes) or remove (None) files, commit them; the new commit's id."""
    for name, data in files.items():
        where = Path(repo.path) / name
        if data is None:
            porcelain.remove(repo, [str(where)])
        else:
            where.write_bytes(data)
            porcelain.add(repo, [str(where)])
    sha = porcelain.commit(repo, message=message.encode(), author=AUTHOR, committer=AUTHOR)
    return sha.decode()


def head(repo: Repo) -> str:
    return repo.refs[b"refs/heads/main"].decode()


def git_source(location: str, tmp_path: Path, ref: str = "main") -> GitSource:
    return GitSource(location, ref, "cordon.yaml", tmp_path / "cache", TICK)


@pytest.mark.parametrize("url", [False, True], ids=["path", "file-url"])
async def test_git_delivers_the_file_then_each_new_commit(
    upstream: Repo, tmp_path: Path, url: bool
) -> None:
    location = Path(upstream.path).as_uri() if url else upstream.path
    source = git_source(location, tmp_path)
    async with collecting(source.updates()) as got:
        first = await got.next()
        assert first.data == b"rules: 1\n"
        assert first.origin == {
            "file": "cordon.yaml",
            "digest": sha256(b"rules: 1\n"),
            "commit": head(upstream),
            "ref": "main",
            "source": location,
        }
        assert source.commit == head(upstream)
        await got.nothing()  # polls go on; the commit has not moved

        second = commit(upstream, {"cordon.yaml": b"rules: 2\n"})
        started = time.monotonic()
        update = await got.next()
        assert time.monotonic() - started < SOON
        assert (update.data, update.origin["commit"]) == (b"rules: 2\n", second)
        assert update.origin["digest"] == sha256(b"rules: 2\n")

        # A commit that leaves the file alone is still a new commit: the runtime decides.
        third = commit(upstream, {"README.md": b"docs\n"})
        update = await got.next()
        assert (update.data, update.origin["commit"]) == (b"rules: 2\n", third)
        assert source.commit == third and source.last_error is None


async def test_git_reads_a_bare_repository(upstream: Repo, tmp_path: Path) -> None:
    bare = porcelain.clone(upstream.path, str(tmp_path / "bare.git"), bare=True)
    bare.close()
    update = await git_source(str(tmp_path / "bare.git"), tmp_path).poll_once()
    assert update is not None and update.data == b"rules: 1\n"
    assert update.origin["commit"] == head(upstream)


async def test_poll_once_answers_none_until_the_ref_moves(upstream: Repo, tmp_path: Path) -> None:
    source = git_source(upstream.path, tmp_path)
    assert (await source.poll_once()) is not None
    assert (await source.poll_once()) is None
    moved = commit(upstream, {"cordon.yaml": b"rules: 2\n"})
    update = await source.poll_once()
    assert update is not None and update.origin["commit"] == moved
    # A new source on the same cache finds the mirror and still delivers (its first).
    again = await git_source(upstream.path, tmp_path).poll_once()
    assert again is not None and again.origin["commit"] == moved


async def test_git_follows_an_annotated_tag(upstream: Repo, tmp_path: Path) -> None:
    tagged = head(upstream)
    porcelain.tag_create(upstream, b"v1", author=AUTHOR, message=b"release", annotated=True)
    source = git_source(upstream.path, tmp_path, ref="v1")
    async with collecting(source.updates()) as got:
        first = await got.next()
        assert (first.data, first.origin["commit"], first.origin["ref"]) == (
            b"rules: 1\n",
            tagged,  # the commit, not the tag object
            "v1",
        )
        commit(upstream, {"cordon.yaml": b"rules: 2\n"})  # main moves, the tag does not
        await got.nothing()
        moved = commit(upstream, {"cordon.yaml": b"rules: 3\n"})
        porcelain.tag_delete(upstream, b"v1")
        porcelain.tag_create(upstream, b"v1", author=AUTHOR, message=b"again", annotated=True)
        update = await got.next()
        assert (update.data, update.origin["commit"]) == (b"rules: 3\n", moved)


async def test_a_commit_without_the_file_is_an_error_and_the_next_good_one_is_delivered(
    upstream: Repo, tmp_path: Path
) -> None:
    source = git_source(upstream.path, tmp_path)
    async with collecting(source.updates()) as got:
        delivered = (await got.next()).origin["commit"]
        gone = commit(upstream, {"cordon.yaml": None})
        await got.nothing()
        assert source.last_error is not None
        assert "no file cordon.yaml" in source.last_error and gone[:12] in source.last_error
        assert source.last_error_at is not None
        assert source.commit == delivered  # the last commit delivered stays
        with pytest.raises(PolicySourceError, match=r"no file cordon\.yaml"):
            await source.poll_once()
        back = commit(upstream, {"cordon.yaml": b"rules: 4\n"})
        update = await got.next()
        assert (update.data, update.origin["commit"]) == (b"rules: 4\n", back)
        assert source.last_error is None and source.last_error_at is None


async def test_an_unreachable_source_is_an_error_not_an_exception(tmp_path: Path) -> None:
    for location in (str(tmp_path / "nowhere"), "http://127.0.0.1:9/cordon.git"):
        source = git_source(location, tmp_path)
        async with collecting(source.updates()) as got:
            await got.nothing()
        assert source.last_error is not None and location in source.last_error
        assert source.commit is None
        with pytest.raises(PolicySourceError, match="git source"):
            await source.poll_once()


async def test_a_missing_ref_and_an_oversized_file_are_refused_clearly(
    upstream: Repo, tmp_path: Path
) -> None:
    with pytest.raises(PolicySourceError, match="no branch or tag 'release'"):
        await git_source(upstream.path, tmp_path, ref="release").poll_once()
    commit(upstream, {"cordon.yaml": b"#" * (MAX_SOURCE_BYTES + 1)})
    with pytest.raises(PolicySourceError, match="larger than"):
        await git_source(upstream.path, tmp_path).poll_once()


async def test_credentials_in_a_url_stay_out_of_the_origin_and_the_error(tmp_path: Path) -> None:
    source = git_source("http://user:s3cret@127.0.0.1:9/cordon.git", tmp_path)
    with pytest.raises(PolicySourceError) as refused:
        await source.poll_once()
    assert "s3cret" not in str(refused.value)
    assert "http://127.0.0.1:9/cordon.git" in str(refused.value)


def test_the_sources_load_neither_dulwich_nor_nats() -> None:
    # A fresh interpreter: this one has dulwich loaded by the tests above.
    probe = (
        "import sys, gateway.policy.sources\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('dulwich', 'nats'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", probe], cwd=ROOT, check=True, timeout=20)


# -- intervals -----------------------------------------------------------------------


async def test_a_ref_moved_back_to_an_older_commit_is_not_taken(
    upstream: Repo, tmp_path: Path
) -> None:
    """A force-push (or a tag moved) back to an older commit would replay an older policy
    under a new revision: it is refused and said; a commit that follows is taken."""
    source = git_source(upstream.path, tmp_path)
    async with collecting(source.updates()) as got:
        old = (await got.next()).origin["commit"]
        newer = commit(upstream, {"cordon.yaml": b"rules: 2\n"})
        assert (await got.next()).origin["commit"] == newer
        upstream.refs[b"refs/heads/main"] = old.encode()  # force-pushed back
        await got.nothing()
        assert source.last_error is not None and "does not follow" in source.last_error
        upstream.refs[b"refs/heads/main"] = newer.encode()
        revert = commit(upstream, {"cordon.yaml": b"rules: 1\n"}, "revert")
        assert (await got.next()).origin["commit"] == revert
