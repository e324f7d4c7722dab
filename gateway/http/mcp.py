"""The MCP endpoint (Streamable HTTP, docs/design/mcp-wire.md §1): `/mcp/<server>`,
`/mcp`, and the protected-resource metadata that tells an agent's client where its
tokens come from (RFC 9728, MCP authorization).

POST carries one JSON-RPC message. A request is answered as JSON, or as an event
stream when it asked for progress (the progress, the tool server's log lines and its
requests to the agent come first, then the answer). A notification or an answer to a
server's request gets 202. GET opens the agent's stream for what relates to no
request: `notifications/tools/list_changed` when a new pack, or the tool server,
changes what this caller may see. DELETE is 405: the session lives in its id
(`gateway.mcp.session`), there is nothing to end.

Without a credential, or with one this region does not know: 401 and
`WWW-Authenticate: Bearer resource_metadata="…"`. Anonymous traffic is counted,
never recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cordon.errors import AuthError, BadRequestError, BodyTooLargeError, JsonRpcError
from cordon.packs.tools import SERVER_NAME
from gateway import metrics
from gateway.http.asgi import (
    EVENT_STREAM,
    Headers,
    Receive,
    Scope,
    Send,
    read_body,
    request_headers,
    respond,
    respond_json,
)
from gateway.identity import Identity
from gateway.mcp import jsonrpc
from gateway.mcp.jsonrpc import Message, Notification, Request, Response
from gateway.mcp.service import CANCELLED, Exchange, McpService
from gateway.mcp.session import ASSUMED_VERSION, SERVED_VERSIONS, Session
from gateway.runtime import Runtime

__all__ = ["METADATA_PATH", "McpEndpoint"]

log = logging.getLogger("cordon.gateway.mcp")
METADATA_PATH = "/.well-known/oauth-protected-resource"
KEEPALIVE_S = 15.0  # an idle agent stream gets a comment this often (proxies close silent ones)
CHANGES_EVERY_S = 1.0  # how often an agent stream checks whether its tools changed
ROUTE = "mcp"


# A POST refused before it is served: the HTTP status, the JSON-RPC error, the record's
# `error`.
Refused = tuple[int, JsonRpcError, str]


@dataclass(frozen=True)
class Caller:
    """Who asked which endpoint: the request's headers, its caller, and the server of
    `/mcp/<server>` (None for the union at `/mcp`)."""

    headers: dict[str, str]
    identity: Identity
    server: str | None


def _takes_events(headers: dict[str, str]) -> bool:
    return "text/event-stream" in headers.get("accept", "")


def _method(message: Message) -> str:
    return message.method if isinstance(message, Request | Notification) else "response"


def _error_body(code: int, message: str, request_id: Any = None) -> bytes:
    return jsonrpc.encode(Response(request_id, error=jsonrpc.ErrorObject(code, message)))


def _sse(message: Message) -> bytes:
    return b"event: message\ndata: " + jsonrpc.encode(message) + b"\n\n"


class McpEndpoint:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.service = McpService(runtime)

    @staticmethod
    def serves(path: str) -> bool:
        return path == "/mcp" or path.startswith(("/mcp/", METADATA_PATH))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if path.startswith(METADATA_PATH):
            await self._metadata(scope, send, path[len(METADATA_PATH) :] or "/mcp")
            return
        server = path[len("/mcp/") :] if path.startswith("/mcp/") else None
        if server is not None and (not SERVER_NAME.match(server) or not self._declared(server)):
            await respond(
                send, 404, _error_body(jsonrpc.INVALID_REQUEST, f"no tool server at {path}")
            )
            return
        headers = request_headers(scope)
        if not self._same_origin(headers):
            await respond(send, 403, _error_body(jsonrpc.INVALID_REQUEST, "Origin not allowed"))
            return
        try:
            identity = self.runtime.auth.of_request(headers)
        except AuthError as exc:
            metrics.REQUESTS.labels(ROUTE, "unauthenticated").inc()
            await self._unauthorized(scope, headers, send, exc)
            return
        caller = Caller(headers, identity, server)
        method = scope["method"]
        if method == "POST":
            await self._post(scope, receive, send, caller)
        elif method == "GET":
            await self._stream(receive, send, caller)
        else:
            body = _error_body(
                jsonrpc.INVALID_REQUEST, f"{method} is not served: sessions end on their own"
            )
            await respond(send, 405, body, [(b"allow", b"GET, POST")])

    def _declared(self, server: str) -> bool:
        return self.runtime.packs.current.pack.tools.server(server) is not None

    # -- who is asking ----------------------------------------------------------------

    @staticmethod
    def _same_origin(headers: dict[str, str]) -> bool:
        """A browser page of another site may not drive an agent's tools: an `Origin`,
        when sent, must be this host's."""
        origin = headers.get("origin")
        if origin is None:
            return True
        return urlsplit(origin).netloc.lower() == headers.get("host", "").lower()

    def _base(self, scope: Scope, headers: dict[str, str]) -> str:
        public = self.runtime.settings.public_url
        if public:
            return public.rstrip("/")
        scheme = "https" if scope.get("scheme") == "https" else "http"
        return f"{scheme}://{headers.get('host', 'localhost')}"

    async def _unauthorized(
        self, scope: Scope, headers: dict[str, str], send: Send, exc: AuthError
    ) -> None:
        metadata = f"{self._base(scope, headers)}{METADATA_PATH}{scope['path']}"
        challenge = f'Bearer resource_metadata="{metadata}"'
        if headers.get("authorization") or headers.get("x-api-key"):
            challenge += ', error="invalid_token"'
        status = 403 if exc.status == 403 else 401
        extra: Headers = [(b"www-authenticate", challenge.encode())]
        await respond(send, status, _error_body(jsonrpc.INVALID_REQUEST, str(exc)), extra)

    async def _metadata(self, scope: Scope, send: Send, resource_path: str) -> None:
        """RFC 9728: the MCP endpoint as a protected resource, and the issuers of the
        delegation tokens this region trusts as its authorization servers."""
        headers = request_headers(scope)
        if scope["method"] != "GET" or not self.serves(resource_path):
            await respond(send, 404, _error_body(jsonrpc.INVALID_REQUEST, "no such resource"))
            return
        settings = self.runtime.settings
        tools = self.runtime.packs.current.pack.tools
        scopes = sorted({s for server in tools.servers for t in server.tools for s in t.scopes})
        document = {
            "resource": f"{self._base(scope, headers)}{resource_path}",
            "authorization_servers": [issuer.issuer for issuer in settings.delegation_issuers],
            "bearer_methods_supported": ["header"],
            "scopes_supported": scopes,
            "resource_name": f"Cordon gateway ({settings.region})",
        }
        await respond_json(send, 200, document)

    # -- POST: one message ------------------------------------------------------------

    async def _post(self, scope: Scope, receive: Receive, send: Send, caller: Caller) -> None:
        read = await self._read(scope, receive, caller.headers)
        if isinstance(read, tuple):
            await self._refuse(send, caller, *read)
            return
        message = read
        if isinstance(message, Request) and message.method == "initialize":
            await self._initialize(send, caller.identity, message)
            return
        ex = self._exchange(caller)
        if isinstance(ex, tuple):  # an unknown session (404) or revision (400)
            if isinstance(message, Request):
                ex[1].request_id = message.id
            await self._refuse(send, caller, *ex, method=_method(message))
            return
        if isinstance(message, Notification):
            self.service.notified(ex, message)
            await respond(send, 202, b"", [(b"content-length", b"0")])
        elif isinstance(message, Response):
            if not self.service.answered(message):
                log.info(
                    "an agent's answer to %r found nothing waiting on this replica", message.id
                )
            await respond(send, 202, b"", [(b"content-length", b"0")])
        elif self.service.streams(ex, message) and _takes_events(caller.headers):
            await self._answer_as_stream(send, ex, message)
        else:
            await self._answer_as_json(send, ex, message)

    async def _read(
        self, scope: Scope, receive: Receive, headers: dict[str, str]
    ) -> Message | Refused:
        """The one message a POST carries, or why it is refused."""
        if not headers.get("content-type", "").startswith("application/json"):
            message = "Content-Type must be application/json"
            return 415, JsonRpcError(jsonrpc.INVALID_REQUEST, message), "unsupported_media_type"
        try:
            body = await read_body(scope, receive, headers, self.runtime.settings.max_body_bytes)
            return jsonrpc.parse(body)
        except BodyTooLargeError as exc:
            return 413, JsonRpcError(jsonrpc.INVALID_REQUEST, str(exc)), "body_too_large"
        except JsonRpcError as exc:
            code = "parse_error" if exc.rpc_code == jsonrpc.PARSE_ERROR else "invalid_request"
            return 400, exc, code
        except BadRequestError as exc:
            return 400, JsonRpcError(jsonrpc.INVALID_REQUEST, str(exc)), exc.code

    async def _refuse(
        self,
        send: Send,
        caller: Caller,
        status: int,
        exc: JsonRpcError,
        error: str,
        method: str = "",
    ) -> None:
        """Answer a message the gateway will not serve: an authenticated caller's
        refusal leaves a record, its id in the error's `data`."""
        record = await self.service.refused(caller.identity, caller.server, method, error)
        if record is not None:
            exc.data = {**(exc.data or {}), "record": record}
        await respond(send, status, jsonrpc.error_response(exc))

    def _exchange(self, caller: Caller) -> Exchange | Refused:
        """The request's session and revision, or the refusal: an id that is not a
        session of this caller is unknown (404: the client starts a new one)."""
        session: Session | None = None
        token = caller.headers.get("mcp-session-id")
        if token is not None:
            session = Session.read(token, caller.identity)
            if session is None:
                unknown = JsonRpcError(jsonrpc.INVALID_REQUEST, "Session not found")
                return 404, unknown, "unknown_session"
        version = caller.headers.get("mcp-protocol-version") or (
            session.version if session else ASSUMED_VERSION
        )
        if version not in SERVED_VERSIONS:
            message = f"Unsupported MCP-Protocol-Version {version!r}; served: "
            unserved = JsonRpcError(jsonrpc.INVALID_REQUEST, message + ", ".join(SERVED_VERSIONS))
            return 400, unserved, "unsupported_version"
        return Exchange(caller.identity, version, caller.server, session, headers=caller.headers)

    async def _initialize(self, send: Send, identity: Identity, request: Request) -> None:
        result, session = self.service.initialize(identity, request.params or {})
        extra: Headers = [(b"mcp-session-id", session.token().encode())]
        await respond(send, 200, jsonrpc.result_response(request.id, result), extra)

    async def _answer_as_json(self, send: Send, ex: Exchange, request: Request) -> None:
        try:
            result = await self._serve(ex, request)
        except JsonRpcError as exc:
            exc.request_id = request.id  # whichever layer raised it, it answers this request
            await respond(send, 200, jsonrpc.error_response(exc))
            return
        await respond(send, 200, jsonrpc.result_response(request.id, result))

    async def _serve(self, ex: Exchange, request: Request) -> dict[str, Any]:
        """The result. A call the agent cancels (`notifications/cancelled`) is answered
        with an error the agent ignores, as the specification asks; a fault of ours is
        -32603 with the request's id, logged, never a bare 500. A call counts against
        the replica's cap until its work ends (a dropped connection does not end it)."""
        runtime = self.runtime
        if not runtime.admit():
            busy = "too many calls in flight on this replica; try again shortly"
            raise JsonRpcError(jsonrpc.INTERNAL_ERROR, busy, request.id)
        task = asyncio.create_task(self.service.answer(ex, request))
        task.add_done_callback(lambda _: runtime.leave())
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():  # the agent's cancellation, not ours
                raise JsonRpcError(CANCELLED, "request cancelled", request.id) from None
            raise
        except JsonRpcError:
            raise
        except Exception as exc:
            log.exception("fault serving MCP %s", request.method)
            fault = "internal gateway error"
            raise JsonRpcError(jsonrpc.INTERNAL_ERROR, fault, request.id) from exc

    async def _answer_as_stream(self, send: Send, ex: Exchange, request: Request) -> None:
        start: Headers = [
            EVENT_STREAM,
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": start})

        async def emit(message: Message) -> None:
            await send({"type": "http.response.body", "body": _sse(message), "more_body": True})

        ex.emit = emit
        try:
            answer: Message = Response(request.id, result=await self._serve(ex, request))
        except JsonRpcError as exc:
            answer = Response(
                request.id, error=jsonrpc.ErrorObject(exc.rpc_code, str(exc), exc.data)
            )
        await send({"type": "http.response.body", "body": _sse(answer), "more_body": False})

    # -- GET: the agent's stream --------------------------------------------------------

    async def _stream(self, receive: Receive, send: Send, caller: Caller) -> None:
        if not _takes_events(caller.headers):
            await respond(
                send,
                406,
                _error_body(jsonrpc.INVALID_REQUEST, "Accept must include text/event-stream"),
            )
            return
        ex = self._exchange(caller)
        if isinstance(ex, tuple):
            await self._refuse(send, caller, *ex, method="GET")
            return
        start: Headers = [
            EVENT_STREAM,
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": start})
        watch = asyncio.create_task(self._watch_changes(ex, send))
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watch

    async def _watch_changes(self, ex: Exchange, send: Send) -> None:
        """`notifications/tools/list_changed` whenever the tools this caller may call
        are no longer those it could when the stream opened (or last told)."""
        seen = await self._visible_names(ex)
        idle = 0.0
        while True:
            await asyncio.sleep(CHANGES_EVERY_S)
            idle += CHANGES_EVERY_S
            now = await self._visible_names(ex)
            if now != seen:
                seen = now
                idle = 0.0
                changed = Notification("notifications/tools/list_changed")
                await send({"type": "http.response.body", "body": _sse(changed), "more_body": True})
            elif idle >= KEEPALIVE_S:
                idle = 0.0
                await send(
                    {"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True}
                )

    async def _visible_names(self, ex: Exchange) -> frozenset[tuple[str, str, str]]:
        try:
            shown = await self.service.visible(ex, fresh=False)
        except JsonRpcError:
            return frozenset()
        return frozenset((s.name, t.definition["name"], t.digest) for s, t in shown)

    async def close(self) -> None:
        await self.service.catalog.close()
