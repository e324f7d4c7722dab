"""Replicator metrics (prefix `cordon_`; labels `region`, and `replica` for what each
replica reports: both sets bounded by the deployment)."""

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
WRITE = Histogram(
    "cordon_policy_write_seconds",
    "From a pack's commit in POLICY to its write in the region's policy KV.",
    ["region"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
PROPAGATION = Histogram(
    "cordon_policy_propagation_seconds",
    "From a pack's commit in POLICY to its activation at a replica, as replicas report it.",
    ["region"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
REPLICA_REVISION = Gauge(
    "cordon_policy_replica_revision",
    "The pack revision a replica last reported it enforces.",
    ["region", "replica"],
)
REPLICA_REPORT_AGE = Gauge(
    "cordon_policy_replica_report_age_seconds",
    "Seconds since a replica last reported (replicas report every 10 s).",
    ["region", "replica"],
)
STALE_REPLICAS = Gauge(
    "cordon_policy_stale_replicas",
    "Replicas in the region that stopped reporting (silent for 60 s or more).",
    ["region"],
)
HEARTBEAT_AGE = Gauge(
    "cordon_policy_heartbeat_age_seconds",
    "Seconds since the replicator last wrote a heartbeat into the region.",
    ["region"],
)
ERRORS = Counter("cordon_replicator_errors_total", "Replication errors by reason.", ["reason"])
WRITES = Counter(
    "cordon_replicator_writes_total",
    "Packs this instance wrote into a region's policy KV (not counting skips).",
    ["region"],
)
ACTIVE = Gauge(
    "cordon_replicator_active",
    "1 while this instance holds the replicator lease and writes, 0 on standby.",
)
ROLLOUT_WAVE = Gauge(
    "cordon_policy_rollout_wave",
    "The newest open wave (from 0) of the pack's latest staged rollout.",
    ["pack"],
)
ROLLOUT_HALTED = Gauge(
    "cordon_policy_rollout_halted",
    "1 while the pack's rollout is halted (a condition met, or an operator's halt).",
    ["pack"],
)
