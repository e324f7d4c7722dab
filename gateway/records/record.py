"""Decision records: the eight fields regulators ask for, plus what proves them.

Schema version 1 (docs/records.md describes every field). A record is a msgpack
map; it is sealed into a signed envelope (cordon.log.envelope) and committed to the
regional `RECORDS` stream.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from cordon.ids import uuid7
from cordon.packs import Pack
from gateway.identity import Identity
from gateway.policy import Decision

SCHEMA_VERSION = 1

# The records a call makes (`build`): its decision, and for a stream the intent before
# its first byte. A replica's other records (`pack_rejection` below, the recorder's
# `void`) and the ledger's (`access`, `enrolment`) are built where they are written.
RecordKind = Literal["decision", "intent"]


@dataclass
class CallFacts:
    """What happened on the wire, gathered while the call was served."""

    endpoint: str
    model: str
    route: str = ""
    route_region: str | None = None  # the answering target's region, as the pack names it
    model_id: str | None = None  # the route's configured entry the model matched
    status: int = 0
    stream: bool = False
    latency_ms: float = 0.0
    upstream_ms: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    attempts: list[str] = field(default_factory=list)
    scanned_chars: int | None = None
    error: str | None = None
    trace_id: str | None = None  # the call's OpenTelemetry trace, when tracing is on
    # The in-process SDK's record of this same call, when a governed client's call came
    # through here (its `x-cordon-sdk-record` header): ties the two records together.
    sdk_record: str | None = None


def rfc3339_now() -> str:
    """Now, as `datetime.isoformat` writes it in UTC to the microsecond; the date and
    time to the second are formatted once a second (a record is made on every call)."""
    now = time.time()
    second = int(now)
    cached = _LAST_SECOND[0]
    if cached[0] != second:  # replaced whole: another thread reads one pair or the other
        stamp = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        cached = _LAST_SECOND[0] = (second, stamp)
    return f"{cached[1]}.{int((now - second) * 1_000_000):06d}+00:00"


_LAST_SECOND: list[tuple[int, str]] = [(-1, "")]  # what `rfc3339_now` formatted last


def build(
    *,
    record_id: str,
    region: str,
    replica: str,
    identity: Identity,
    pack: Pack,
    decision: Decision,
    facts: CallFacts,
    content: dict[str, Any] | None,
    classification: str = "internal",
    kind: RecordKind = "decision",
    intent: str | None = None,
    tool: dict[str, Any] | None = None,
    enforced_by: str = "gateway",
) -> dict[str, Any]:
    """The record payload, minus `replica_seq` (the recorder assigns it at commit).

    `kind` is "decision" (a call's outcome) or "intent" (a stream about to be released:
    who asked what under which pack, committed before its first byte; its outcome is
    "pending" and the decision record that completes it names it in `intent`).
    A tool call's record (issue 24) also holds `tool`: server, tool, whether the pack
    declares them, and digests of the arguments sent and the result received."""
    record = {
        "v": SCHEMA_VERSION,
        "kind": kind,
        "id": record_id,
        "intent": intent,
        "ts": rfc3339_now(),
        "region": region,
        "replica": replica,
        "enforced_by": enforced_by,  # gateway, sidecar or sdk: where the pack was enforced
        # the eight fields
        "person": identity.person,
        "agent": identity.agent,
        "roles": list(identity.roles),
        "scopes": list(identity.scopes),
        "classification": classification,
        "pack": _pack(pack),
        "model": facts.model,
        "model_id": facts.model_id,
        "route": facts.route,
        "route_region": facts.route_region,
        "trace_id": facts.trace_id,
        "outcome": "pending" if kind == "intent" else decision.outcome,
        "rules": decision.rules,
        "flags": decision.flags,
        # supporting facts
        "identity_method": identity.method,
        "endpoint": facts.endpoint,
        "stream": facts.stream,
        "redactions": decision.redactions,
        "status": facts.status,
        "error": facts.error,
        "attempts": facts.attempts,
        "scanned_chars": facts.scanned_chars,
        "tokens": {"prompt": facts.prompt_tokens, "completion": facts.completion_tokens},
        "latency_ms": round(facts.latency_ms, 3),
        "upstream_ms": round(facts.upstream_ms, 3),
        "fail_mode": pack.fail_mode,
        "record_content": pack.record_content,
        "content": content if pack.record_content != "none" else None,
    }
    if tool is not None:
        record["tool"] = tool
    if facts.sdk_record is not None:
        record["sdk_record"] = facts.sdk_record
    return record


def pack_rejection(
    *, region: str, replica: str, active: Pack, claimed: dict[str, Any], reason: str
) -> dict[str, Any]:
    """The record of a policy pack this replica refused to activate."""
    return {
        "v": SCHEMA_VERSION,
        "kind": "pack_rejection",
        "id": uuid7(),
        "ts": rfc3339_now(),
        "region": region,
        "replica": replica,
        "rejected": claimed,
        "reason": reason,
        "pack": _pack(active),
    }


def _pack(pack: Pack) -> dict[str, Any]:
    """The policy version: name, revision, content hash, and where a sidecar read it."""
    version: dict[str, Any] = {"name": pack.name, "revision": pack.revision, "hash": pack.hash}
    if pack.origin:
        version["origin"] = pack.origin
    return version
