"""Decision records: the eight fields regulators ask for, plus what proves them.

Schema version 1. A record is a msgpack map; it is sealed into a signed envelope
(gateway.envelope) and committed to the regional `RECORDS` stream.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.ids import uuid7
from gateway.packs import Pack
from gateway.policy import Decision
from gateway.settings import ApiKeyIdentity

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class CallFacts:
    """What happened on the wire, gathered while the call was served."""

    model: str
    route: str
    status: int
    latency_ms: float
    upstream_ms: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def rfc3339_now() -> str:
    return datetime.fromtimestamp(time.time(), UTC).isoformat(timespec="microseconds")


def build(
    *,
    region: str,
    replica: str,
    identity: ApiKeyIdentity,
    pack: Pack,
    decision: Decision,
    facts: CallFacts,
    content: dict[str, Any] | None,
    classification: str = "internal",
) -> dict[str, Any]:
    """The record payload, minus `replica_seq` (the recorder assigns it at commit)."""
    return {
        "v": SCHEMA_VERSION,
        "kind": "decision",
        "id": uuid7(),
        "ts": rfc3339_now(),
        "region": region,
        "replica": replica,
        # the eight fields
        "person": identity.person,
        "agent": identity.agent,
        "roles": list(identity.roles),
        "scopes": list(identity.scopes),
        "classification": classification,
        "pack": {"name": pack.name, "revision": pack.revision, "hash": pack.hash},
        "model": facts.model,
        "route": facts.route,
        "outcome": decision.outcome,
        "rules": decision.rules,
        # supporting facts
        "redactions": decision.redactions,
        "status": facts.status,
        "tokens": {"prompt": facts.prompt_tokens, "completion": facts.completion_tokens},
        "latency_ms": round(facts.latency_ms, 3),
        "upstream_ms": round(facts.upstream_ms, 3),
        "fail_mode": pack.fail_mode,
        "record_content": pack.record_content,
        "content": content if pack.record_content != "none" else None,
    }
