"""The gateway's HTTP surface: OpenAI- and Anthropic-compatible APIs, health, metrics.

A plain ASGI app: the hot path pays for no framework routing or middleware.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from cordon.errors import AuthError
from gateway import metrics
from gateway.http import calls, dialects
from gateway.http.asgi import Receive, Scope, Send, request_headers, respond, respond_json
from gateway.runtime import Runtime

if TYPE_CHECKING:  # loaded with the first call to it (`GatewayApp.mcp`)
    from gateway.http.mcp import McpEndpoint

log = logging.getLogger("cordon.gateway")
Handler = Callable[[Scope, Receive, Send], Awaitable[None]]
# What the MCP endpoint serves (as `McpEndpoint.serves` says), known without loading it.
MCP_PATHS = ("/mcp/", "/.well-known/oauth-protected-resource")


class GatewayApp:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._mcp: McpEndpoint | None = None
        self.routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/chat/completions"): self._call(dialects.CHAT),
            ("POST", "/v1/embeddings"): self._call(dialects.EMBEDDINGS),
            ("POST", "/v1/responses"): self._call(dialects.RESPONSES),
            ("POST", "/v1/messages"): self._call(dialects.MESSAGES),
            ("GET", "/v1/models"): self.models,
            ("GET", "/healthz"): self.healthz,
            ("GET", "/readyz"): self.readyz,
            ("GET", "/metrics"): self.metrics,
            ("GET", "/v1/cordon/policy"): self.policy_status,
            ("GET", "/v1/cordon/pack"): self.signed_pack,
        }

    @property
    def mcp(self) -> McpEndpoint:
        """The MCP endpoint, made on first use: it and `gateway.mcp` are about 0.8 MB
        resident, and most gateways (a sidecar above all) never get a tool call."""
        if self._mcp is None:
            from gateway.http.mcp import McpEndpoint

            self._mcp = McpEndpoint(self.runtime)
        return self._mcp

    async def close_mcp(self) -> None:
        """Stop the tool servers this gateway started, if it ever served MCP."""
        if self._mcp is not None:
            await self._mcp.close()

    def _call(self, dialect: dialects.Dialect) -> Handler:
        async def handler(scope: Scope, receive: Receive, send: Send) -> None:
            await calls.handle(self.runtime, dialect, scope, receive, send)

        return handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        handler = self.routes.get((scope["method"], scope["path"]))
        path = scope["path"]
        if handler is None and (path == "/mcp" or path.startswith(MCP_PATHS)):
            handler = self.mcp
        if handler is None:
            await self._not_found(scope, send)
            return
        try:
            await handler(scope, receive, send)
        except Exception:
            # The call routes answer their own faults with a record (calls._fault); this
            # is the last resort for the rest. If the answer had begun, uvicorn closes it.
            log.exception("unexpected error serving %s %s", scope["method"], scope["path"])
            dialect = dialects.for_path(scope["path"])
            body = dialect.refusal(500, "internal gateway error", "internal_error")
            with contextlib.suppress(Exception):
                await respond(send, 500, body)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await serve_lifespan(receive, send, self.runtime.start, self._stop)

    async def _stop(self) -> None:
        await self.close_mcp()  # tool servers the replica started stop with it
        await self.runtime.stop()

    async def _not_found(self, scope: Scope, send: Send) -> None:
        allowed = sorted(method for method, path in self.routes if path == scope["path"])
        dialect = dialects.for_path(scope["path"])
        message = f"{scope['method']} {scope['path']} is not served here"
        if not allowed:
            await respond(send, 404, dialect.refusal(404, message, "not_found"))
            return
        body = dialect.refusal(405, message, "method_not_allowed")
        await respond(send, 405, body, [(b"allow", ", ".join(allowed).encode())])

    async def models(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The models the active pack routes; Anthropic's shape when asked by its SDK."""
        headers = request_headers(scope)
        anthropic = "anthropic-version" in headers
        dialect = dialects.MESSAGES if anthropic else dialects.CHAT
        try:
            self.runtime.auth.of_request(headers)
        except AuthError as exc:
            await respond(send, exc.status, dialect.error_of(exc))
            return
        router = self.runtime.packs.current.router
        if anthropic:
            data = [
                {"type": "model", "id": m, "display_name": m, "created_at": "1970-01-01T00:00:00Z"}
                for m, _ in router.listed_models("anthropic")
            ]
            first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
            await respond_json(
                send, 200, {"data": data, "has_more": False, "first_id": first, "last_id": last}
            )
            return
        listed = [
            {"id": m, "object": "model", "created": 0, "owned_by": target}
            for m, target in router.listed_models("openai")
        ]
        await respond_json(send, 200, {"object": "list", "data": listed})

    async def healthz(self, scope: Scope, receive: Receive, send: Send) -> None:
        await respond_json(send, 200, {"status": "ok"})

    async def readyz(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings = self.runtime.settings
        ready = self.runtime.ready
        body = {"ready": ready, "region": settings.region, "replica": settings.replica}
        await respond_json(send, 200 if ready else 503, body)

    async def metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Imported here: the in-process SDK serves no /metrics and never loads it
        # (gateway.metrics).
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        await respond(
            send, 200, generate_latest(), [(b"content-type", CONTENT_TYPE_LATEST.encode())]
        )

    async def signed_pack(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The active pack exactly as its owner (or a sidecar, of its own file) signed it,
        for tokens with the `policy` role only (an in-process SDK's source): it reads the
        policy, nothing of the admin surface. `If-None-Match` with the last ETag: 304."""
        headers = request_headers(scope)
        runtime = self.runtime
        try:
            runtime.settings.admin_tokens.authorize(
                headers.get("authorization"), ("policy",), runtime.settings.region
            )
        except AuthError as exc:
            await respond(send, exc.status, dialects.CHAT.error_of(exc))
            return
        signed, active = runtime.packs.signed, runtime.packs.active
        if signed is None:
            message = "no signed pack is active here (only the built-in default)"
            await respond(send, 404, dialects.CHAT.refusal(404, message, "not_found"))
            return
        etag = f'"{active.revision}-{active.hash.removeprefix("sha256:")[:16]}"'.encode()
        tags = [(b"etag", etag), (b"x-cordon-pack-revision", str(active.revision).encode())]
        if headers.get("if-none-match", "").encode() == etag:
            await respond(send, 304, b"", tags)
            return
        await respond(send, 200, signed, [(b"content-type", b"application/json"), *tags])

    async def policy_status(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The active pack, the last refusal, whether RECORDS keeps records as long as
        the pack asks, and each provider target's circuit. For `admin` tokens only."""
        headers = request_headers(scope)
        try:
            self.runtime.settings.admin_tokens.authorize(
                headers.get("authorization"), ("admin",), self.runtime.settings.region
            )
        except AuthError as exc:  # 401, or 403 for a token without the admin role
            await respond(send, exc.status, dialects.CHAT.error_of(exc))
            return
        shortfall = await self.runtime.retention_shortfall()
        router = self.runtime.packs.current.router
        targets = [
            {"id": t.id, "api": t.api, "circuit": router.breakers.state(t.id)}
            for t in router.targets
        ]
        await respond(
            send,
            200,
            json.dumps(
                {
                    **self.runtime.packs.status(),
                    "source": self.runtime.source_status() if self.runtime.source_status else None,
                    "records_retention_shortfall": shortfall,
                    "targets": targets,
                }
            ).encode(),
        )


async def serve_lifespan(
    receive: Receive,
    send: Send,
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
) -> None:
    """The ASGI lifespan protocol around `start` and `stop`: a failed start is said to the
    server (which then exits) with its reason, never swallowed."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await start()
            except Exception as exc:
                log.exception("failed to start")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await stop()
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_app(runtime: Runtime) -> GatewayApp:
    """The replica's ASGI app over `runtime` (production: `build_runtime(settings)`)."""
    metrics.PACK_REVISION.set(0)
    return GatewayApp(runtime)
