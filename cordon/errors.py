"""Errors raised while planning or running the local topology."""


class CordonError(Exception):
    """Base class for errors of the `cordon` umbrella package."""


class TemplateError(CordonError):
    """A NATS config template names a placeholder that was not supplied."""


class ProcessStartError(CordonError):
    """A child process (nats-server, gateway, ...) did not become ready in time."""
