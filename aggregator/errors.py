"""The aggregator's exception hierarchy."""


class AggregatorError(Exception):
    """Base class for errors of the aggregator package."""


class BadSummaryError(AggregatorError):
    """A message in `AUDIT_SUMMARY` is not a summary we can store."""
