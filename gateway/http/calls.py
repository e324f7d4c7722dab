"""One call through the gateway, for every dialect.

authenticate → read and validate → input rules → forward (with fallback) →
output rules → record committed → answer released. Every path after
authentication leaves a record; a model answer never leaves without one. A stream
is released only after its intent record is committed (who asked what, under which
pack), and its last event only after the decision record that completes it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from cordon import jsoncodec
from cordon.errors import (
    AuthError,
    BadRequestError,
    ClassifierUnavailableError,
    ClientTimeoutError,
    NoTargetAvailableError,
    OutputBlockedError,
    OutsideResidencyError,
    RecordCommitError,
    UnknownModelError,
    UpstreamError,
)
from cordon.ids import is_record_id
from cordon.packs import ClassifierHook
from gateway import metrics, policy, records
from gateway.http.asgi import (
    Receive,
    Scope,
    Send,
    parse_json_object,
    read_body,
    request_headers,
    respond,
)
from gateway.http.call import Call, fail_closed, refuse, refuse_error
from gateway.http.dialects import Dialect
from gateway.http.relay import relay_stream
from gateway.policy import map_json
from gateway.runtime import Runtime
from gateway.telemetry import NO_SPAN
from gateway.upstream import UpstreamResponse, classifier
from gateway.upstream.client import SDK_RECORD_HEADER
from gateway.upstream.forwarding import Forwarded, forward
from gateway.upstream.providers import Target

log = logging.getLogger("cordon.gateway.calls")
# The ASGI scope key naming the one target a call goes to (`Call.pinned`).
PINNED_TARGET = "cordon.target"


async def handle(
    runtime: Runtime, dialect: Dialect, scope: Scope, receive: Receive, send: Send
) -> None:
    started = time.perf_counter()
    headers = request_headers(scope)
    try:
        identity = runtime.auth.of_request(headers)
    except AuthError as exc:
        # Unauthenticated traffic writes nothing to the compliance log: it is counted only.
        metrics.REQUESTS.labels(dialect.route, "unauthenticated").inc()
        await respond(send, exc.status, dialect.error_of(exc))
        return
    call = Call(
        runtime,
        dialect,
        identity,
        started,
        runtime.packs.current,
        records.CallFacts(dialect.route, "unknown"),
        pinned=scope.get(PINNED_TARGET),
    )
    receipt = headers.get(SDK_RECORD_HEADER)
    if receipt is not None:
        if not is_record_id(receipt):
            refused = BadRequestError(f"{SDK_RECORD_HEADER} must be a record id (a UUID)")
            await refuse_error(call, send, refused)
            return
        call.facts.sdk_record = receipt
    if runtime.tracing.on:
        operation = "embeddings" if dialect.route == "embeddings" else "chat"
        call.span = runtime.tracing.start(operation, dialect.api, headers)
    try:
        await _admit(call, scope, headers, receive, send)
    except Exception as exc:  # a fault of ours, not the caller's: still a record and a receipt
        await _fault(call, send, exc)


async def _admit(
    call: Call, scope: Scope, headers: dict[str, str], receive: Receive, send: Send
) -> None:
    """Read and check the request, then serve it within the replica's concurrency cap."""
    runtime, dialect = call.runtime, call.dialect
    try:
        body = await read_body(scope, receive, headers, runtime.settings.max_body_bytes)
        payload = parse_json_object(body)
        problem = dialect.validate(payload)
        if problem:
            raise BadRequestError(problem)
    except ClientTimeoutError as exc:
        close = [(b"connection", b"close")]  # the rest of the body is never read
        await refuse_error(call, send, exc, close)
        return
    except BadRequestError as exc:  # a body too large, unreadable or invalid
        await refuse_error(call, send, exc)
        return
    if not runtime.admit():
        message = "too many calls in flight on this replica; try again shortly"
        retry = [(b"retry-after", b"1")]
        await refuse(call, send, 503, message, "overloaded", retry)
        return
    try:
        await serve(call, payload, body, headers, receive, send)
    finally:
        runtime.leave()


async def _fault(call: Call, send: Send, exc: Exception) -> None:
    """An exception no refusal expected: logged with the record id, answered 500 with a
    receipt, unless this call's record was already committed (its id would be dropped
    as a duplicate, and the number it took with it) or the answer had begun."""
    route, record_id = call.dialect.route, call.record_id
    log.error("internal fault serving %s, record %s", route, record_id, exc_info=exc)
    message = f"internal gateway error; record {record_id} names this call"
    if not call.committed:
        error = f"internal_error: {type(exc).__name__}"
        try:
            await refuse(call, send, 500, message, "internal_error", error=error)
            return
        except Exception:
            log.exception("record %s: the fault's own answer failed", record_id)
    with contextlib.suppress(Exception):  # the answer may have begun: uvicorn closes it
        await respond(send, 500, call.dialect.refusal(500, message, "internal_error"))


async def serve(
    call: Call,
    payload: dict[str, Any],
    body: bytes,
    headers: dict[str, str],
    receive: Receive,
    send: Send,
) -> None:
    dialect, pack = call.dialect, call.active.pack
    call.facts.model = payload["model"]
    call.facts.stream = bool(payload.get("stream"))
    now = call.runtime.clock()
    unusable = pack.unusable(now)
    if unusable is not None:
        code, message = unusable
        await refuse(call, send, 503, message, code)
        return
    if pack.expired(now):  # fail-open: served, and the record says so
        call.decision.fired("pack_expired", "flag")
    if call.span is not NO_SPAN:
        call.span.set({"gen_ai.request.model": call.facts.model})
    with call.span.child("cordon.policy"):
        outbound = policy.apply_input(pack, dialect, payload, call.identity, call.decision)
    call.prompt = _prompt(dialect, outbound if pack.record_content == "redacted" else payload)
    hook = pack.classifier
    consult = call.decision.blocked_by is None and hook is not None
    if consult and not await _consult_classifier(call, hook, outbound, send):  # type: ignore[arg-type]
        return
    if call.decision.blocked_by is not None:
        message = f"blocked by policy rule {call.decision.blocked_by}"
        await refuse(call, send, 403, message, "content_policy_violation")
        return
    if not call.can_record():
        await fail_closed(call, send)
        return
    if call.pinned is None:
        named, asked = call.active.router.named(call.facts.model)
    else:  # the model as the caller named it, to its own provider
        named, asked = None, call.facts.model
    if named is not None:  # `<target>/<model>`: the target is asked for its model
        outbound = {**outbound, "model": asked}
    try:
        planned = _planned(call)
    except (UnknownModelError, OutsideResidencyError) as exc:
        await refuse_error(call, send, exc)
        return
    if call.facts.stream:
        if planned:
            call.facts.route = planned[0].id
            call.facts.route_region = planned[0].region
            call.facts.model_id = planned[0].model_id(asked)
        call.begin_intent()
    upstream_started = time.perf_counter()
    if call.runtime.settings.place == "sdk":  # a gateway upstream ties its record to ours
        headers = {**headers, SDK_RECORD_HEADER: call.record_id}
    elif SDK_RECORD_HEADER in headers:  # a caller's receipt is for this record, not the provider
        headers = {k: v for k, v in headers.items() if k != SDK_RECORD_HEADER}
    traceparent = call.span.traceparent()
    if traceparent is not None:  # the provider's parent is this call, not the caller
        headers = {**headers, "traceparent": traceparent}
    try:
        with call.span.child("cordon.upstream"):
            forwarded = await forward(
                call.active.router,
                call.runtime.upstream,
                dialect.api,
                call.facts.model,
                dialect.upstream_path,
                body if outbound is payload else jsoncodec.dumps(outbound),
                headers,
                planned,
            )
    except UnknownModelError as exc:
        await refuse_error(call, send, exc)
        return
    except NoTargetAvailableError as exc:
        call.facts.upstream_ms = (time.perf_counter() - upstream_started) * 1000
        call.facts.attempts = list(exc.attempts)  # the record says what failed, and why
        await refuse_error(call, send, exc)
        return
    call.facts.route = forwarded.target.id
    call.facts.route_region = forwarded.target.region
    call.facts.model_id = forwarded.target.model_id(asked)
    call.facts.attempts = forwarded.attempts
    call.facts.status = forwarded.status
    if forwarded.response is not None and forwarded.status == 200 and call.facts.stream:
        if not forwarded.headers.get("content-type", "").startswith("text/event-stream"):
            forwarded.response.close()
            message = "the provider answered a stream request with something other than a stream"
            await refuse(call, send, 502, message, "upstream_unreadable")
            return
        await relay_stream(call, forwarded.response, upstream_started, receive, send)
    else:
        await answer_whole(call, forwarded, upstream_started, send)


def _planned(call: Call) -> list[Target]:
    """The targets to try: the pinned provider as the pack knows it, or the router's
    choice (asked once: a balanced router turns with each call)."""
    router = call.active.router
    if call.pinned is not None:
        residency = call.active.pack.document.get("residency") is not None
        return [router.pinned(call.pinned, call.facts.model, residency)]
    return router.serving(call.dialect.api, call.facts.model)


async def _consult_classifier(
    call: Call, hook: ClassifierHook, outbound: dict[str, Any], send: Send
) -> bool:
    """Ask the pack's external classifier; False if the call was refused here."""
    text = call.dialect.prompt_text(outbound)
    try:
        hits = await classifier.classify(
            call.runtime.upstream.http, hook, text, call.runtime.pack_env
        )
    except ClassifierUnavailableError as exc:
        if hook.fail_mode == "open":
            call.decision.fired(classifier.UNAVAILABLE, "flag")
            return True
        call.decision.fired(classifier.UNAVAILABLE, "block")
        message = f"the policy classifier is unavailable, so the call was not sent ({exc})"
        await refuse_error(call, send, exc, message=message)
        return False
    for category in hits:
        call.decision.fired(f"classifier:{category}", "block")
    return True


def _prompt(dialect: Dialect, payload: dict[str, Any]) -> dict[str, Any]:
    keys = (*dialect.prompt_keys, "system", "instructions")
    return {k: payload[k] for k in keys if k in payload}


async def answer_whole(
    call: Call, forwarded: Forwarded, upstream_started: float, send: Send
) -> None:
    try:
        body = forwarded.body
        if body is None:
            body = await _read(forwarded.response, call.runtime.settings.max_response_bytes)
    except UpstreamError as exc:  # broken, or larger than allowed
        call.facts.upstream_ms = (time.perf_counter() - upstream_started) * 1000
        await refuse_error(call, send, exc)
        return
    call.facts.upstream_ms = (time.perf_counter() - upstream_started) * 1000
    metrics.UPSTREAM.observe(call.facts.upstream_ms / 1000)
    try:
        if forwarded.status == 200:
            body = _filter_answer(call, body)
        else:
            call.decision.outcome = "error"
            call.facts.error = f"upstream_{forwarded.status}"
            body = _filter_error(call, body, forwarded.status)
    except OutputBlockedError as exc:
        call.decision.fired(exc.rule_id, "block")
        await refuse_error(call, send, exc)
        return
    except UpstreamError as exc:
        await refuse(call, send, 502, str(exc), "upstream_unreadable")
        return
    try:
        receipt = call.receipt(await call.commit())
    except RecordCommitError:
        if forwarded.status == 200:
            await fail_closed(call, send)
            return
        receipt = []
    extra = [(b"content-type", forwarded.headers.get("content-type", "application/json").encode())]
    if "retry-after" in forwarded.headers:
        extra.append((b"retry-after", forwarded.headers["retry-after"].encode()))
    await respond(send, forwarded.status, body, extra + receipt)


async def _read(response: UpstreamResponse | None, limit: int) -> bytes:
    assert response is not None
    return await response.read(limit)


def _filter_answer(call: Call, body: bytes) -> bytes:
    """Apply output rules to a whole answer; re-encode only if a rule changed it. An answer
    that is not the JSON object the API promises is never released (no rule could see
    into it): `UpstreamError`."""
    try:
        answer = jsoncodec.loads(body)
    except ValueError as exc:
        raise UpstreamError("the provider's answer was not JSON; nothing was released") from exc
    if not isinstance(answer, dict):
        raise UpstreamError("the provider's answer was not a JSON object; nothing was released")
    call.facts.prompt_tokens, call.facts.completion_tokens = call.dialect.usage(answer)
    if call.span is not NO_SPAN:
        call.span.set({"gen_ai.response.finish_reasons": call.dialect.finish_reasons(answer)})
    apply = policy.output_policy(call.active.pack, call.decision)
    if apply is None:
        call.answer_text = call.dialect.answer_text(answer)
        return body
    raw: list[str] = []
    filtered: list[str] = []

    def apply_and_keep(text: str) -> str:  # one pass: the texts before and after
        raw.append(text)
        filtered.append(apply(text))  # may raise OutputBlockedError
        return filtered[-1]

    call.dialect.map_answer(answer, apply_and_keep)
    changed = filtered != raw
    kept = filtered if call.active.pack.record_content == "redacted" else raw
    call.answer_text = "".join(kept)
    return jsoncodec.dumps(answer) if changed else body


def _filter_error(call: Call, body: bytes, status: int) -> bytes:
    """A provider's error answer, through the output rules like any text it sends: every
    string in its JSON is redacted (a block rule withholds it). An error body that is not
    JSON is replaced by one in the caller's API shape."""
    try:
        error = jsoncodec.loads(body)
    except ValueError:
        error = None
    if not isinstance(error, dict):
        message = f"the provider answered {status} with a body that is not JSON"
        return call.dialect.error(message, "api_error", f"upstream_{status}")
    apply = policy.output_policy(call.active.pack, call.decision)
    if apply is None:
        return body
    return jsoncodec.dumps(map_json(error, apply))
