"""`POST /v1/chat/completions`: policy in, provider call, policy out, record, answer."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.responses import Response

from gateway import metrics, policy, records
from gateway.errors import RecordCommitError, UpstreamError
from gateway.errors_http import error_body, openai_error
from gateway.packs import Pack
from gateway.policy import Decision
from gateway.runtime import Runtime
from gateway.settings import ApiKeyIdentity
from gateway.upstream import UpstreamReply

ROUTE = "chat"


def _validate(payload: dict[str, Any]) -> str | None:
    if not isinstance(payload.get("model"), str) or not payload["model"]:
        return "'model' is required and must be a string"
    if not isinstance(payload.get("messages"), list) or not payload["messages"]:
        return "'messages' is required and must be a non-empty list"
    if payload.get("stream"):
        return "'stream': true is not supported by this gateway version yet"
    return None


def _answer_text(answer: dict[str, Any]) -> str:
    parts = []
    for choice in answer.get("choices") or []:
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            parts.append(message["content"])
    return "\n".join(parts)


def _apply_output(
    pack: Pack, reply: UpstreamReply, decision: Decision
) -> tuple[bytes, dict[str, Any]]:
    """Run output rules over every choice; re-encode only if something changed."""
    try:
        answer = json.loads(reply.body)
    except ValueError as exc:
        raise UpstreamError("provider answered with invalid JSON") from exc
    if not isinstance(answer, dict):
        raise UpstreamError("provider answered with a non-object")
    if not pack.rules_of("output_filter"):
        return reply.body, answer
    changed = False
    for choice in answer.get("choices") or []:
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            redacted = policy.apply_output(pack, message["content"], decision)
            changed = changed or redacted != message["content"]
            message["content"] = redacted
    return (json.dumps(answer).encode() if changed else reply.body), answer


async def complete(
    runtime: Runtime, identity: ApiKeyIdentity, payload: dict[str, Any], started: float
) -> Response:
    problem = _validate(payload)
    if problem is not None:
        metrics.REQUESTS.labels(ROUTE, "rejected").inc()
        return openai_error(400, problem, "invalid_request_error", "invalid_request")
    pack = runtime.packs.active  # one pack for the whole call, even if a new one lands
    decision = Decision()
    model = payload["model"]
    messages = policy.apply_input(pack, payload["messages"], decision)
    target = runtime.settings.upstream
    upstream_s = 0.0
    answer: dict[str, Any] = {}
    if decision.blocked_by is not None:
        status = 403
        body = error_body(
            f"blocked by policy rule {decision.blocked_by}",
            "invalid_request_error",
            "content_policy_violation",
        )
    else:
        outbound = payload if messages is payload["messages"] else {**payload, "messages": messages}
        upstream_started = time.perf_counter()
        try:
            reply = await runtime.upstream.post_json(
                target, "/chat/completions", json.dumps(outbound).encode()
            )
            upstream_s = time.perf_counter() - upstream_started
            if reply.status == 200:
                body, answer = _apply_output(pack, reply, decision)
            else:
                decision.outcome = "error"
                body = reply.body
            status = reply.status
        except UpstreamError as exc:
            upstream_s = time.perf_counter() - upstream_started
            decision.outcome = "error"
            status = 502
            body = error_body(
                f"model provider unavailable: {exc}", "api_error", "upstream_unavailable"
            )
    metrics.UPSTREAM.observe(upstream_s)
    usage = answer.get("usage")
    if not isinstance(usage, dict):
        usage = {}
    record = records.build(
        region=runtime.settings.region,
        replica=runtime.settings.replica,
        identity=identity,
        pack=pack,
        decision=decision,
        facts=records.CallFacts(
            model=model,
            route=target.id,
            status=status,
            latency_ms=(time.perf_counter() - started) * 1000,
            upstream_ms=upstream_s * 1000,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
        ),
        content={"messages": messages, "answer": _answer_text(answer)},
    )
    return await _commit_and_answer(runtime, record, status, body, started, upstream_s)


async def _commit_and_answer(
    runtime: Runtime,
    record: dict[str, Any],
    status: int,
    body: bytes,
    started: float,
    upstream_s: float,
) -> Response:
    assert runtime.recorder is not None
    commit_started = time.perf_counter()
    try:
        seq = await runtime.recorder.commit(record)
    except RecordCommitError:
        metrics.COMMIT_FAILURES.inc()
        metrics.REQUESTS.labels(ROUTE, "commit_failed").inc()
        # Fail-closed: no record, no model output.
        return openai_error(
            503,
            "the decision record could not be committed; no answer was released",
            "api_error",
            "record_commit_failed",
        )
    metrics.COMMIT.observe(time.perf_counter() - commit_started)
    overhead_s = time.perf_counter() - started - upstream_s
    metrics.OVERHEAD.observe(overhead_s)
    metrics.REQUESTS.labels(ROUTE, record["outcome"]).inc()
    return Response(
        body,
        status_code=status,
        media_type="application/json",
        headers={
            "x-cordon-record-id": record["id"],
            "x-cordon-record-seq": str(seq),
            "x-cordon-overhead-ms": f"{overhead_s * 1000:.3f}",
        },
    )
