"""The replicator's exception hierarchy."""


class ReplicatorError(Exception):
    """Base class for errors of the replicator package."""


class PublishError(ReplicatorError):
    """A pack could not be published to the central `POLICY` stream."""


class RegionWriteError(ReplicatorError):
    """A region's `policy` KV refused or did not answer a write."""
