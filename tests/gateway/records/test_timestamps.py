"""A record's `ts` is RFC 3339 in UTC to the microsecond, read back as the time it was
made, across the second it is cached for."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from gateway.records.record import rfc3339_now


@pytest.mark.parametrize("at", [0.0, 1_798_761_599.999_999, 1_798_761_600.25, 1_798_761_600.5])
def test_a_records_time_reads_back_as_when_it_was_made(
    at: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "time", lambda: at)
    stamp = rfc3339_now()
    assert stamp.endswith("+00:00") and len(stamp) == len("2026-12-31T23:59:59.999999+00:00")
    assert abs(datetime.fromisoformat(stamp).timestamp() - at) < 2e-6
    assert datetime.fromisoformat(stamp).tzinfo == UTC


def test_consecutive_times_are_in_order_across_seconds() -> None:
    stamps = [rfc3339_now() for _ in range(2000)]
    times = [datetime.fromisoformat(stamp) for stamp in stamps]
    assert times == sorted(times)
