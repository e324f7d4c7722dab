"""Aggregator metrics (prefix `cordon_`)."""

from prometheus_client import Counter, Gauge

CONSUMED = Counter(
    "cordon_aggregator_summaries_total",
    "Messages consumed from AUDIT_SUMMARY (summaries and checkpoints).",
)
BAD_SUMMARIES = Counter(
    "cordon_aggregator_bad_summaries_total", "Messages in AUDIT_SUMMARY that were not summaries."
)
CHECKPOINTS_VERIFIED = Counter(
    "cordon_aggregator_checkpoints_verified_total",
    "Regional checkpoints the witness recomputed from summaries and found whole.",
    ["region"],
)
CHECKPOINTS_FAILED = Counter(
    "cordon_aggregator_checkpoints_failed_total",
    "Regional checkpoints the witness could not verify (missing or altered summaries, "
    "wrong root, bad signature).",
    ["region"],
)
SUMMARY_GAPS = Gauge(
    "cordon_aggregator_summary_gaps",
    "Stretches of missing summaries the witness has seen, per region.",
    ["region"],
)
SUMMARIES_REJECTED = Counter(
    "cordon_aggregator_summaries_rejected_total",
    "Summaries the region's signed summary chain does not vouch for (forged, or unverifiable "
    "after a gap): kept out of the view.",
    ["region"],
)
NEWEST_SUMMARY = Gauge(
    "cordon_aggregator_newest_summary_timestamp_seconds",
    "Time (Unix seconds) of the newest summary of the region in the central view.",
    ["region"],
)
PENDING = Gauge(
    "cordon_aggregator_pending_messages",
    "Messages in AUDIT_SUMMARY not yet delivered to the aggregator (its backlog).",
)
