"""The central cross-region audit view.

It sees only what may cross regions: metadata-only summaries and signed checkpoints,
sourced from every region's `SUMMARY` into the central `AUDIT_SUMMARY` stream. It never
connects to a regional `AUDIT` account, and imports only `cordon`, never `gateway` (an
import-linter contract).

`api.run` is the process (`cordon aggregator run`); `consumer` reads `AUDIT_SUMMARY`
into the `store`; `witness` rebuilds each region's tree and checks its checkpoints.
"""

__all__ = ["api", "consumer", "metrics", "store", "witness"]
