"""One call through the gateway, for every dialect.

authenticate → read and validate → input rules → forward (with fallback) →
output rules → record committed → answer released. Every path after
authentication leaves a record; a model answer never leaves without one. A stream
is released only after its intent record is committed (who asked what, under which
pack), and its last event only after the decision record that completes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from cordon import jsoncodec
from cordon.errors import (
    AuthError,
    BadRequestError,
    BodyTooLargeError,
    ClassifierUnavailableError,
    ClientGoneError,
    ClientTimeoutError,
    NoTargetAvailableError,
    OutputBlockedError,
    RecordCommitError,
    UnknownModelError,
    UpstreamError,
    UpstreamTooLargeError,
)
from cordon.ids import uuid7
from cordon.packs import ClassifierHook
from gateway import metrics, policy, records
from gateway.http.asgi import (
    EVENT_STREAM,
    Headers,
    Receive,
    Scope,
    Send,
    parse_json_object,
    read_body,
    request_headers,
    respond,
)
from gateway.http.dialects import Dialect, map_json
from gateway.http.streaming import SSEParser, StreamAdapter, adapter_for, stream_error
from gateway.identity import Identity
from gateway.policy import Decision, StreamFilter
from gateway.policy.activation import Active
from gateway.runtime import Runtime
from gateway.upstream import UpstreamResponse, classifier
from gateway.upstream.forwarding import Forwarded, forward

log = logging.getLogger("cordon.gateway.calls")
CLIENT_CLOSED = 499  # nginx's convention: the client went away before the answer


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

    def record(self, kind: str = "decision") -> dict[str, Any]:
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
        seq = await self._commit(self.record())
        metrics.REQUESTS.labels(self.dialect.route, self.decision.outcome).inc()
        self.runtime.packs.tally(self.active.pack.revision, self.decision.outcome == "error")
        return seq

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
        recorder = self.runtime.recorder
        committed = time.perf_counter()
        try:
            if recorder is None:
                raise RecordCommitError("not connected to the regional NATS yet")
            seq = await recorder.commit(record, self._spool())
        except RecordCommitError:
            metrics.COMMIT_FAILURES.inc()
            raise
        metrics.COMMIT.observe(time.perf_counter() - committed)
        if seq is None:  # spooled: the answer goes out ahead of its record's commit
            metrics.FAIL_OPEN_ANSWERS.inc()
        return seq

    def _spool(self) -> records.Spool | None:
        return self.runtime.spool if self.active.pack.fail_mode == "open" else None

    def can_record(self) -> bool:
        """Whether a record could be committed (or spooled) now: if not, a fail-closed
        call is refused before the provider is asked, and paid."""
        recorder = self.runtime.recorder
        connected = recorder is not None and recorder.connected
        return connected or self._spool() is not None

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


async def handle(
    runtime: Runtime, dialect: Dialect, scope: Scope, receive: Receive, send: Send
) -> None:
    started = time.perf_counter()
    headers = request_headers(scope)
    try:
        identity = runtime.auth.authenticate(headers.get("authorization"), headers.get("x-api-key"))
    except AuthError as exc:
        # Unauthenticated traffic writes nothing to the compliance log: it is counted only.
        metrics.REQUESTS.labels(dialect.route, "unauthenticated").inc()
        await respond(send, 401, dialect.error(str(exc), "authentication_error", "invalid_api_key"))
        return
    call = Call(
        runtime,
        dialect,
        identity,
        started,
        runtime.packs.current,
        records.CallFacts(dialect.route, "unknown"),
    )
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
    except BodyTooLargeError as exc:
        await refuse(call, send, 413, str(exc), "request_too_large", "request_too_large")
        return
    except ClientTimeoutError as exc:
        close = [(b"connection", b"close")]  # the rest of the body is never read
        await refuse(call, send, 408, str(exc), "invalid_request_error", "request_timeout", close)
        return
    except BadRequestError as exc:
        await refuse(call, send, 400, str(exc), "invalid_request_error", "invalid_request")
        return
    if runtime.in_flight >= runtime.settings.max_concurrent_calls:
        message = "too many calls in flight on this replica; try again shortly"
        retry = [(b"retry-after", b"1")]
        await refuse(call, send, 503, message, "overloaded_error", "overloaded", retry)
        return
    runtime.in_flight += 1
    try:
        await serve(call, payload, body, headers, receive, send)
    finally:
        runtime.in_flight -= 1


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
            await refuse(call, send, 500, message, "api_error", "internal_error", error=error)
            return
        except Exception:
            log.exception("record %s: the fault's own answer failed", record_id)
    with contextlib.suppress(Exception):  # the answer may have begun: uvicorn closes it
        await respond(send, 500, call.dialect.error(message, "api_error", "internal_error"))


async def refuse(
    call: Call,
    send: Send,
    status: int,
    message: str,
    kind: str,
    code: str,
    extra: Headers | None = None,
    error: str | None = None,
) -> None:
    """Answer with an error of our own; the record says so (`error`, or else `code`). No
    model output is involved, so the error goes out even if the record cannot be
    committed (that is logged)."""
    blocked = kind == "permission_error" or call.decision.blocked_by is not None
    call.decision.outcome = "block" if blocked else "error"
    call.facts.status = status
    call.facts.error = error or code
    receipt: Headers = []
    try:
        receipt = call.receipt(await call.commit())
    except RecordCommitError as exc:
        log.error("record for a refused call not committed: %s", exc)
    await respond(send, status, call.dialect.error(message, kind, code), [*(extra or []), *receipt])


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
    now = time.time()
    unusable = pack.unusable(now)
    if unusable is not None:
        code, message = unusable
        await refuse(call, send, 503, message, "api_error", code)
        return
    if pack.expired(now):  # fail-open: served, and the record says so
        call.decision.fired("pack_expired", "flag")
    outbound = policy.apply_input(pack, dialect, payload, call.identity, call.decision)
    call.prompt = _prompt(dialect, outbound if pack.record_content == "redacted" else payload)
    hook = pack.classifier
    consult = call.decision.blocked_by is None and hook is not None
    if consult and not await _consult_classifier(call, hook, outbound, send):  # type: ignore[arg-type]
        return
    if call.decision.blocked_by is not None:
        message = f"blocked by policy rule {call.decision.blocked_by}"
        await refuse(call, send, 403, message, "permission_error", "content_policy_violation")
        return
    if not call.can_record():
        await _fail_closed(call, send)
        return
    if call.facts.stream:
        planned = call.active.router.serving(dialect.api, call.facts.model)
        if planned:
            call.facts.route = planned[0].id
            call.facts.model_id = planned[0].model_id(call.facts.model)
        call.begin_intent()
    upstream_started = time.perf_counter()
    try:
        forwarded = await forward(
            call.active.router,
            call.runtime.upstream,
            dialect.api,
            call.facts.model,
            dialect.upstream_path,
            body if outbound is payload else jsoncodec.dumps(outbound),
            headers,
        )
    except UnknownModelError as exc:
        await refuse(call, send, 404, str(exc), "not_found_error", "model_not_found")
        return
    except NoTargetAvailableError as exc:
        call.facts.upstream_ms = (time.perf_counter() - upstream_started) * 1000
        call.facts.attempts = list(exc.attempts)  # the record says what failed, and why
        status, code = (504, "upstream_timeout") if exc.timed_out else (502, "upstream_unavailable")
        await refuse(call, send, status, str(exc), "api_error", code)
        return
    call.facts.route = forwarded.target.id
    call.facts.model_id = forwarded.target.model_id(call.facts.model)
    call.facts.attempts = forwarded.attempts
    call.facts.status = forwarded.status
    if forwarded.response is not None and forwarded.status == 200 and call.facts.stream:
        if not forwarded.headers.get("content-type", "").startswith("text/event-stream"):
            forwarded.response.close()
            message = "the provider answered a stream request with something other than a stream"
            await refuse(call, send, 502, message, "api_error", "upstream_unreadable")
            return
        await relay_stream(call, forwarded.response, upstream_started, receive, send)
    else:
        await answer_whole(call, forwarded, upstream_started, send)


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
        await refuse(call, send, 503, message, "api_error", "classifier_unavailable")
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
    except UpstreamError as exc:
        call.facts.upstream_ms = (time.perf_counter() - upstream_started) * 1000
        code = "upstream_too_large" if isinstance(exc, UpstreamTooLargeError) else "upstream_broken"
        await refuse(call, send, 502, str(exc), "api_error", code)
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
        await refuse(call, send, 403, str(exc), "permission_error", "content_policy_violation")
        return
    except UpstreamError as exc:
        await refuse(call, send, 502, str(exc), "api_error", "upstream_unreadable")
        return
    try:
        receipt = call.receipt(await call.commit())
    except RecordCommitError:
        if forwarded.status == 200:
            await _fail_closed(call, send)
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
    apply = policy.output_policy(call.active.pack, call.decision)
    raw_text = call.dialect.answer_text(answer)
    if apply is None:
        call.answer_text = raw_text
        return body
    call.dialect.map_answer(answer, apply)  # may raise OutputBlockedError
    filtered = call.dialect.answer_text(answer)
    call.answer_text = filtered if call.active.pack.record_content == "redacted" else raw_text
    return jsoncodec.dumps(answer) if filtered != raw_text else body


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


async def _fail_closed(call: Call, send: Send) -> None:
    metrics.REQUESTS.labels(call.dialect.route, "commit_failed").inc()
    call.runtime.packs.tally(call.active.pack.revision, failed=True)
    message = "the decision record could not be committed; no answer was released"
    await respond(send, 503, call.dialect.error(message, "api_error", "record_commit_failed"))


class Opening:
    """A stream's response, which starts only once its intent record is committed: the
    response's first byte (its status line) waits for the commit (`Call.begin_intent`)."""

    def __init__(self, call: Call, send: Send) -> None:
        self._call, self._send = call, send
        self.started = False

    async def send(self, body: bytes, more: bool = True) -> None:
        if not self.started:
            seq = await self._call.intent_seq()  # RecordCommitError: nothing has gone out
            headers = [
                EVENT_STREAM,
                (b"cache-control", b"no-cache"),
                (b"x-cordon-record-id", self._call.record_id.encode()),
                (b"x-cordon-intent-id", str(self._call.intent_id).encode()),
                (b"x-cordon-intent-seq", str(seq).encode() if seq else b"spooled"),
            ]
            await self._send({"type": "http.response.start", "status": 200, "headers": headers})
            self.started = True
        try:
            await self._send({"type": "http.response.body", "body": body, "more_body": more})
        except OSError as exc:
            raise ClientGoneError from exc


async def relay_stream(
    call: Call, response: UpstreamResponse, upstream_started: float, receive: Receive, send: Send
) -> None:
    pack = call.active.pack
    apply = policy.output_policy(pack, call.decision)
    make_filter = (lambda: StreamFilter(apply)) if apply is not None else None
    adapter = adapter_for(call.dialect, make_filter, policy.output_policy(pack, None))
    opening = Opening(call, send)
    held: list[bytes] = []
    settings = call.runtime.settings
    parser = SSEParser(settings.max_event_bytes, settings.max_stream_bytes)
    pump = asyncio.create_task(_pump(response, parser, adapter, held, opening))
    gone = asyncio.create_task(_client_gone(receive))
    done, _ = await asyncio.wait({pump, gone}, return_when=asyncio.FIRST_COMPLETED)
    call.facts.upstream_ms = (time.perf_counter() - upstream_started) * 1000
    call.facts.scanned_chars = adapter.scanned_chars if make_filter else None
    call.answer_text = "".join(adapter.text)
    call.facts.prompt_tokens, call.facts.completion_tokens = (
        adapter.prompt_tokens,
        adapter.completion_tokens,
    )
    if gone in done or _client_left(pump):
        await _abandon(call, pump, response)
        return
    gone.cancel()
    if _intent_failed(pump) or not await call.intent_committed():
        response.close()
        await _fail_closed(call, send)  # nothing went out: the caller gets a plain 503
        return
    ended = _pump_result(call, pump)
    try:
        seq = await call.commit()
    except RecordCommitError:
        # The intent stands as evidence that the stream began; the caller learns that
        # it did not end properly, in its own API's terms.
        message = "the decision record could not be committed"
        await _end(opening, stream_error(call.dialect, message, "record_commit_failed"))
        return
    call.receipt(seq)
    if ended:
        tail = b"".join(held)
    elif call.decision.blocked_by is not None:
        message = f"answer blocked by policy rule {call.decision.blocked_by}"
        tail = stream_error(call.dialect, message, "content_policy_violation")
    else:
        tail = stream_error(call.dialect, call.facts.error or "stream broke", "upstream_broken")
    note = f": cordon-record-seq {seq}\n\n" if seq is not None else ": cordon-record-spooled\n\n"
    await _end(opening, note.encode() + tail)


async def _end(opening: Opening, body: bytes) -> None:
    """The stream's last bytes (its intent is committed by now)."""
    with contextlib.suppress(ClientGoneError):
        await opening.send(body, more=False)


async def _pump(
    response: UpstreamResponse,
    parser: SSEParser,
    adapter: StreamAdapter,
    held: list[bytes],
    opening: Opening,
) -> bool:
    """Relay events until the terminal one, which is held; True if the stream ended properly."""
    terminal = False
    try:
        async for chunk in response.chunks():
            out: list[bytes] = []
            for event in parser.feed(chunk):
                relay = adapter.relay(event)
                terminal = terminal or relay.terminal
                (held if terminal else out).extend(relay.out)
            if out:
                await opening.send(b"".join(out))
    finally:
        response.release()
    return terminal


def _intent_failed(pump: asyncio.Task[bool]) -> bool:
    return not pump.cancelled() and isinstance(pump.exception(), RecordCommitError)


def _pump_result(call: Call, pump: asyncio.Task[bool]) -> bool:
    try:
        ended = pump.result()
    except UpstreamError as exc:
        call.decision.outcome, call.facts.error = "error", str(exc)
        return False
    except OutputBlockedError as exc:
        call.decision.fired(exc.rule_id, "block")
        call.facts.error = "content_policy_violation"
        return False
    except Exception as exc:  # a provider event no adapter expected: still a record
        log.exception("stream relay failed")
        call.decision.outcome, call.facts.error = "error", f"stream_broken: {type(exc).__name__}"
        return False
    if not ended:
        call.decision.outcome, call.facts.error = "error", "stream ended without its final event"
    return ended


def _client_left(pump: asyncio.Task[bool]) -> bool:
    return pump.done() and not pump.cancelled() and isinstance(pump.exception(), ClientGoneError)


async def _client_gone(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _abandon(call: Call, pump: asyncio.Task[bool], response: UpstreamResponse) -> None:
    """The caller left mid-stream: stop the provider call, still record what happened."""
    pump.cancel()
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await pump
    response.close()
    call.decision.outcome = "cancelled"
    call.facts.status = CLIENT_CLOSED
    call.facts.error = "client_disconnected"
    with contextlib.suppress(RecordCommitError):
        await call.commit()
