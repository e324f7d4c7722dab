"""Gateway metrics (prefix `cordon_`, base units, bounded labels only).

They are made on the first use of any, all together, in prometheus_client's default
registry, which a replica's and a sidecar's `/metrics` serve. The in-process SDK serves
no `/metrics`: its engine calls `off()` first, so an application it governs neither
loads prometheus_client (about 1 MB resident) nor finds Cordon's series in its own
registry, and a call counts nothing. A runtime that serves them calls `on()`, which
makes them even after an `off()` in the same process.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "CIRCUIT_OPEN",
    "COMMIT",
    "COMMIT_FAILURES",
    "CONNECTIONS_CLOSED",
    "CONNECTIONS_OPEN",
    "FAIL_OPEN_ANSWERS",
    "OVERHEAD",
    "PACK_AGE",
    "PACK_DISABLED",
    "PACK_EXPIRED",
    "PACK_REJECTIONS",
    "PACK_REVISION",
    "POLICY_SOURCE_FAILING",
    "REQUESTS",
    "SHIP_BACKLOG",
    "SPOOL_DEPTH",
    "SPOOL_FILL",
    "SPOOL_OLDEST",
    "SPOOL_SHIP_FAILURES",
    "SPOOL_TORN",
    "TOOL_CALLS",
    "TOOL_LATENCY",
    "TOOL_UPSTREAM",
    "UPSTREAM",
    "UPSTREAM_FAILURES",
    "off",
    "on",
]

_LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)

REQUESTS: Counter
OVERHEAD: Histogram
UPSTREAM: Histogram
COMMIT: Histogram
COMMIT_FAILURES: Counter
PACK_REVISION: Gauge
PACK_AGE: Gauge
PACK_EXPIRED: Gauge
PACK_DISABLED: Gauge
PACK_REJECTIONS: Counter
POLICY_SOURCE_FAILING: Gauge
SHIP_BACKLOG: Gauge
CIRCUIT_OPEN: Gauge
UPSTREAM_FAILURES: Counter
SPOOL_DEPTH: Gauge
SPOOL_OLDEST: Gauge
SPOOL_FILL: Gauge
FAIL_OPEN_ANSWERS: Counter
SPOOL_SHIP_FAILURES: Counter
SPOOL_TORN: Counter
CONNECTIONS_OPEN: Gauge
CONNECTIONS_CLOSED: Counter
TOOL_CALLS: Counter
TOOL_LATENCY: Histogram
TOOL_UPSTREAM: Histogram


def _made() -> dict[str, Any]:
    from prometheus_client import Counter, Gauge, Histogram

    return {
        "REQUESTS": Counter(
            "cordon_gateway_requests_total",
            "Requests answered, by route and outcome.",
            ["route", "outcome"],
        ),
        "OVERHEAD": Histogram(
            "cordon_gateway_overhead_seconds",
            "Time the gateway added to a call, upstream time excluded.",
            buckets=_LATENCY_BUCKETS,
        ),
        "UPSTREAM": Histogram(
            "cordon_gateway_upstream_seconds",
            "Time spent waiting on the provider.",
            buckets=_LATENCY_BUCKETS,
        ),
        "COMMIT": Histogram(
            "cordon_gateway_record_commit_seconds",
            "Time to commit a record and get the stream's ack.",
            buckets=_LATENCY_BUCKETS,
        ),
        "COMMIT_FAILURES": Counter(
            "cordon_gateway_record_commit_failures_total", "Records that could not be committed."
        ),
        "PACK_REVISION": Gauge(
            "cordon_gateway_pack_revision", "Revision of the active policy pack."
        ),
        "PACK_AGE": Gauge(
            "cordon_gateway_pack_age_seconds",
            "Seconds since the active policy pack was published (0 for the built-in default).",
        ),
        "PACK_EXPIRED": Gauge(
            "cordon_gateway_pack_expired",
            "1 while the active policy pack has expired (fail-closed packs: every call refused).",
        ),
        "PACK_DISABLED": Gauge(
            "cordon_gateway_pack_disabled",
            "1 while the active policy pack is disabled by its owner (every call refused).",
        ),
        "PACK_REJECTIONS": Counter(
            "cordon_gateway_pack_rejections_total", "Policy packs offered but not activated."
        ),
        "POLICY_SOURCE_FAILING": Gauge(
            "cordon_sidecar_policy_source_failing",
            "1 while a sidecar's policy file or repository cannot be read (the active pack stays).",
        ),
        "SHIP_BACKLOG": Gauge(
            "cordon_sidecar_ship_backlog",
            "Records in a region-mode sidecar's local log not yet shipped to the region's RECORDS.",
        ),
        "CIRCUIT_OPEN": Gauge(
            "cordon_gateway_circuit_open",
            "1 while a provider target's circuit is open.",
            ["target"],
        ),
        "UPSTREAM_FAILURES": Counter(
            "cordon_gateway_upstream_failures_total",
            "Calls to a provider target that failed, by reason (connect, timeout, 5xx, 429).",
            ["target", "reason"],
        ),
        "SPOOL_DEPTH": Gauge(
            "cordon_gateway_spool_depth",
            "Fail-open records waiting on disk for the regional stream.",
        ),
        "SPOOL_OLDEST": Gauge(
            "cordon_gateway_spool_oldest_seconds",
            "Age of the oldest record waiting in the fail-open spool (0 when it is empty).",
        ),
        "SPOOL_FILL": Gauge(
            "cordon_gateway_spool_fill_ratio",
            "How full the fail-open spool file is (0 to 1); at 1 calls under fail-open packs "
            "fail closed.",
        ),
        "FAIL_OPEN_ANSWERS": Counter(
            "cordon_gateway_fail_open_answers_total",
            "Answers released with their record spooled on disk, not yet in the regional stream "
            "(fail-open packs, stream away).",
        ),
        "SPOOL_SHIP_FAILURES": Counter(
            "cordon_gateway_spool_ship_failures_total",
            "Attempts to ship the fail-open spool that stopped on an error (shipping is retried).",
        ),
        "SPOOL_TORN": Counter(
            "cordon_gateway_spool_torn_frames_total",
            "Torn frames (a crash in the middle of an append) cut off the spool when it was "
            "opened.",
        ),
        "CONNECTIONS_OPEN": Gauge(
            "cordon_gateway_connections_open", "HTTP connections open on this replica right now."
        ),
        "CONNECTIONS_CLOSED": Counter(
            "cordon_gateway_connections_closed_total",
            "Connections the replica closed on a caller, by reason: header_timeout (headers not "
            "complete in time), headers_too_large, body_timeout (the body stalled), send_timeout "
            "(the caller stopped reading), over_capacity (beyond max_connections), malformed_http "
            "(not HTTP the parser accepts).",
            ["reason"],
        ),
        # Tool calls (MCP, issue 24): labelled only by names the pack declares ("undeclared"
        # otherwise), so a caller cannot grow the label set.
        "TOOL_CALLS": Counter(
            "cordon_gateway_tool_calls_total",
            "Tool calls answered, by declared server and tool, and outcome.",
            ["server", "tool", "outcome"],
        ),
        "TOOL_LATENCY": Histogram(
            "cordon_gateway_tool_overhead_seconds",
            "Time the gateway added to a tool call (both records included), tool server excluded.",
            ["server"],
            buckets=_LATENCY_BUCKETS,
        ),
        "TOOL_UPSTREAM": Histogram(
            "cordon_gateway_tool_upstream_seconds",
            "Time spent waiting on a tool server, by declared server.",
            ["server"],
            buckets=_LATENCY_BUCKETS,
        ),
    }


_NAMES = tuple(name for name in __all__ if name.isupper())
_real: dict[str, Any] | None = None
_MAKING = threading.Lock()


class _Nothing:
    """A metric that counts nothing: each method of the ones the gateway uses."""

    def labels(self, *values: str) -> _Nothing:
        return self

    def inc(self, amount: float = 1) -> None:
        return None

    def set(self, value: float) -> None:
        return None

    def observe(self, value: float) -> None:
        return None

    def set_function(self, function: Any) -> None:
        return None


def on() -> None:
    """The real metrics in this module's namespace (made once, under a lock: a registry
    takes each name once). What was set on a stand-in before is not carried over."""
    global _real
    with _MAKING:
        if _real is None:
            _real = _made()
    globals().update(_real)


def off() -> None:
    """Stand-ins that count nothing, unless the real ones were made already (then
    something in this process serves them, and they stay)."""
    if _real is None:
        globals().update(dict.fromkeys(_NAMES, _Nothing()))


def __getattr__(name: str) -> Any:
    """The first use of a metric, neither `on()` nor `off()` having run: the real ones."""
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    on()
    return globals()[name]
