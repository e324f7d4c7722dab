"""Where a region-mode sidecar resumes shipping: always after the record the region
holds last, found by its id; never by its number alone (a void committed late sits
after higher numbers), and never at all when the region holds a record this log does
not (another process publishing as this replica): then nothing is skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from cordon.errors import ShippingRefusedError
from cordon.log import envelope
from cordon.log.keys import SigningKey
from gateway.records.local_log import LocalLog
from gateway.sidecar.region import _after

pytestmark = pytest.mark.fast

SUBJECT = "cordon.rec.eu-west.sidecar-1"
KEY = SigningKey.generate()


def record(number: int, kind: str = "decision") -> tuple[str, bytes]:
    record_id = f"rec-{number}-{kind}"
    payload = {"id": record_id, "kind": kind, "replica_seq": number}
    return record_id, envelope.seal(payload, KEY).encode()


async def log_of(tmp_path: Path, numbers: list[tuple[int, str]]) -> LocalLog:
    # No dedupe window: the region's last id is found the way it is after a long outage.
    log = LocalLog(tmp_path / "records", dedupe_window=0)
    for number, kind in numbers:
        record_id, data = record(number, kind)
        await log.append(SUBJECT, data, record_id)
    return log


async def test_a_late_void_before_the_regions_last_is_not_stepped_over(tmp_path: Path) -> None:
    # Numbers 1, 2, 4, 5, then the void of 3 (committed late), 6, 7.
    order = [(1, "decision"), (2, "decision"), (4, "decision"), (5, "decision")]
    log = await log_of(tmp_path, [*order, (3, "void"), (6, "decision"), (7, "decision")])
    last_id, last = record(4)  # the region holds up to 4: 5, the void of 3, 6, 7 remain
    cursor = _after(log, SUBJECT, last_id, last)
    remaining = [e.msg_id for e in log.entries(cursor)]
    assert remaining == ["rec-5-decision", "rec-3-void", "rec-6-decision", "rec-7-decision"]
    await log.close()


async def test_a_region_holding_a_record_this_log_never_wrote_stops_shipping(
    tmp_path: Path,
) -> None:
    log = await log_of(tmp_path, [(n, "decision") for n in range(1, 51)])
    _, theirs = record(100)  # another sidecar, same replica name, further along
    with pytest.raises(ShippingRefusedError, match="another process publishes"):
        _after(log, SUBJECT, "someone-elses-id", theirs)
    await log.close()
