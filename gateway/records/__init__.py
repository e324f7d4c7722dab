"""Decision records: built from a call (`record`), signed and committed to the
replica's sink — the regional `RECORDS` stream (`NatsSink`) — before the answer is
released (`Recorder`), or spooled to disk under fail-open (`Spool`); a sidecar in local
mode commits to its own disk instead (`LocalLog`, `LocalSink`)."""

from gateway.records import local_log, record, recorder, sink, spool
from gateway.records.local_log import LocalLog, LocalSink
from gateway.records.record import CallFacts, build, pack_rejection, rfc3339_now
from gateway.records.recorder import Recorder
from gateway.records.sink import NatsSink, RecordSink
from gateway.records.spool import Spool

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
