"""Aggregator metrics (prefix `cordon_`)."""

from prometheus_client import Counter

CONSUMED = Counter("cordon_aggregator_summaries_total", "Summaries stored in the view.")
BAD_SUMMARIES = Counter(
    "cordon_aggregator_bad_summaries_total", "Messages in AUDIT_SUMMARY that were not summaries."
)
