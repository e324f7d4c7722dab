"""Regional processes that read full records and say what may leave the region.

`sealer` (`cordon gateway seal`) extends the region's Merkle log in stream order and
publishes signed checkpoints and metadata-only `summaries`; `audit_index` keeps the
tree and a query index in SQLite; `audit_api` (`cordon gateway audit-api`) serves
auditors, routes over an `audit_state.AuditState` (its record source, `access` log and
checkpoints). Each process imports only its own module, so none loads the others.
"""

__all__ = ["access", "audit_api", "audit_index", "audit_state", "bundles", "sealer", "summaries"]
