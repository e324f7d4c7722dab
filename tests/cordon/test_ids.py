"""UUIDv7 record ids."""

from __future__ import annotations

import time
import uuid

from cordon.ids import uuid7


def test_uuid7_has_version_and_variant_and_sorts_by_time() -> None:
    first = uuid7()
    time.sleep(0.002)
    second = uuid7()
    parsed = uuid.UUID(first)
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert first < second
    assert abs((parsed.int >> 80) - time.time_ns() // 1_000_000) < 1_000
    assert len({uuid7() for _ in range(1000)}) == 1000
