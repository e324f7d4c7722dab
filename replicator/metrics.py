"""Replicator metrics (prefix `cordon_`, label `region` only: a bounded set)."""

from prometheus_client import Counter, Gauge, Histogram

LAG_SECONDS = Gauge(
    "cordon_policy_replication_lag_seconds",
    "Age of the oldest pack committed centrally but not yet written to the region.",
    ["region"],
)
LAG_REVISIONS = Gauge(
    "cordon_policy_replication_lag_revisions",
    "Packs committed centrally and not yet written to the region.",
    ["region"],
)
PROPAGATION = Histogram(
    "cordon_policy_propagation_seconds",
    "From a pack's commit in POLICY to its write in the region's policy KV.",
    ["region"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
HEARTBEAT_AGE = Gauge(
    "cordon_policy_heartbeat_age_seconds",
    "Seconds since the replicator last wrote a heartbeat into the region.",
    ["region"],
)
ERRORS = Counter("cordon_replicator_errors_total", "Replication errors by reason.", ["reason"])
