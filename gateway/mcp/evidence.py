"""The records of one tool call: evidence before the side effect, and after it.

The intent record — who asks which tool of which server, under which pack, with a
digest of the arguments the tool will see — is committed to the region's RECORDS
stream before the call is forwarded; if it cannot be (and the pack is not
fail-open) the tool is never called. The final record — its outcome, a digest of
the result, what was redacted, how long it took — is committed before the result is
released. A refused call has only its final record: nothing was forwarded.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from cordon import jsoncodec
from cordon.ids import uuid7
from gateway import metrics, records
from gateway.identity import Identity
from gateway.policy import Decision, Outcome
from gateway.policy.activation import Active
from gateway.records.record import RecordKind
from gateway.runtime import Runtime
from gateway.telemetry import NO_SPAN, CallSpan

__all__ = ["ToolCall", "digest"]


def digest(value: Any) -> str:
    """A digest of a JSON value as the gateway sent or received it."""
    return "sha256:" + hashlib.sha256(jsoncodec.dumps(value)).hexdigest()


@dataclass
class ToolCall:
    """One `tools/call` (or a server's request to the agent) on its way through."""

    runtime: Runtime
    identity: Identity
    active: Active
    endpoint: str  # /mcp or /mcp/<server>
    server: str
    tool: str
    server_declared: bool = False
    declared: bool = False  # the pack names this server and tool
    method: str = "tools/call"
    decision: Decision = field(default_factory=Decision)
    started: float = field(default_factory=time.perf_counter)
    record_id: str = field(default_factory=uuid7)
    intent_id: str | None = None
    arguments: Any = None  # as the tool sees them
    arguments_digest: str | None = None
    result_digest: str | None = None
    released: Any = None  # what the agent gets, for `record_content`
    error: str | None = None
    upstream_ms: float = 0.0
    span: CallSpan = NO_SPAN  # its trace (gateway.telemetry), when tracing is on

    @property
    def fail_open(self) -> bool:
        return self.active.pack.fail_mode == "open"

    def can_record(self) -> bool:
        return self.runtime.can_record(self.fail_open)

    async def commit_intent(self) -> int | None:
        """Commit the intent; `RecordCommitError` if it could not be (nor spooled)."""
        self.intent_id = uuid7()
        with self.span.child("cordon.record.commit"):
            return await self.runtime.commit(self.record("intent"), self.fail_open)

    async def commit(self, outcome: Outcome | None = None, error: str | None = None) -> int | None:
        """Commit the final record; `RecordCommitError` if it could not be. The call's
        span (when traced) ends with it, naming the record."""
        if outcome is not None:
            self.decision.outcome = outcome
        self.error = error or self.error
        try:
            with self.span.child("cordon.record.commit"):
                seq = await self.runtime.commit(self.record(), self.fail_open)
        finally:
            attributes = {
                "cordon.record.id": self.record_id,
                "cordon.outcome": self.decision.outcome,
            }
            self.span.set(attributes)
            self.span.end(self.error if self.decision.outcome != "allow" else None)
        metrics.TOOL_CALLS.labels(self.labels_server, self.labels_tool, self.decision.outcome).inc()
        metrics.TOOL_LATENCY.labels(self.labels_server).observe(self.added_s)
        return seq

    @property
    def labels_server(self) -> str:
        return self.server if self.server_declared else "undeclared"

    @property
    def labels_tool(self) -> str:
        return self.tool if self.declared else "undeclared"

    @property
    def added_s(self) -> float:
        """The gateway's own time in this call: all of it but the tool server's."""
        return max(0.0, time.perf_counter() - self.started - self.upstream_ms / 1000)

    def record(self, kind: RecordKind = "decision") -> dict[str, Any]:
        intent = kind == "intent"
        facts = records.CallFacts(
            endpoint=self.endpoint,
            model="",
            route=f"mcp:{self.labels_server}",  # crosses to central: declared names only
            status=0,
            latency_ms=(time.perf_counter() - self.started) * 1000,
            upstream_ms=self.upstream_ms,
            error=None if intent else self.error,
        )
        # A call refused before the content rules read its arguments keeps none.
        content: dict[str, Any] | None = None
        if self.arguments is not None:
            content = {"arguments": self.arguments}
            if not intent:
                content["result"] = self.released
        tool = {
            "method": self.method,
            "server": self.server,
            "name": self.tool,
            "server_declared": self.server_declared,
            "declared": self.declared,
            "arguments_digest": self.arguments_digest,
            "result_digest": None if intent else self.result_digest,
        }
        return records.build(
            record_id=self.intent_id if intent and self.intent_id else self.record_id,
            kind=kind,
            intent=None if intent else self.intent_id,
            region=self.runtime.settings.region,
            replica=self.runtime.settings.replica,
            enforced_by=self.runtime.settings.place,
            identity=self.identity,
            pack=self.active.pack,
            decision=self.decision,
            facts=facts,
            content=content,
            classification=self.decision.classification,
            tool=tool,
        )
