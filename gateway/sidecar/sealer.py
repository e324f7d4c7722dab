"""Signed checkpoints of a sidecar's local log: the regional sealer's job, in-process.

The log's sequence is the leaf index of the same RFC 6962 tree a region keeps
(sequence s is leaf s - 1), so `cordon audit verify` proves a sidecar's range exactly
as it proves a region's. Every second the sealer extends the tree over what was
appended and appends a checkpoint, signed with the sidecar's enrolled key, to a second
log beside the records. After a restart
it resumes from its last checkpoint's frontier and re-reads only what follows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from cordon.errors import RecordCommitError, SignatureError
from cordon.log import checkpoints, merkle
from cordon.log.keys import SigningKey
from gateway.records.local_log import LocalLog

__all__ = ["CHECKPOINT_SUBJECT", "LocalSealer"]

log = logging.getLogger("cordon.sidecar.sealer")
CHECKPOINT_SUBJECT = "cordon.ckpt.local"
EVERY_S = 1.0


class LocalSealer:
    def __init__(self, records: LocalLog, sealed: LocalLog, region: str, key: SigningKey) -> None:
        self._records, self._sealed = records, sealed
        self._region, self._key = region, key
        self.tree = merkle.CompactTree()
        self.checkpoint_size = 0
        self._restore()

    def _restore(self) -> None:
        last = self._sealed.last_on(CHECKPOINT_SUBJECT)
        if last is None:
            return
        try:
            checkpoint, tree = checkpoints.resume(last[1])
        except (SignatureError, ValueError, KeyError, TypeError) as exc:
            log.error("the last local checkpoint is unreadable (%s): rebuilding the tree", exc)
            return
        self.tree, self.checkpoint_size = tree, checkpoint.size

    def extend(self) -> int:
        """Append every record that follows the tree to it; how many were added."""
        added = 0
        for seq, _subject, data in self._records.read_from(self.tree.size + 1):
            if seq != self.tree.size + 1:
                raise RecordCommitError(
                    f"the local log has no record {self.tree.size + 1} (next is {seq}): "
                    "retention removed records that were never sealed"
                )
            self.tree.append(merkle.leaf_hash(data))
            added += 1
        return added

    async def seal(self) -> bytes | None:
        """A checkpoint of everything appended so far, if anything was; None otherwise."""
        self.extend()
        if self.tree.size == self.checkpoint_size:
            return None
        checkpoint = checkpoints.Checkpoint(
            self._region, self.tree.size, self.tree.root(), int(time.time() * 1000)
        )
        data = checkpoints.encode(checkpoint, self._key, self.tree)
        await self._sealed.append(CHECKPOINT_SUBJECT, data, f"ckpt-{checkpoint.size}")
        self.checkpoint_size = checkpoint.size
        return data

    async def run(self, stop: asyncio.Event) -> None:
        """Seal every EVERY_S until `stop`; what goes wrong is logged and tried again."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(EVERY_S):
                    await stop.wait()
            try:
                await self.seal()
            except RecordCommitError as exc:
                log.error("local checkpoint not written: %s", exc)
        with contextlib.suppress(RecordCommitError):
            await self.seal()  # what was appended before the stop
