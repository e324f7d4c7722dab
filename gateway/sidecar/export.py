"""`cordon sidecar export`: a range of a sidecar's local log as the same offline bundle
a region's audit API exports, for `cordon audit verify` with the log's pinned root key
(`cordon sidecar key`).

It reads the state directory as it is, alongside a running sidecar or after it
stopped, and writes nothing there: the audit index it needs is built in a temporary
file from the records and the checkpoints.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from gateway.ledger.audit_index import AuditIndex
from gateway.ledger.bundles import build_bundle
from gateway.records.local_log import LocalLog
from gateway.sidecar.audit import LogCheckpoints

__all__ = ["export_bundle"]


async def export_bundle(
    state_dir: Path, region: str, root_public_key: bytes, first: int, last: int | None
) -> dict[str, Any]:
    """Records `first`..`last` (the newest sealed record if None) of the log in
    `state_dir`; `LookupError` if no checkpoint covers the range yet."""
    records = LocalLog(state_dir / "records", read_only=True)
    sealed = LocalLog(state_dir / "checkpoints", read_only=True)
    with tempfile.TemporaryDirectory() as scratch:
        index = AuditIndex(Path(scratch) / "index.sqlite3")
        try:
            await LogCheckpoints(records, sealed).refresh(index)  # as the audit routes do
            newest = index.latest_checkpoint()
            if last is None:
                if newest is None:
                    raise LookupError("the log has no checkpoint yet; try again in a second")
                from cordon.log import checkpoints

                last = checkpoints.unverified(newest).size

            async def read(seq: int) -> bytes:
                found = records.get(seq)
                return found[1] if found is not None else b""

            return await build_bundle(index, read, region, root_public_key, first, last)
        finally:
            index.close()
            await records.close()
            await sealed.close()
