"""The HTTP transports a governed client sends through.

A model call (chat completions, responses, embeddings, messages) goes to the engine's
gateway app, pinned to the provider the client names (its base URL, its key); the app
applies the pack on the way in and on the way out (streams as they come), commits the
record, and answers as the gateway would. Anything else the client sends (listing
models, files, batches) is no model call and goes out through the client's own
transport, untouched.

The SDKs speak either `httpx` or its successor `httpx2`, whose transport and stream
classes are the same shape: the classes here are made for whichever one a client uses
(`transports_for`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import queue
from collections import deque
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from cordon.secretrefs import Secret
from cordon_sdk.engine import Engine, engine_for
from cordon_sdk.exchange import END, Exchange, Message, scope_for
from cordon_sdk.here import serve_here, usable_here
from gateway.http import dialects
from gateway.http.asgi import Scope
from gateway.upstream.providers import Target, Timeouts

__all__ = ["ENGINE_ANSWER", "Governor", "NotGoverned", "transports_for"]

log = logging.getLogger("cordon.sdk")

# The paths (after the client's base URL) that are model calls, and the gateway's route
# for each. Anthropic's base URL has no `/v1`; OpenAI's does.
ROUTES = {
    "openai": {p: f"/v1{p}" for p in ("/chat/completions", "/responses", "/embeddings")},
    "anthropic": {"/v1/messages": "/v1/messages"},
}
# What goes out untouched: requests that carry no content to a model and bring none
# back (listing models, counting tokens). Everything else a client could send (legacy
# completions, batches, a background response's retrieval, files, audio, images,
# another host) is refused, never sent around the rules.
PASSED = {
    "openai": (("GET", "/models"),),
    "anthropic": (("GET", "/v1/models"), ("POST", "/v1/messages/count_tokens")),
}
NOT_GOVERNED = "not_governed"
STOPPED = "engine_stopped"
# Replaced by the engine's own caller credential: the provider's key goes in the target.
CREDENTIALS = frozenset({b"authorization", b"x-api-key", b"api-key"})
# What the engine reads of the client's headers (besides the credential): the rest are
# the SDK's own (its user agent, `x-stainless-*`, `accept`), which no rule reads and no
# provider call sends on, so they are not copied into each call.
READ = frozenset(
    {
        b"content-length",
        b"anthropic-version",
        b"anthropic-beta",
        b"traceparent",
        b"tracestate",
        b"x-cordon-delegation",
    }
)
DEFAULT_WAIT_S = 600.0  # a client with no read timeout still never waits forever
PASS = "pass"  # `Governor.decide`: out through the client's own transport
ENGINE_ANSWER = "cordon_engine_answer"  # in a response's extensions: the engine's answer


class NotGoverned(Exception):
    """A request the governed client may not send (`Governor.decide`): answered by a
    refusal in the API's shape, so the SDK raises its own 403 error."""


class Governor:
    """How one client's requests become the engine's calls."""

    def __init__(self, engine: Engine, api: str, base_url: str) -> None:
        base = base_url.rstrip("/")
        self._engine = engine
        self.api = api
        self.base_url = base
        parts = urlsplit(base)
        self._origin = _origin(parts.scheme, parts.hostname, parts.port)
        self._base_path = parts.path
        self._routes = ROUTES[api]
        self._passed = PASSED[api]
        self._target_base = base + "/v1" if api == "anthropic" else base
        self._targets: dict[tuple[Any, ...], Target] = {}

    @property
    def engine(self) -> Engine:
        """The engine serving this client: in a process forked after `govern()`, one of
        its own, started on its first call (the parent's thread did not come along)."""
        engine = self._engine
        if engine.pid != os.getpid():
            self._engine = engine = engine_for(engine.files, engine.agent, engine.state_arg)
        return engine

    def stopped(self) -> str | None:
        """Why no call can be served now (`cordon_sdk.shutdown()` ran), or None."""
        if self.engine.alive:
            return None
        return (
            "the Cordon engine of this client was stopped (cordon_sdk.shutdown()); no call is sent"
        )

    def decide(self, method: str, url: Any) -> str:
        """The engine's route for a model call, `PASS` for a request that goes out
        untouched; `NotGoverned` for anything else."""
        path = url.path
        if _origin(url.scheme, url.host, url.port) != self._origin or not path.startswith(
            self._base_path
        ):
            raise NotGoverned(
                f"{method} {url.scheme}://{url.host}{path} is not at this governed client's "
                f"base URL ({self.base_url}); govern a client for that provider"
            )
        rel = path[len(self._base_path) :]
        route = self._routes.get(rel) if method == "POST" else None
        if route is not None:
            return route
        if any(method == m and (rel == p or rel.startswith(p + "/")) for m, p in self._passed):
            return PASS
        raise NotGoverned(
            f"{method} {rel} is not a call cordon_sdk governs, so it is not sent (its "
            "content would go around the policy); put a Cordon sidecar or gateway in front "
            "of it instead"
        )

    def refusal(self, message: str, status: int, code: str) -> bytes:
        dialect = dialects.MESSAGES if self.api == "anthropic" else dialects.CHAT
        return dialect.refusal(status, message, code)

    def scope(self, route: str, raw: list[tuple[bytes, bytes]], timeouts: Any) -> Scope:
        headers = [(name.lower(), value) for name, value in raw]
        target = self._target(_provider_key(headers), timeouts)
        kept = [pair for pair in headers if pair[0] in READ]
        kept.append((b"authorization", b"Bearer " + self._engine.caller_key.encode()))
        return scope_for(route, kept, target)

    def _target(self, key: str, timeouts: Any) -> Target:
        waits = _waits(timeouts)
        found = self._targets.get((key, waits))
        if found is None:
            connect, read = waits
            found = Target(
                id=f"{self.api}-client",
                api=self.api,
                base_url=self._target_base,
                secret=Secret(key),
                timeouts=Timeouts(connect=connect, first_byte=read),
                wire=self.api,
            )
            if len(self._targets) > 64:  # keys rotate: keep the cache small
                self._targets.clear()
            self._targets[(key, waits)] = found
        return found

    def wait_s(self, timeouts: Any) -> float:
        read = timeouts.get("read") if isinstance(timeouts, dict) else None
        return float(read) + 5.0 if read else DEFAULT_WAIT_S


def _provider_key(headers: list[tuple[bytes, bytes]]) -> str:
    found = dict(pair for pair in headers if pair[0] in CREDENTIALS)
    if b"x-api-key" in found:
        return found[b"x-api-key"].decode("latin-1")
    if b"api-key" in found:
        return found[b"api-key"].decode("latin-1")
    bearer = found.get(b"authorization", b"").decode("latin-1")
    return bearer.removeprefix("Bearer ").strip()


def _waits(timeouts: Any) -> tuple[float, float]:
    timeouts = timeouts if isinstance(timeouts, dict) else {}
    return float(timeouts.get("connect") or 5.0), float(timeouts.get("read") or DEFAULT_WAIT_S)


class Inbox:
    """What the engine hands a synchronous client: batches in a thread-safe queue,
    taken one message at a time."""

    def __init__(self) -> None:
        self.batches: queue.SimpleQueue[list[Message]] = queue.SimpleQueue()
        self._pending: deque[Message] = deque()

    def get(self, wait: float) -> Message:
        """The next message; `TimeoutError` if none comes within `wait` seconds."""
        if not self._pending:
            try:
                self._pending.extend(self.batches.get(timeout=wait))
            except queue.Empty:
                raise TimeoutError from None
        return self._pending.popleft()


class AsyncInbox:
    """What the engine hands an asynchronous client: batches put on the client's own
    loop, taken one message at a time."""

    def __init__(self) -> None:
        self._batches: asyncio.Queue[list[Message]] = asyncio.Queue()
        self._pending: deque[Message] = deque()
        self._loop = asyncio.get_running_loop()

    def deliver(self, batch: list[Message]) -> None:
        """From the engine's thread."""
        with contextlib.suppress(RuntimeError):  # the client's loop is closed: nobody waits
            self._loop.call_soon_threadsafe(self._batches.put_nowait, batch)

    async def get(self, wait: float) -> Message:
        if not self._pending:
            self._pending.extend(await asyncio.wait_for(self._batches.get(), wait))
        return self._pending.popleft()


def _piece(message: Message, http: ModuleType, request: Any) -> tuple[bytes, bool]:
    """A body message's bytes, and whether it was the last."""
    if message is END:
        raise http.RemoteProtocolError("the governed call broke off", request=request)
    return message.get("body", b""), not message.get("more_body", False)


def _response(first: Message, http: ModuleType, request: Any, stream: Any) -> Any:
    if first is END or first.get("type") != "http.response.start":
        raise http.RemoteProtocolError(
            "the governed call ended before it answered", request=request
        )
    headers = list(first.get("headers", []))
    answered = http.Response(int(first["status"]), headers=headers, stream=stream, request=request)
    answered.extensions[ENGINE_ANSWER] = True  # PolicyBlocked only ever from the engine
    return answered


def _answered(http: ModuleType, request: Any, sent: list[Message]) -> Any:
    """The response to `request` from what the app sent, whole (as a stream of its
    bytes: `content=` would encode them again)."""
    body = http.ByteStream(b"".join(message.get("body", b"") for message in sent[1:]))
    return _response(sent[0] if sent else END, http, request, body)


def _screen(http: ModuleType, governor: Governor, request: Any) -> Any:
    """The engine's route for `request`, `PASS`, or the refusal to answer it with: not a
    call this client may send (403), or its engine stopped (503)."""
    try:
        route = governor.decide(request.method, request.url)
    except NotGoverned as exc:
        return _refused(http, governor, request, str(exc), 403, NOT_GOVERNED)
    stopped = governor.stopped() if route != PASS else None
    if stopped is not None:
        return _refused(http, governor, request, stopped, 503, STOPPED)
    return route


def _refused(
    http: ModuleType, governor: Governor, request: Any, message: str, status: int, code: str
) -> Any:
    """A request the governed client may not send, answered here: nothing leaves."""
    log.warning("cordon_sdk refused a request: %s", message)
    headers = {"content-type": "application/json"}
    body = governor.refusal(message, status, code)
    return http.Response(status, headers=headers, content=body, request=request)


def _origin(scheme: str, host: str | None, port: int | None) -> tuple[str, str, int]:
    return scheme, (host or "").lower(), port or (443 if scheme == "https" else 80)


def _timed_out(http: ModuleType, request: Any) -> Exception:
    error: Exception = http.ReadTimeout("no answer from the governed call", request=request)
    return error


@functools.cache
def transports_for(http: ModuleType) -> tuple[type[Any], type[Any]]:
    """The synchronous and asynchronous transport classes for `http` (httpx or httpx2)."""

    class SyncBody(http.SyncByteStream):  # type: ignore[misc,name-defined]
        def __init__(self, inbox: Inbox, exchange: Exchange, wait: float, request: Any) -> None:
            self._inbox, self._exchange, self._wait = inbox, exchange, wait
            self._request = request
            self._done = False

        def __iter__(self) -> Iterator[bytes]:
            while not self._done:
                try:
                    message = self._inbox.get(self._wait)
                except TimeoutError:
                    self.close()
                    raise _timed_out(http, self._request) from None
                piece, self._done = _piece(message, http, self._request)
                if piece:
                    yield piece

        def close(self) -> None:
            if not self._done:
                self._done = True
                self._exchange.abandon()

    class AsyncBody(http.AsyncByteStream):  # type: ignore[misc,name-defined]
        def __init__(
            self, inbox: AsyncInbox, exchange: Exchange, wait: float, request: Any
        ) -> None:
            self._inbox, self._exchange, self._wait = inbox, exchange, wait
            self._request = request
            self._done = False

        async def __aiter__(self) -> AsyncIterator[bytes]:
            while not self._done:
                try:
                    message = await self._inbox.get(self._wait)
                except TimeoutError:
                    await self.aclose()
                    raise _timed_out(http, self._request) from None
                except asyncio.CancelledError:
                    await self.aclose()
                    raise
                piece, self._done = _piece(message, http, self._request)
                if piece:
                    yield piece

        async def aclose(self) -> None:
            if not self._done:
                self._done = True
                self._exchange.abandon()

    class GovernedTransport(http.BaseTransport):  # type: ignore[misc,name-defined]
        def __init__(self, governor: Governor, inner: Any) -> None:
            self.governor, self.inner = governor, inner

        def handle_request(self, request: Any) -> Any:
            governor = self.governor
            route = _screen(http, governor, request)
            if not isinstance(route, str):
                return route  # refused here: nothing was sent
            if route == PASS:  # no model call: the client's own transport, untouched
                return self.inner._transport_for_url(request.url).handle_request(request)
            timeouts = request.extensions.get("timeout")
            engine = governor.engine  # screened: alive, in this process
            body = request.read()
            scope = governor.scope(route, request.headers.raw, timeouts)
            if engine.serves_here and b'"stream"' not in body and usable_here():
                served = serve_here(engine.app, scope, body, engine.sign_ahead)
                return _answered(http, request, served)
            inbox = Inbox()
            exchange = Exchange(engine.loop, body, inbox.batches.put)
            exchange.begin(engine.app, scope)
            wait = governor.wait_s(timeouts)
            try:
                first = inbox.get(wait)
            except TimeoutError:
                exchange.abandon()
                raise _timed_out(http, request) from None
            return _response(first, http, request, SyncBody(inbox, exchange, wait, request))

        def close(self) -> None:
            """The inner client is the application's (its ungoverned client uses it)."""

    class AsyncGovernedTransport(http.AsyncBaseTransport):  # type: ignore[misc,name-defined]
        def __init__(self, governor: Governor, inner: Any) -> None:
            self.governor, self.inner = governor, inner

        async def handle_async_request(self, request: Any) -> Any:
            governor = self.governor
            route = _screen(http, governor, request)
            if not isinstance(route, str):
                return route  # refused here: nothing was sent
            if route == PASS:  # no model call: the client's own transport, untouched
                transport = self.inner._transport_for_url(request.url)
                return await transport.handle_async_request(request)
            timeouts = request.extensions.get("timeout")
            inbox = AsyncInbox()
            engine = governor.engine  # screened: alive, in this process
            exchange = Exchange(engine.loop, await request.aread(), inbox.deliver)
            exchange.begin(engine.app, governor.scope(route, request.headers.raw, timeouts))
            wait = governor.wait_s(timeouts)
            try:
                first = await inbox.get(wait)
            except TimeoutError:
                exchange.abandon()
                raise _timed_out(http, request) from None
            except asyncio.CancelledError:
                exchange.abandon()
                raise
            return _response(first, http, request, AsyncBody(inbox, exchange, wait, request))

        async def aclose(self) -> None:
            """The inner client is the application's (its ungoverned client uses it)."""

    return GovernedTransport, AsyncGovernedTransport
