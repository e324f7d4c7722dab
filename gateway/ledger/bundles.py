"""An offline-verifiable bundle (`cordon audit verify`) of a range of a log, from its
audit index: the regional audit API serves it over RECORDS, a sidecar exports it from
its local log. Proofs come from the index's tree, so only the exported records and the
enrolments are read from the log."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from cordon.log import bundle, checkpoints
from gateway.ledger.audit_index import AuditIndex

__all__ = ["Read", "build_bundle"]

# The bytes stored at a sequence; empty if the log no longer holds it (the bundle then
# fails to verify, naming that record, which is what an auditor must see).
Read = Callable[[int], Awaitable[bytes]]


async def build_bundle(
    index: AuditIndex,
    read: Read,
    region: str,
    regional_public_key: bytes,
    first: int,
    last: int,
) -> dict[str, Any]:
    """The bundle for `first`..`last` against the first checkpoint covering `last`, so
    consecutive pages chain; `LookupError` while no checkpoint covers it yet."""
    final = index.first_checkpoint_covering(last)
    if final is None:
        raise LookupError(f"no checkpoint covers seq {last} yet; try again in a second")
    size = checkpoints.unverified(final).size
    if index.size() < size:
        raise LookupError("the audit index is still catching up; try again shortly")
    enrolments = {seq: await read(seq) for seq in index.seqs_of_kind("enrolment", size)}
    wanted = (seq for seq in range(first, last + 1) if seq not in enrolments)
    records = {seq: await read(seq) for seq in wanted}
    return bundle.build(
        region=region,
        regional_public_key=regional_public_key,
        nodes=index,
        checkpoint=final,
        older=index.checkpoints_below(size, 3),
        enrolments=enrolments,
        records=records,
        first=first,
        last=last,
    )
