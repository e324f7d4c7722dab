"""A stream's relay: its response opens only once the intent record is committed;
events pass the output rules as they come (with the early-release window); the last
event waits for the decision record; a caller who leaves ends the upstream call and
is recorded (499)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from cordon.errors import ClientGoneError, OutputBlockedError, RecordCommitError, UpstreamError
from gateway import policy
from gateway.http.asgi import EVENT_STREAM, Receive, Send
from gateway.http.call import Call, fail_closed
from gateway.http.streaming import SSEParser, StreamAdapter, adapter_for, stream_error
from gateway.policy import StreamFilter
from gateway.telemetry import NO_SPAN
from gateway.upstream import UpstreamResponse

__all__ = ["CLIENT_CLOSED", "relay_stream"]

log = logging.getLogger("cordon.gateway.calls")
CLIENT_CLOSED = 499  # nginx's convention: the client went away before the answer


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
    if call.span is not NO_SPAN and adapter.finish_reasons:
        call.span.set({"gen_ai.response.finish_reasons": adapter.finish_reasons})
    if gone in done or _client_left(pump):
        await _abandon(call, pump, response)
        return
    gone.cancel()
    if _intent_failed(pump) or not await call.intent_committed():
        response.close()
        await fail_closed(call, send)  # nothing went out: the caller gets a plain 503
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
