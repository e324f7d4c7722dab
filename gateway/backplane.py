"""A replica's region: where its records go, where its packs come from, and what it
tells the replicator. The seam between the runtime and the regional NATS.

`NatsBackplane` (`gateway.nats_backplane`, kept apart so that this seam loads no NATS
client) is the region's two NATS accounts (production): records and the key's
enrolment in AUDIT, the policy and applied buckets in XR. Other places Cordon runs (a
sidecar with a local log, an in-process SDK) and the fast test lane
(`cordon_dev.inprocess`) plug in their own; every claim about NATS is tested on real
servers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gateway.records.sink import RecordSink

__all__ = ["Backplane", "PackUpdate"]


@dataclass(frozen=True)
class PackUpdate:
    """One entry of the replica's pack key. `value` None marks a (re)started watch: the
    replica then reports what it enforces, since the replicator may have missed it."""

    value: bytes | None
    replayed: bool = False  # kept history, delivered before anything new
    # A sidecar's pack read from a file or a git commit: where it came from (the record
    # carries it), or why what was found there was refused before it could be offered.
    origin: dict[str, str] | None = None
    refused: str | None = None


class Backplane(Protocol):
    @property
    def ready(self) -> bool:
        """Connected: records can be committed and packs followed."""
        ...

    @property
    def watching(self) -> bool:
        """The pack watch is live: while it is not, the replica does not report itself
        current (the replicator then sees it as stale)."""
        ...

    async def connect(self) -> RecordSink:
        """Connect; the replica's record sink. `RegionUnreachableError` if the region
        is away (the runtime tries again)."""
        ...

    def pack_updates(self, pack_name: str) -> AsyncIterator[PackUpdate]:
        """Every revision of `pack_name`: the kept history first, then each new one;
        forever, across reconnects."""
        ...

    async def enrol(self, key_id: str, enrolment: bytes) -> None:
        """Publish the signing key's enrolment, so the region's auditors trust it."""
        ...

    async def report_applied(self, replica: str, report: bytes) -> None:
        """Tell the replicator what this replica enforces; `RegionUnreachableError` if
        that side of the region is away."""
        ...

    async def records_retention_days(self) -> float | None:
        """How long the region keeps records (None: forever)."""
        ...

    async def close(self) -> None: ...
