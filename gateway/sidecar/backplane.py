"""A local-mode sidecar's region, all of it on its own disk: records in the embedded
log (`gateway.records.local_log`), its key's enrolment at the head of that log, and
packs offered from its file or its repository (`gateway.sidecar.policy`).

It satisfies `gateway.backplane.Backplane`, so the runtime that serves a replica
serves the sidecar unchanged: the same recorder numbers and signs, the same
activation keeps the last good pack, the same calls commit before they answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from cordon.nats import subjects
from gateway.backplane import PackUpdate
from gateway.records.local_log import LocalLog, LocalSink

__all__ = ["LocalBackplane"]


class LocalBackplane:
    """Records carry a regional replica's subjects (`cordon.nats.subjects`, which loads
    no NATS client), so a log shipped to the region, or read by the audit routes, is
    read the same way."""

    def __init__(self, log: LocalLog, region: str, replica: str) -> None:
        self.log = log
        self._region, self._replica = region, replica
        self._updates: asyncio.Queue[PackUpdate] = asyncio.Queue()

    @property
    def ready(self) -> bool:
        return True  # the disk is the region: there is no link to lose

    @property
    def watching(self) -> bool:
        return True

    async def connect(self) -> LocalSink:
        return LocalSink(self.log, subjects.record_subject(self._region, self._replica))

    def offer(self, update: PackUpdate) -> None:
        """A configuration read from the file or the repository, for the runtime."""
        self._updates.put_nowait(update)

    async def pack_updates(self, pack_name: str) -> AsyncIterator[PackUpdate]:
        yield PackUpdate(None)
        while True:
            yield await self._updates.get()

    async def enrol(self, key_id: str, enrolment: bytes) -> None:
        """Once per key: a restart finds its enrolment already in the log."""
        subject = subjects.enrolment_subject(self._region)
        seq = 1
        while (found := self.log.next_on(subject, seq)) is not None:
            if found[1] == enrolment:
                return
            seq = found[0] + 1
        await self.log.append(subject, enrolment, f"enrol-{key_id}")

    async def report_applied(self, replica: str, report: bytes) -> None:
        return None  # no replicator to tell: the status endpoint says what is enforced

    async def records_retention_days(self) -> float | None:
        return None  # the log keeps what the active pack asks (`Sidecar._retention`)

    async def close(self) -> None:
        return None
