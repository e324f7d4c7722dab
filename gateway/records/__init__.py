"""Decision records: built from a call (`record`), signed and committed to the
replica's sink — the regional `RECORDS` stream (`NatsSink`) — before the answer is
released (`Recorder`), or spooled to disk under fail-open (`Spool`); a sidecar in local
mode commits to its own disk instead (`LocalLog`, `LocalSink`).

`sink` (`NatsSink`, `RecordSink`) is imported on first use (PEP 562): it loads the
NATS client, which a local sidecar never dials."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gateway.records import local_log, record, recorder, spool
from gateway.records.local_log import LocalLog, LocalSink
from gateway.records.record import CallFacts, build, pack_rejection, rfc3339_now
from gateway.records.recorder import Recorder
from gateway.records.spool import Spool

if TYPE_CHECKING:
    from gateway.records import sink
    from gateway.records.sink import NatsSink, RecordSink

__all__ = [
    "CallFacts",
    "LocalLog",
    "LocalSink",
    "NatsSink",
    "RecordSink",
    "Recorder",
    "Spool",
    "build",
    "local_log",
    "pack_rejection",
    "record",
    "recorder",
    "rfc3339_now",
    "sink",
    "spool",
]


def __getattr__(name: str) -> Any:
    if name not in ("sink", "NatsSink", "RecordSink"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module("gateway.records.sink")
    return module if name == "sink" else getattr(module, name)
