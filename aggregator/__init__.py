"""The central cross-region audit view.

It sees only what may cross regions: metadata-only summaries and signed checkpoints,
sourced from every region's `SUMMARY` into the central `AUDIT_SUMMARY` stream. It never
connects to a regional `AUDIT` account, and imports only `cordon`, never `gateway` (an
import-linter contract).

`api.run` is the process (`cordon aggregator run`), routes over a `ViewState`;
`consumer` reads `AUDIT_SUMMARY` into the `store`: its writer (`ingest`) and query side
(`queries`) over one `schema`; `web` is the page, `chart` its plots; `witness` rebuilds
each region's tree and checks its checkpoints.
"""

__all__ = [
    "api",
    "chart",
    "consumer",
    "database",
    "ingest",
    "metrics",
    "queries",
    "schema",
    "store",
    "web",
    "witness",
]
