"""One call's state on its way through the gateway (`Call`): its record, built and
committed (a stream's intent first), its receipt headers; and the refusals every path
answers with, their status and code read from the error classes."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from cordon.errors import CordonError, RecordCommitError
from cordon.ids import uuid7
from gateway import metrics, records
from gateway.http.asgi import Headers, Send, respond
from gateway.http.dialects import Dialect
from gateway.identity import Identity
from gateway.policy import Decision
from gateway.policy.activation import Active
from gateway.records.record import RecordKind
from gateway.runtime import Runtime
from gateway.telemetry import NO_SPAN, CallSpan
from gateway.upstream.providers import Target

__all__ = ["Call", "fail_closed", "refuse", "refuse_error"]

log = logging.getLogger("cordon.gateway.calls")


@dataclass
class Call:
    """Everything one call accumulates on its way through."""

    runtime: Runtime
    dialect: Dialect
    identity: Identity
    started: float
    active: Active
    facts: records.CallFacts
    decision: Decision = field(default_factory=Decision)
    record_id: str = field(default_factory=uuid7)
    intent_id: str | None = None  # a stream's intent record, once there is one
    _intent: asyncio.Task[int | None] | None = None  # its commit, under way or done
    prompt: dict[str, Any] | None = None
    answer_text: str = ""
    committed: bool = False  # the decision record was committed (or spooled, or voided)
    span: CallSpan = NO_SPAN  # its trace (gateway.telemetry); NO_SPAN when tracing is off
    # Where the call goes when its caller decides, not the pack's routing: the in-process
    # SDK's wrapped client names its own provider (`PINNED_TARGET` in the ASGI scope).
    pinned: Target | None = None

    def record(self, kind: RecordKind = "decision") -> dict[str, Any]:
        self.facts.latency_ms = (time.perf_counter() - self.started) * 1000
        content: dict[str, Any] | None = None
        if self.prompt is not None:
            content = {"prompt": self.prompt}
            if kind == "decision":
                content["answer"] = self.answer_text
        intent = kind == "intent"
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
            facts=self.facts,
            content=content,
            classification=self.decision.classification,
        )

    async def commit(self) -> int | None:
        """Commit this call's record: its stream sequence, or None if it was spooled
        (fail-open pack, stream away). `RecordCommitError` if neither was possible."""
        await self.intent_committed()  # a decision never precedes its intent in the log
        self.committed = True  # its id is spent either way: never committed twice
        self.facts.trace_id = self.span.trace_id
        try:
            seq = await self._commit(self.record())
        finally:
            self._end_span()
        metrics.REQUESTS.labels(self.dialect.route, self.decision.outcome).inc()
        self.runtime.packs.tally(self.active.pack.revision, self.decision.outcome == "error")
        return seq

    def _end_span(self) -> None:
        if self.span is NO_SPAN:
            return
        facts = self.facts
        self.span.set(
            {
                "cordon.record.id": self.record_id,
                "cordon.outcome": self.decision.outcome,
                "cordon.route": facts.route or None,
                "gen_ai.response.model": facts.model_id if facts.route else None,
                "gen_ai.usage.input_tokens": facts.prompt_tokens,
                "gen_ai.usage.output_tokens": facts.completion_tokens,
            }
        )
        failed = self.decision.outcome == "error"
        self.span.end(facts.error if failed else None)

    def begin_intent(self) -> None:
        """Start committing the intent record of a stream about to be asked for: it runs
        while the provider is connected to and its first event is on the way."""
        self.intent_id = uuid7()
        self._intent = asyncio.create_task(self._commit(self.record("intent")))

    async def intent_seq(self) -> int | None:
        """The intent's stream sequence (None: spooled); `RecordCommitError` if it failed.
        Shielded: a relay cancelled while it waits (the caller left) must not cancel the
        commit, whose record the decision then names."""
        assert self._intent is not None
        return await asyncio.shield(self._intent)

    async def intent_committed(self) -> bool:
        """Whether the intent (if any) was committed or spooled, once its commit ended."""
        if self._intent is None:
            return False
        await asyncio.wait({self._intent})  # its outcome, without raising it
        return not self._intent.cancelled() and self._intent.exception() is None

    async def _commit(self, record: dict[str, Any]) -> int | None:
        with self.span.child("cordon.record.commit"):
            return await self.runtime.commit(record, self.active.pack.fail_mode == "open")

    def can_record(self) -> bool:
        """Whether a record could be committed (or spooled) now: if not, a fail-closed
        call is refused before the provider is asked, and paid."""
        return self.runtime.can_record(self.active.pack.fail_mode == "open")

    def receipt(self, seq: int | None) -> Headers:
        overhead = time.perf_counter() - self.started - self.facts.upstream_ms / 1000
        metrics.OVERHEAD.observe(overhead)
        where = (
            (b"x-cordon-record-seq", str(seq).encode())
            if seq is not None
            else (b"x-cordon-record-spooled", b"1")
        )
        return [
            (b"x-cordon-record-id", self.record_id.encode()),
            where,
            (b"x-cordon-overhead-ms", f"{overhead * 1000:.3f}".encode()),
        ]


async def refuse(
    call: Call,
    send: Send,
    status: int,
    message: str,
    code: str,
    extra: Headers | None = None,
    error: str | None = None,
) -> None:
    """Answer with an error of our own; the record says so (`error`, or else `code`). No
    model output is involved, so the error goes out even if the record cannot be
    committed (that is logged)."""
    blocked = status == 403 or call.decision.blocked_by is not None
    call.decision.outcome = "block" if blocked else "error"
    call.facts.status = status
    call.facts.error = error or code
    receipt: Headers = []
    if call.decision.blocked_by is not None:  # the rule, for a caller's error handler
        receipt.append((b"x-cordon-blocked-by", call.decision.blocked_by.encode()))
    try:
        receipt += call.receipt(await call.commit())
    except RecordCommitError as exc:
        log.error("record for a refused call not committed: %s", exc)
    await respond(
        send, status, call.dialect.refusal(status, message, code), [*(extra or []), *receipt]
    )


async def refuse_error(
    call: Call, send: Send, exc: CordonError, extra: Headers | None = None, message: str = ""
) -> None:
    """Refuse with the status and code `exc`'s class declares (`cordon.errors`)."""
    await refuse(call, send, exc.status, message or str(exc), exc.code, extra)


async def fail_closed(call: Call, send: Send) -> None:
    """Refuse a call whose record cannot be committed: no model output is released."""
    metrics.REQUESTS.labels(call.dialect.route, "commit_failed").inc()
    call.runtime.packs.tally(call.active.pack.revision, failed=True)
    message = "the decision record could not be committed; no answer was released"
    await respond(send, 503, call.dialect.refusal(503, message, "record_commit_failed"))
