"""Decision records: built from a call (`record`), signed and committed to the
regional `RECORDS` stream before the answer is released (`Recorder`), or spooled to
disk under fail-open (`Spool`)."""

from gateway.records import record, recorder, spool
from gateway.records.record import CallFacts, build, pack_rejection, rfc3339_now
from gateway.records.recorder import Recorder
from gateway.records.spool import Spool

__all__ = [
    "CallFacts",
    "Recorder",
    "Spool",
    "build",
    "pack_rejection",
    "record",
    "recorder",
    "rfc3339_now",
    "spool",
]
