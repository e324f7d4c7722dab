"""Aggregator metrics (prefix `cordon_`)."""

from prometheus_client import Counter, Gauge

CONSUMED = Counter("cordon_aggregator_summaries_total", "Summaries stored in the view.")
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
