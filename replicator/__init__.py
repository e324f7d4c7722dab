"""Central → regional policy fan-out, and the lag it takes to get there.

Reads signed packs from the central `POLICY` stream, verifies each before it goes
anywhere, and writes it into every region's `policy` KV through that region's
JetStream domain. One durable consumer per region, so a region that is down holds
no other back and catches up from where it stopped.

`service.run` is the process (`cordon replicator run`); `publish` is what
`cordon policy publish` uses and `status` what `cordon policy status` reads; `fanout`
carries packs to one region; `observer` turns what replicas report into metrics;
`metrics` the lag.
It imports only `cordon`, never `gateway` (an import-linter contract).
"""

__all__ = ["fanout", "metrics", "observer", "publish", "service", "status"]
