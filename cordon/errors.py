"""Every error Cordon raises, in one hierarchy.

Lower-layer errors (nats, orjson, httptools, cryptography, msgpack, PyYAML, psycopg)
are translated into these at the boundary where they happen (`raise X from exc`), so a
caller handles one small, documented set, and `except CordonError` catches them all.

    CordonError
    ├── ConfigError ................. settings or key material missing or malformed
    ├── SignatureError .............. a signed envelope, checkpoint or pack does not verify
    ├── ProofError .................. a Merkle proof does not prove what it claims
    ├── UnreadableBundleError ....... an audit bundle is not a bundle at all
    ├── UnreadableJSONError ......... not the strict JSON Cordon reads (also a ValueError)
    ├── PackError ................... a policy pack is malformed or may not be activated
    │   ├── DocumentError ........... ... at a path inside the document
    │   └── UnreadablePackError ..... ... the file is unreadable or not YAML
    ├── AuthError ................... no credential, or one we do not accept (401)
    │   └── ForbiddenError .......... a credential we know, without the right (403)
    ├── GatewayError ................ the regional data plane (`gateway`)
    │   ├── BadRequestError ......... a body the provider API would not accept
    │   │   ├── BodyTooLargeError
    │   │   └── ClientTimeoutError .. the caller stalled while sending its body
    │   ├── UnknownModelError ....... no target of the active pack serves the model
    │   ├── UpstreamError ........... the provider could not be reached or sent garbage
    │   │   ├── UpstreamTooLargeError
    │   │   ├── UpstreamTimeout
    │   │   └── NoTargetAvailableError
    │   ├── ClassifierUnavailableError
    │   ├── OutputBlockedError ...... an output rule blocked the answer
    │   ├── ClientGoneError ......... the caller hung up while we relayed to it
    │   ├── RecordCommitError ....... the decision record could not be committed
    │   │   └── RecordEncodeError ... ... because it could not be encoded or fit the stream
    │   ├── SpoolFullError .......... fail-open's spool is full
    │   └── ForkError ............... another sealer is extending the region's log
    ├── HttpClientError ............. the provider call failed on the wire
    │   ├── ConnectError
    │   │   └── ConnectTimeout
    │   ├── ResponseTimeout
    │   ├── RemoteProtocolError
    │   └── ResponseTooLargeError
    ├── ReplicatorError ............. central -> regional policy fan-out (`replicator`)
    │   ├── PublishError
    │   └── RegionWriteError
    ├── AggregatorError ............. the central cross-region view (`aggregator`)
    │   ├── BadSummaryError
    │   └── StoreError
    ├── TemplateError ............... a NATS config template lacks a placeholder value
    └── ProcessStartError ........... a child process did not become ready in time
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AggregatorError",
    "AuthError",
    "BadRequestError",
    "BadSummaryError",
    "BodyTooLargeError",
    "ClassifierUnavailableError",
    "ClientGoneError",
    "ClientTimeoutError",
    "ConfigError",
    "ConnectError",
    "ConnectTimeout",
    "CordonError",
    "DocumentError",
    "ForbiddenError",
    "ForkError",
    "GatewayError",
    "HttpClientError",
    "NoTargetAvailableError",
    "OutputBlockedError",
    "PackError",
    "ProcessStartError",
    "ProofError",
    "PublishError",
    "RecordCommitError",
    "RecordEncodeError",
    "RegionWriteError",
    "RemoteProtocolError",
    "ReplicatorError",
    "ResponseTimeout",
    "SignatureError",
    "SpoolFullError",
    "StoreError",
    "TemplateError",
    "UnknownModelError",
    "UnreadableBundleError",
    "UnreadableJSONError",
    "UnreadablePackError",
    "UpstreamError",
    "UpstreamTimeout",
]


class CordonError(Exception):
    """Base class for every error Cordon raises."""


# -- shared contract (cordon) ----------------------------------------------------------


class ConfigError(CordonError):
    """Settings or key material are missing or malformed."""


class SignatureError(CordonError):
    """A signed envelope does not verify against the keys we trust."""


class ProofError(CordonError):
    """A proof does not prove what it claims."""


class UnreadableBundleError(CordonError):
    """The input is not a bundle at all."""


class UnreadableJSONError(CordonError, ValueError):
    """Bytes that are not the strict JSON Cordon reads: invalid UTF-8 or JSON, a lone
    surrogate, a number beyond a double, a repeated key, or nesting past the limit."""


class PackError(CordonError):
    """A policy pack is malformed or may not be activated."""


class DocumentError(PackError):
    """A pack document problem at a path inside it (for file:line reporting)."""

    def __init__(self, message: str, path: Sequence[str | int] = ()) -> None:
        super().__init__(message)
        self.path = tuple(path)


class AuthError(CordonError):
    """The caller presented no credential, or one we do not accept."""


class ForbiddenError(AuthError):
    """The caller's credential is known but does not allow this (role or region)."""


class UnreadablePackError(PackError):
    """The file could not be read or is not YAML."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


# -- the regional data plane (gateway) -------------------------------------------------


class GatewayError(CordonError):
    """Base class for errors of the regional data plane."""


class BadRequestError(GatewayError):
    """The request body is not something the provider API would accept."""


class BodyTooLargeError(BadRequestError):
    """The request body exceeds the configured limit."""


class ClientTimeoutError(BadRequestError):
    """The caller sent nothing more of its body for longer than the idle timeout."""


class UnknownModelError(GatewayError):
    """No target of the active pack serves this model on this API."""


class UpstreamError(GatewayError):
    """The model provider could not be reached or answered with garbage."""


class UpstreamTooLargeError(UpstreamError):
    """The provider's answer, or one of its stream events, is larger than allowed."""


class UpstreamTimeout(UpstreamError):
    """The provider did not connect, or did not start answering, in time."""


class NoTargetAvailableError(UpstreamError):
    """Every target that serves the model failed or is resting."""

    def __init__(self, message: str, timed_out: bool, attempts: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.attempts = attempts  # each target tried, and why it failed


class ClassifierUnavailableError(GatewayError):
    """The classifier did not give a usable answer in time."""


class OutputBlockedError(GatewayError):
    """An output rule with action `block` found what it looks for in the answer."""

    def __init__(self, rule_id: str) -> None:
        super().__init__(f"answer blocked by policy rule {rule_id}")
        self.rule_id = rule_id


class ClientGoneError(GatewayError):
    """The caller's connection broke while we were relaying to it."""


class RecordCommitError(GatewayError):
    """The decision record could not be committed to the regional stream."""


class RecordEncodeError(RecordCommitError):
    """The record could not be encoded, or does not fit the stream even as a digest."""


class SpoolFullError(GatewayError):
    """The spool reached its size limit; nothing more can be answered fail-open."""


class ForkError(GatewayError):
    """Another checkpoint landed since ours: another sealer is running."""


# -- the gateway's provider HTTP client ------------------------------------------------


class HttpClientError(CordonError):
    """The call failed before or while the answer arrived."""


class ConnectError(HttpClientError):
    """No connection could be made to the provider."""


class ConnectTimeout(ConnectError):
    """The connection was not made within the connect timeout."""


class ResponseTimeout(HttpClientError):
    """No first byte within the first-byte timeout, or not done within the total one."""


class RemoteProtocolError(HttpClientError):
    """The provider closed the connection or sent something that is not HTTP."""


class ResponseTooLargeError(HttpClientError):
    """The provider's headers or body went past the limit the caller set."""


# -- central processes (replicator, aggregator) ----------------------------------------


class ReplicatorError(CordonError):
    """Base class for errors of the replicator."""


class PublishError(ReplicatorError):
    """A pack could not be published to the central `POLICY` stream."""


class RegionWriteError(ReplicatorError):
    """A region's `policy` KV refused or did not answer a write."""


class AggregatorError(CordonError):
    """Base class for errors of the aggregator."""


class BadSummaryError(AggregatorError):
    """A message in `AUDIT_SUMMARY` is not a summary we can store."""


class StoreError(AggregatorError):
    """The view's database refused or could not be reached."""


# -- the local topology (cordon dev) ---------------------------------------------------


class TemplateError(CordonError):
    """A NATS config template names a placeholder that was not supplied."""


class ProcessStartError(CordonError):
    """A child process (nats-server, gateway, ...) did not become ready in time."""
