"""The gateway's exception hierarchy.

Lower-layer errors (nats, aiohttp, cryptography, msgpack) are translated into these at
the boundary where they happen, so callers handle one small, documented set.
"""


class GatewayError(Exception):
    """Base class for every error the gateway package raises."""


class ConfigError(GatewayError):
    """Settings or key material are missing or malformed."""


class AuthError(GatewayError):
    """The caller presented no credential, or one we do not accept."""


class BadRequestError(GatewayError):
    """The request body is not something the provider API would accept."""


class BodyTooLargeError(BadRequestError):
    """The request body exceeds the configured limit."""


class UpstreamError(GatewayError):
    """The model provider could not be reached or answered with garbage."""


class RecordCommitError(GatewayError):
    """The decision record could not be committed to the regional stream."""


class PackError(GatewayError):
    """A policy pack is malformed or may not be activated."""


class SignatureError(GatewayError):
    """A signed envelope does not verify against the keys we trust."""
