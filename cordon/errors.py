"""Every error Cordon raises, in one hierarchy, with the HTTP answer each one is.

Lower-layer errors (nats, orjson, httptools, cryptography, msgpack, PyYAML, psycopg)
are translated into these at the boundary where they happen (`raise X from exc`), so a
caller handles one small, documented set, and `except CordonError` catches them all.
Each class's `status` and `code` (right, below) are what an HTTP surface answers when
it reaches a caller; the gateway's dialects, the audit API and the aggregator all read
them, so none keeps a table of its own [tests/cordon/test_errors.py].

    CordonError ..................................................... 500 internal_error
    ├── ConfigError ................. settings or key material missing or malformed
    │   └── StateDirInUseError ...... another process holds the state directory
    ├── SignatureError .............. a signed envelope, checkpoint or pack does not verify
    ├── ProofError .................. a Merkle proof does not prove what it claims
    ├── UnreadableBundleError ....... an audit bundle is not a bundle at all
    ├── UnreadableJSONError ......... not the strict JSON Cordon reads .. 400 invalid_request
    ├── PackError ................... a policy pack is malformed or may not be activated
    │   ├── DocumentError ........... ... at a path inside the document
    │   └── UnreadablePackError ..... ... the file is unreadable or not YAML
    ├── PolicySourceError ........... a policy file or git repository could not be read
    ├── AuthError ................... no credential, or one we refuse ... 401 invalid_api_key
    │   └── ForbiddenError .......... known, without the right .. 403 permission_denied
    ├── QueryError .................. a read API's query contradicts itself . 400 bad_query
    ├── NotFoundError ............... nothing of that name or range ...... 404 not_found
    ├── NotYetError ................. no checkpoint covers it yet ........ 409 not_yet
    ├── UnavailableError ............ a dependency is away ............... 503 unavailable
    ├── GatewayError ................ the regional data plane (`gateway`)
    │   ├── BadRequestError ......... a body the provider API would not accept . 400 invalid_request
    │   │   ├── BodyTooLargeError ................................... 413 request_too_large
    │   │   ├── JsonRpcError ........ an MCP message refused (a JSON-RPC error code)
    │   │   └── ClientTimeoutError .. the caller stalled sending its body . 408 request_timeout
    │   ├── UnknownModelError ....... no target of the pack serves it ... 404 model_not_found
    │   ├── OutsideResidencyError ... outside the pack's residency ... 403 outside_residency
    │   ├── UpstreamError ........... the provider failed or sent garbage . 502 upstream_broken
    │   │   ├── ToolServerError ... an MCP tool server failed or erred ...... 502 tool_server_error
    │   │   ├── UpstreamTooLargeError .............................. 502 upstream_too_large
    │   │   ├── UpstreamTimeout ....................................... 504 upstream_timeout
    │   │   └── NoTargetAvailableError ... 502 upstream_unavailable (504 when time ran out)
    │   ├── ClassifierUnavailableError ....................... 503 classifier_unavailable
    │   ├── OutputBlockedError ...... a rule blocked it . 403 content_policy_violation
    │   ├── ClientGoneError ......... the caller hung up while we relayed to it
    │   ├── RecordCommitError ....... the record could not be committed . 503 record_commit_failed
    │   │   └── RecordEncodeError ... ... because it could not be encoded or fit the stream
    │   ├── RegionUnreachableError .. the region's NATS is away ....... 503 region_unreachable
    │   ├── ShippingRefusedError .... a sidecar's log and the region disagree: not shipped
    │   ├── SpoolFullError .......... fail-open's spool is full ......... 503 record_commit_failed
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
    │   └── StoreError .......... the view's database is away ...... 503 unavailable
    ├── PolicyBlocked ............... a governed SDK call a rule refused (cordon_sdk)
    ├── TemplateError ............... a NATS config template lacks a placeholder value
    └── ProcessStartError ........... a child process did not become ready in time
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

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
    "JsonRpcError",
    "NoTargetAvailableError",
    "NotFoundError",
    "NotYetError",
    "OutputBlockedError",
    "OutsideResidencyError",
    "PackError",
    "PolicyBlocked",
    "PolicySourceError",
    "ProcessStartError",
    "ProofError",
    "PublishError",
    "QueryError",
    "RecordCommitError",
    "RecordEncodeError",
    "RegionUnreachableError",
    "RegionWriteError",
    "RemoteProtocolError",
    "ReplicatorError",
    "ResponseTimeout",
    "ResponseTooLargeError",
    "ShippingRefusedError",
    "SignatureError",
    "SpoolFullError",
    "StateDirInUseError",
    "StoreError",
    "TemplateError",
    "ToolServerError",
    "UnavailableError",
    "UnknownModelError",
    "UnreadableBundleError",
    "UnreadableJSONError",
    "UnreadablePackError",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamTooLargeError",
]


class CordonError(Exception):
    """Base class for every error Cordon raises.

    `status` and `code` are the HTTP answer when the error reaches a caller: the one
    table every HTTP surface reads (the gateway's dialects, the audit API, the
    aggregator), so a 4xx means the same everywhere. An error that says nothing of its
    own is the server's fault: 500."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"


# -- shared contract (cordon) ----------------------------------------------------------


class ConfigError(CordonError):
    """Settings or key material are missing or malformed."""


class StateDirInUseError(ConfigError):
    """Another process holds the state directory (its lock): two writers would
    interleave one log's frames."""


class SignatureError(CordonError):
    """A signed envelope does not verify against the keys we trust."""


class ProofError(CordonError):
    """A proof does not prove what it claims."""


class UnreadableBundleError(CordonError):
    """The input is not a bundle at all."""


class UnreadableJSONError(CordonError, ValueError):
    """Bytes that are not the strict JSON Cordon reads: invalid UTF-8 or JSON, a lone
    surrogate, a number beyond a double, a repeated key, or nesting past the limit."""

    status = 400
    code = "invalid_request"


class PackError(CordonError):
    """A policy pack is malformed or may not be activated."""


class DocumentError(PackError):
    """A pack document problem at a path inside it (for file:line reporting)."""

    def __init__(self, message: str, path: Sequence[str | int] = ()) -> None:
        super().__init__(message)
        self.path = tuple(path)


class AuthError(CordonError):
    """The caller presented no credential, or one we do not accept."""

    status = 401
    code = "invalid_api_key"


class ForbiddenError(AuthError):
    """The caller's credential is known but does not allow this (role or region)."""

    status = 403
    code = "permission_denied"


class UnreadablePackError(PackError):
    """The file could not be read or is not YAML."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class PolicySourceError(CordonError):
    """A sidecar's policy source (a file, a git repository) could not be read: the
    runtime keeps enforcing the policy it has and says why on its status endpoint."""


class QueryError(CordonError):
    """A read API's request contradicts itself or asks past a declared bound."""

    status = 400
    code = "bad_query"


class NotFoundError(CordonError):
    """Nothing of that name, or in that range."""

    status = 404
    code = "not_found"


class NotYetError(CordonError):
    """Not yet: no checkpoint covers it, or an index is catching up; retry shortly."""

    status = 409
    code = "not_yet"


class UnavailableError(CordonError):
    """A dependency (NATS, a database, the access log) is away: nothing was released."""

    status = 503
    code = "unavailable"


# -- the regional data plane (gateway) -------------------------------------------------


class GatewayError(CordonError):
    """Base class for errors of the regional data plane."""


class BadRequestError(GatewayError):
    """The request body is not something the provider API would accept."""

    status = 400
    code = "invalid_request"


class BodyTooLargeError(BadRequestError):
    """The request body exceeds the configured limit."""

    status = 413
    code = "request_too_large"


class ClientTimeoutError(BadRequestError):
    """The caller sent nothing more of its body for longer than the idle timeout."""

    status = 408
    code = "request_timeout"


class JsonRpcError(BadRequestError):
    """An MCP message the gateway cannot take: answered as a JSON-RPC error with
    `rpc_code` (and the request's id when it could be read)."""

    def __init__(
        self,
        rpc_code: int,
        message: str,
        request_id: str | int | None = None,
        data: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.rpc_code = rpc_code
        self.request_id = request_id
        self.data = data


class UnknownModelError(GatewayError):
    """No target of the active pack serves this model on this API."""

    status = 404
    code = "model_not_found"


class OutsideResidencyError(GatewayError):
    """The pack declares residency and the provider a caller pinned (an in-process SDK
    client's own base URL) is none of its targets: nothing is sent."""

    status = 403
    code = "outside_residency"


class UpstreamError(GatewayError):
    """The model provider could not be reached or answered with garbage."""

    status = 502
    code = "upstream_broken"


class ToolServerError(UpstreamError):
    """An MCP tool server failed. With `rpc_code` it answered a JSON-RPC error (a
    protocol error: its code and `data` are kept to relay them); without, it is
    unavailable: not running, unreachable, silent past its deadline, gone, or its
    answer unreadable."""

    status = 502
    code = "tool_server_error"

    def __init__(self, message: str, rpc_code: int | None = None, data: Any = None) -> None:
        super().__init__(message)
        self.rpc_code = rpc_code
        self.data = data


class UpstreamTooLargeError(UpstreamError):
    """The provider's answer, or one of its stream events, is larger than allowed."""

    status = 502
    code = "upstream_too_large"


class UpstreamTimeout(UpstreamError):
    """The provider did not connect, or did not start answering, in time."""

    status = 504
    code = "upstream_timeout"


class NoTargetAvailableError(UpstreamError):
    """Every target that serves the model failed or is resting."""

    status = 502
    code = "upstream_unavailable"

    def __init__(self, message: str, timed_out: bool, attempts: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.attempts = attempts  # each target tried, and why it failed
        if timed_out:  # the last target's time ran out: a gateway timeout
            self.status, self.code = 504, "upstream_timeout"  # type: ignore[misc]


class ClassifierUnavailableError(GatewayError):
    """The classifier did not give a usable answer in time."""

    status = 503
    code = "classifier_unavailable"


class OutputBlockedError(GatewayError):
    """An output rule with action `block` found what it looks for in the answer."""

    status = 403
    code = "content_policy_violation"

    def __init__(self, rule_id: str) -> None:
        super().__init__(f"answer blocked by policy rule {rule_id}")
        self.rule_id = rule_id


class ClientGoneError(GatewayError):
    """The caller's connection broke while we were relaying to it."""


class RecordCommitError(GatewayError):
    """The decision record could not be committed to the regional stream."""

    status = 503
    code = "record_commit_failed"


class RecordEncodeError(RecordCommitError):
    """The record could not be encoded, or does not fit the stream even as a digest."""


class RegionUnreachableError(GatewayError):
    """The region's record sink and pack source (its NATS) cannot be reached."""

    status = 503
    code = "region_unreachable"


class ShippingRefusedError(GatewayError):
    """A region-mode sidecar will not ship: the region's last record on its subject is
    not in its log (another process publishes as this replica, or the log was replaced).
    Shipping then would skip or misnumber records, so nothing is shipped."""


class SpoolFullError(GatewayError):
    """The spool reached its size limit; nothing more can be answered fail-open."""

    status = 503
    code = "record_commit_failed"


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

    status = 503
    code = "unavailable"


# -- NATS configs and the local topology ---------------------------------------------------


class PolicyBlocked(CordonError):
    """A call through a governed SDK client that a policy rule refused. `cordon_sdk`
    mixes it into the wrapped SDK's own error class for the status, so an application's
    `except openai.APIStatusError` still catches it; `rule` names the rule and
    `record_id` the decision record."""

    rule: str | None = None
    record_id: str | None = None


class TemplateError(CordonError):
    """A NATS config template names a placeholder that was not supplied."""


class ProcessStartError(CordonError):
    """A child process (nats-server, gateway, ...) did not become ready in time."""
