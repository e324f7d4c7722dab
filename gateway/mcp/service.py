"""What the gateway answers an agent's MCP requests with, whatever carried them.

`/mcp/<server>` fronts one tool server the pack declares; `/mcp` serves the union
of them, each tool named `<server>__<tool>` (a server's name never holds `__`).
One decision (`gateway.policy.tools.decide`) makes both `tools/list` (a tool the
caller may not call is not listed) and `tools/call` (it is refused, answered
exactly like a tool that does not exist, and recorded). Arguments pass the input
rules before the tool sees them; results, resources, prompts and log lines the
output rules before the agent does; definitions both. A server's resources and
prompts are served to the callers who may call one of its tools.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from cordon.errors import JsonRpcError, OutputBlockedError, RecordCommitError, ToolServerError
from cordon.ids import uuid7
from cordon.packs import Pack
from cordon.packs.tools import ToolGrant, ToolServer
from gateway import metrics, policy
from gateway.identity import Identity
from gateway.mcp import content, jsonrpc
from gateway.mcp.catalog import Catalog, Listed, refuse_request
from gateway.mcp.evidence import ToolCall, digest
from gateway.mcp.jsonrpc import Message, Notification, Request, Response
from gateway.mcp.limits import RateLimits
from gateway.mcp.session import Session, caller_key, negotiate
from gateway.mcp.upstream import Upstream
from gateway.policy import Decision, Outcome
from gateway.policy.tools import decide
from gateway.runtime import Runtime

__all__ = ["SEPARATOR", "Exchange", "McpService"]

log = logging.getLogger("cordon.gateway.mcp")
SEPARATOR = "__"
SERVER_INFO = {"name": "cordon-gateway", "version": "1"}
CAPABILITIES = {"tools": {"listChanged": True}, "resources": {}, "prompts": {}}
ANSWER_WITHIN_S = 300.0  # an agent's answer to a server's request (sampling, elicitation)
# Codes of the gateway's own refusals, in JSON-RPC's range for servers: each answer
# also says the record that names it (`data.record`).
BLOCKED = -32010
RATE_LIMITED = -32011
TIMED_OUT = -32012
UNAVAILABLE = -32013
NOT_RECORDED = -32014
CANCELLED = -32800

Emit = Callable[[Message], Awaitable[None]]


@dataclass
class Exchange:
    """One request of an agent: who, through which endpoint, and where to send what
    relates to it before its answer (its SSE stream; None when answered as JSON)."""

    identity: Identity
    version: str
    scope: str | None  # the server of /mcp/<server>; None for the union at /mcp
    session: Session | None = None
    emit: Emit | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # the request's (trace context)

    @property
    def endpoint(self) -> str:
        return "/mcp" if self.scope is None else f"/mcp/{self.scope}"


def refusal(code: int, message: str, request_id: Any = None, **data: Any) -> JsonRpcError:
    known = {key: value for key, value in data.items() if value is not None}
    return JsonRpcError(code, message, request_id, known or None)


RECORD_KEY = "cordon/record"  # in a result's `_meta`: the record that names the call


async def committed(commit: Coroutine[Any, Any, int | None]) -> int | None:
    """A record's commit, finished even if the call is cancelled meanwhile (the agent's
    `notifications/cancelled` as its tool answers): a side effect never loses its
    record. The cancellation is raised once the record is in."""
    task = asyncio.ensure_future(commit)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(RecordCommitError):
            await task
        raise


def receipt(call: ToolCall, seq: int | None) -> dict[str, Any]:
    """The record of a call, for the agent to quote (`seq` None: spooled, fail-open)."""
    return {RECORD_KEY: call.record_id, f"{RECORD_KEY}-seq": seq}


@dataclass
class Admitted:
    """A tools/call the pack's decision let through: what the steps after it share."""

    ex: Exchange
    call: ToolCall
    server: ToolServer
    grant: ToolGrant
    params: dict[str, Any]
    request_id: Any
    meta: dict[str, Any] = field(default_factory=dict)  # the request's `_meta`, checked


@dataclass
class McpService:
    runtime: Runtime
    catalog: Catalog = field(init=False)
    limits: RateLimits = field(default_factory=RateLimits)
    _in_flight: dict[tuple[str, str, Any], asyncio.Task[Any]] = field(default_factory=dict)
    _awaiting: dict[str, asyncio.Future[Response]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.catalog = Catalog(self.runtime)
        self._routes = self._handlers()

    # -- the lifecycle -------------------------------------------------------------

    def initialize(
        self, identity: Identity, params: dict[str, Any]
    ) -> tuple[dict[str, Any], Session]:
        version = negotiate(params.get("protocolVersion"))
        session = Session.opened(version, identity, params.get("capabilities"))
        result = {
            "protocolVersion": version,
            "capabilities": CAPABILITIES,
            "serverInfo": SERVER_INFO,
        }
        return result, session

    async def answer(self, ex: Exchange, request: Request) -> dict[str, Any]:
        """The result of `request`; `JsonRpcError` for an error answer."""
        handler = self._routes.get(request.method)
        if handler is None:
            raise JsonRpcError(jsonrpc.METHOD_NOT_FOUND, "Method not found", request.id)
        params = request.params or {}
        key = self._call_key(ex, request.id)
        task = asyncio.current_task()
        if task is not None:
            self._in_flight[key] = task
        try:
            return await handler(ex, request.id, params)
        finally:
            if self._in_flight.get(key) is task:
                self._in_flight.pop(key, None)

    def _handlers(
        self,
    ) -> dict[str, Callable[[Exchange, Any, dict[str, Any]], Awaitable[dict[str, Any]]]]:
        return {
            "ping": self._ping,
            "tools/list": self.list_tools,
            "tools/call": self.call_tool,
            "resources/list": self._list_resources,
            "resources/templates/list": self._list_templates,
            "resources/read": self._read_resource,
            "prompts/list": self._list_prompts,
            "prompts/get": self._get_prompt,
        }

    async def _ping(self, ex: Exchange, request_id: Any, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def refused(
        self, identity: Identity, scope: str | None, method: str, error: str
    ) -> str | None:
        """Record a message refused before it was served (unreadable, too large, an
        unknown session): its record's id, or None if none could be committed."""
        active = self.runtime.packs.current
        declared = scope is not None and active.pack.tools.server(scope) is not None
        endpoint = "/mcp" if scope is None else f"/mcp/{scope}"
        call = ToolCall(
            self.runtime, identity, active, endpoint, scope or "", "", declared, method=method
        )
        try:
            await call.commit("error", error)
        except RecordCommitError as exc:
            log.error("record of a refused MCP message not committed: %s", exc)
            return None
        return call.record_id

    @staticmethod
    def _call_key(ex: Exchange, request_id: Any) -> tuple[str, str, Any]:
        """A call in flight, as its agent names it: its caller, its session (agents
        sharing a credential number their requests alike) and its id."""
        session = ex.session.nonce if ex.session is not None else ""
        return caller_key(ex.identity), session, request_id

    def notified(self, ex: Exchange, notification: Notification) -> None:
        """An agent's notification: a cancellation stops its call here (and upstream)."""
        if notification.method != "notifications/cancelled":
            return
        request_id = (notification.params or {}).get("requestId")
        task = self._in_flight.get(self._call_key(ex, request_id))
        if task is not None:
            task.cancel()

    def answered(self, response: Response) -> bool:
        """An agent's answer to a server's request relayed to it; False if none waits
        for it on this replica."""
        waiting = self._awaiting.get(str(response.id))
        if waiting is None or waiting.done():
            return False
        waiting.set_result(response)
        return True

    # -- tools --------------------------------------------------------------------

    def streams(self, ex: Exchange, request: Request) -> bool:
        """Whether `request` is answered as an event stream: it asked for progress, or
        the server it calls may send the agent requests of its own."""
        params = request.params or {}
        meta = params.get("_meta")
        if isinstance(meta, dict) and "progressToken" in meta:
            return True
        if request.method != "tools/call" or not isinstance(params.get("name"), str):
            return False
        server = self.runtime.packs.current.pack.tools.server(self._named(ex, params["name"])[0])
        return server is not None and bool(server.allow_requests)

    def servers(self, ex: Exchange) -> list[ToolServer]:
        """The servers `ex` reaches: its one, or every server the pack declares."""
        tools = self.runtime.packs.current.pack.tools
        if ex.scope is None:
            return list(tools.servers)
        server = tools.server(ex.scope)
        return [server] if server is not None else []

    async def visible(self, ex: Exchange, fresh: bool) -> list[tuple[ToolServer, Listed]]:
        """Every tool the caller may call now, as its server lists it."""
        pack = self.runtime.packs.current.pack
        servers = self.servers(ex)
        listings = await asyncio.gather(
            *(self.catalog.listing(s, fresh) for s in servers), return_exceptions=True
        )
        shown: list[tuple[ToolServer, Listed]] = []
        for server, listing in zip(servers, listings, strict=True):
            if isinstance(listing, BaseException):
                if ex.scope is not None:
                    raise refusal(UNAVAILABLE, f"tool server {server.name!r} is unavailable")
                log.warning("tool server %s left out of the union: %s", server.name, listing)
                continue
            for name, listed in listing.items():
                if decide(pack.tools, ex.identity, server.name, name, listed.digest).allowed:
                    shown.append((server, listed))
        return shown

    async def list_tools(
        self, ex: Exchange, request_id: Any, params: dict[str, Any]
    ) -> dict[str, Any]:
        pack = self.runtime.packs.current.pack
        words = policy.output_policy(pack, None, both_ways=True)
        tools = []
        for server, listed in await self.visible(ex, fresh=True):
            definition = dict(listed.definition)
            if words is not None:
                try:
                    definition = content.map_definition(definition, words)
                except OutputBlockedError as exc:
                    log.warning(
                        "tool %s of %s hidden: rule %s",
                        definition["name"],
                        server.name,
                        exc.rule_id,
                    )
                    continue
            if ex.scope is None:
                definition["name"] = f"{server.name}{SEPARATOR}{definition['name']}"
            tools.append(definition)
        return {"tools": tools}

    def _named(self, ex: Exchange, name: str) -> tuple[str, str]:
        """The server and the tool a name in `ex`'s endpoint means."""
        if ex.scope is not None:
            return ex.scope, name
        server, separator, tool = name.partition(SEPARATOR)
        return (server, tool) if separator else ("", name)

    async def call_tool(
        self, ex: Exchange, request_id: Any, params: dict[str, Any]
    ) -> dict[str, Any]:
        name, arguments = params.get("name"), params.get("arguments") or {}
        if not isinstance(name, str) or not isinstance(arguments, dict):
            record = await self.refused(ex.identity, ex.scope, "tools/call", "invalid_params")
            message = "tools/call needs a name and object arguments"
            raise refusal(jsonrpc.INVALID_PARAMS, message, request_id, record=record)
        active = self.runtime.packs.current
        server_name, tool_name = self._named(ex, name)
        server = active.pack.tools.server(server_name)
        grant = server.grant(tool_name) if server is not None else None
        call = ToolCall(
            self.runtime,
            ex.identity,
            active,
            ex.endpoint,
            server_name,
            tool_name,
            server_declared=server is not None,
            declared=grant is not None,
        )
        call.arguments_digest = digest(arguments)
        if self.runtime.tracing.on:
            call.span = self.runtime.tracing.start("execute_tool", "mcp", ex.headers)
            tool = {"gen_ai.tool.name": call.labels_tool, "cordon.tool.server": call.labels_server}
            call.span.set(tool)  # names the pack declares: a trace may leave the region
        if server is None or grant is None or grant.digest is None:
            await self._refuse_unknown(call, name, request_id, "")
        assert server is not None and grant is not None
        try:
            listed = (await self.catalog.listing(server)).get(tool_name)
        except ToolServerError:
            await self._unavailable(call, request_id)
        await self._refuse_unknown(call, name, request_id, listed.digest if listed else "")
        admitted = Admitted(ex, call, server, grant, params, request_id)
        return await self._admitted(admitted, arguments)

    async def _refuse_unknown(
        self, call: ToolCall, name: str, request_id: Any, current: str
    ) -> None:
        """Refuse (and record) a tool the caller may not call, as if it did not exist:
        the answer says nothing of what the pack declares. Returns if it may."""
        pack = call.active.pack
        access = decide(pack.tools, call.identity, call.server, call.tool, current)
        if access.allowed:
            return
        call.decision.fired(f"tools:{access.reason}", "block")
        await self._fail(
            call,
            "block",
            access.reason,
            jsonrpc.INVALID_PARAMS,
            f"Unknown tool: {name}",
            request_id,
        )

    async def _fail(
        self, call: ToolCall, outcome: Outcome, error: str, code: int, message: str, request_id: Any
    ) -> NoReturn:
        """Record the call's outcome, then raise the agent's JSON-RPC error."""
        data: dict[str, Any] = {"record": call.record_id}
        try:
            await call.commit(outcome, error)
        except RecordCommitError as exc:
            log.error("record %s of a refused tool call not committed: %s", call.record_id, exc)
            data = {}
        raise refusal(code, message, request_id, **data)

    async def _admitted(self, a: Admitted, arguments: dict[str, Any]) -> dict[str, Any]:
        call, grant, request_id = a.call, a.grant, a.request_id
        pack = call.active.pack
        bucket = (caller_key(a.ex.identity), a.server.name, grant.name)
        if grant.rate is not None and not self.limits.take(bucket, grant.rate):
            message = f"rate limit of {grant.name!r} reached; try again shortly"
            await self._fail(call, "block", "rate_limited", RATE_LIMITED, message, request_id)
        with call.span.child("cordon.policy"):
            outbound, a.meta = self._checked_arguments(call, pack, arguments, a.params.get("_meta"))
        if call.decision.blocked_by is not None:
            message = f"blocked by policy rule {call.decision.blocked_by}"
            error = "content_policy_violation"
            await self._fail(call, "block", error, BLOCKED, message, request_id)
        call.arguments = outbound if pack.record_content == "redacted" else arguments
        call.arguments_digest = digest(outbound)
        unrecorded = "the intent record could not be committed, so the tool was not called"
        if not call.can_record():
            error = "record_commit_failed"
            await self._fail(call, "error", error, NOT_RECORDED, unrecorded, request_id)
        try:
            await committed(call.commit_intent())
        except RecordCommitError:
            metrics.TOOL_CALLS.labels(a.server.name, grant.name, "commit_failed").inc()
            raise refusal(NOT_RECORDED, unrecorded, request_id) from None
        except asyncio.CancelledError:  # the intent is in; the tool is not called
            with contextlib.suppress(RecordCommitError):
                await committed(call.commit("cancelled", "cancelled_by_agent"))
            raise
        return await self._forward(a, outbound)

    def _checked_arguments(
        self, call: ToolCall, pack: Pack, arguments: dict[str, Any], meta: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The arguments and the request's `_meta` as the tool may see them: both
        through the input rules (the agent's progress token is the gateway's to send)."""
        extra = (
            {k: v for k, v in meta.items() if k != "progressToken"}
            if isinstance(meta, dict)
            else {}
        )
        payload = policy.apply_input(
            pack,
            content.Arguments(),
            {"arguments": arguments, "meta": extra},
            call.identity,
            call.decision,
        )
        outbound, checked = payload.get("arguments"), payload.get("meta")
        return (
            outbound if isinstance(outbound, dict) else {},
            checked if isinstance(checked, dict) else {},
        )

    async def _forward(self, a: Admitted, outbound: dict[str, Any]) -> dict[str, Any]:
        call, grant, request_id = a.call, a.grant, a.request_id
        forwarded: dict[str, Any] = {"name": grant.name, "arguments": outbound}
        relay = Relay(self, a.ex, call, a.server, a.params)
        meta = dict(a.meta)
        if relay.minted is not None:
            meta["progressToken"] = relay.minted
        if meta:
            forwarded["_meta"] = meta
        started = time.perf_counter()
        try:
            upstream = await self.catalog.upstream(a.server)
            with call.span.child("cordon.upstream"):
                async with asyncio.timeout(grant.timeout_s):
                    result = await upstream.request(
                        "tools/call",
                        forwarded,
                        within_s=grant.timeout_s + 1,
                        on_message=relay.take,
                    )
        except TimeoutError:
            call.upstream_ms = (time.perf_counter() - started) * 1000
            late = f"tool {grant.name!r} did not answer within {grant.timeout_s:g} s"
            await self._fail(call, "upstream_unavailable", "timeout", TIMED_OUT, late, request_id)
        except ToolServerError as exc:
            call.upstream_ms = (time.perf_counter() - started) * 1000
            if exc.rpc_code is None:
                await self._unavailable(call, request_id)
            await self._protocol_error(call, exc, request_id)
        except asyncio.CancelledError:
            call.upstream_ms = (time.perf_counter() - started) * 1000
            with contextlib.suppress(RecordCommitError):
                await committed(call.commit("cancelled", "cancelled_by_agent"))
            raise
        call.upstream_ms = (time.perf_counter() - started) * 1000
        metrics.TOOL_UPSTREAM.labels(a.server.name).observe(call.upstream_ms / 1000)
        return await self._release(call, result, request_id)

    async def _unavailable(self, call: ToolCall, request_id: Any) -> NoReturn:
        """The tool server could not be had: recorded, and answered with words of the
        gateway's own (a server's are never relayed unfiltered)."""
        away = f"tool server {call.server!r} is unavailable"
        error = "tool_server_unavailable"
        await self._fail(call, "upstream_unavailable", error, UNAVAILABLE, away, request_id)

    async def _protocol_error(
        self, call: ToolCall, exc: ToolServerError, request_id: Any
    ) -> NoReturn:
        """The tool server's JSON-RPC error, its message through the output rules."""
        message = str(exc)
        apply = policy.output_policy(call.active.pack, call.decision)
        try:
            message = apply(message) if apply is not None else message
        except OutputBlockedError:
            message = "the tool server's error was withheld by policy"
        assert exc.rpc_code is not None
        await self._fail(
            call, "protocol_error", f"rpc_{exc.rpc_code}", exc.rpc_code, message, request_id
        )

    async def _release(
        self, call: ToolCall, result: dict[str, Any], request_id: Any
    ) -> dict[str, Any]:
        """The result through the output rules, recorded, then released."""
        released = await self._filtered(call, result, request_id, "the tool's result")
        outcome: Outcome | None = "tool_error" if result.get("isError") is True else None
        meta = released.get("_meta") if isinstance(released, dict) else None
        answer = {**released, "_meta": meta if isinstance(meta, dict) else {}}
        try:
            seq = await committed(call.commit(outcome))
        except RecordCommitError:
            raise refusal(
                NOT_RECORDED,
                "the tool ran, but its record could not be committed: the result is withheld",
                request_id,
                intent=call.intent_id,
            ) from None
        answer["_meta"].update(receipt(call, seq))
        return answer

    # -- resources and prompts ------------------------------------------------------

    async def _reachable(self, ex: Exchange) -> list[ToolServer]:
        """Servers whose resources and prompts the caller may see: one of its tools."""
        shown = await self.visible(ex, fresh=False)
        names = {server.name for server, _ in shown}
        return [s for s in self.servers(ex) if s.name in names]

    async def _gathered(self, ex: Exchange, method: str, key: str, rename: str) -> dict[str, Any]:
        items: list[Any] = []
        for server in await self._reachable(ex):
            try:
                upstream = await self.catalog.upstream(server)
                page = await upstream.request(method, within_s=10.0)
            except ToolServerError as exc:
                log.warning("%s of %s left out: %s", method, server.name, exc)
                continue
            for item in page.get(key) or []:
                if (
                    isinstance(item, dict)
                    and isinstance(item.get(rename), str)
                    and ex.scope is None
                ):
                    item = {**item, rename: f"{server.name}{SEPARATOR}{item[rename]}"}
                items.append(item)
        words = policy.output_policy(self.runtime.packs.current.pack, None, both_ways=True)
        if words is not None:
            with contextlib.suppress(OutputBlockedError):
                return {key: content.map_definition(items, words)}
            return {key: []}
        return {key: items}

    async def _list_resources(
        self, ex: Exchange, request_id: Any, params: dict[str, Any]
    ) -> dict[str, Any]:
        return await self._gathered(ex, "resources/list", "resources", "uri")

    async def _list_templates(
        self, ex: Exchange, request_id: Any, params: dict[str, Any]
    ) -> dict[str, Any]:
        return await self._gathered(
            ex, "resources/templates/list", "resourceTemplates", "uriTemplate"
        )

    async def _list_prompts(
        self, ex: Exchange, request_id: Any, params: dict[str, Any]
    ) -> dict[str, Any]:
        return await self._gathered(ex, "prompts/list", "prompts", "name")

    async def _addressed(
        self, ex: Exchange, method: str, value: Any, request_id: Any
    ) -> tuple[ToolCall, Upstream, str]:
        """A read (`resources/read`, `prompts/get`) of a resource URI or a prompt name:
        its record, the connection, and the server's own name for it."""
        if not isinstance(value, str):
            raise JsonRpcError(jsonrpc.INVALID_PARAMS, "a name or uri is needed", request_id)
        server_name, own = self._named(ex, value)
        for server in await self._reachable(ex):
            if server.name != server_name:
                continue
            active = self.runtime.packs.current
            read = ToolCall(
                self.runtime,
                ex.identity,
                active,
                ex.endpoint,
                server.name,
                own,
                True,
                method=method,
            )
            try:
                return read, await self.catalog.upstream(server), own
            except ToolServerError:
                await self._unavailable(read, request_id)
        raise JsonRpcError(jsonrpc.INVALID_PARAMS, f"Unknown: {value}", request_id)

    async def _read_resource(
        self, ex: Exchange, request_id: Any, params: dict[str, Any]
    ) -> dict[str, Any]:
        read, upstream, uri = await self._addressed(
            ex, "resources/read", params.get("uri"), request_id
        )
        checked = await self._checked(read, {"uri": uri}, request_id)
        if read.active.pack.record_content != "full":  # the record names it as sent
            read.tool = str(checked.get("uri", ""))
        return await self._relayed(read, upstream, {"uri": checked.get("uri", "")}, request_id)

    async def _get_prompt(
        self, ex: Exchange, request_id: Any, params: dict[str, Any]
    ) -> dict[str, Any]:
        read, upstream, name = await self._addressed(
            ex, "prompts/get", params.get("name"), request_id
        )
        arguments = params.get("arguments") or {}
        if not isinstance(arguments, dict):
            raise JsonRpcError(jsonrpc.INVALID_PARAMS, "arguments is an object", request_id)
        checked = await self._checked(read, arguments, request_id)
        return await self._relayed(read, upstream, {"name": name, "arguments": checked}, request_id)

    async def _checked(
        self, read: ToolCall, values: dict[str, Any], request_id: Any
    ) -> dict[str, Any]:
        """`values` a read sends the server, through the input rules (a block refuses)."""
        pack = read.active.pack
        payload = policy.apply_input(
            pack, content.Arguments(), {"arguments": values}, read.identity, read.decision
        )
        if read.decision.blocked_by is not None:
            message = f"blocked by policy rule {read.decision.blocked_by}"
            await self._fail(
                read, "block", "content_policy_violation", BLOCKED, message, request_id
            )
        checked = payload.get("arguments")
        read.arguments = checked if pack.record_content == "redacted" else values
        read.arguments_digest = digest(checked)
        return checked if isinstance(checked, dict) else {}

    async def _filtered(self, call: ToolCall, result: Any, request_id: Any, what: str) -> Any:
        """A server's `result` through the pack's output rules, its digest and what the
        record keeps noted; a block fails the call (recorded), saying `what` was withheld."""
        call.result_digest = digest(result)
        released = result
        apply = policy.output_policy(call.active.pack, call.decision)
        if apply is not None:
            try:
                released = content.map_released(result, apply)
            except OutputBlockedError as exc:
                call.decision.fired(exc.rule_id, "block")
                withheld = f"{what} was withheld: blocked by policy rule {exc.rule_id}"
                await self._fail(
                    call, "block", "content_policy_violation", BLOCKED, withheld, request_id
                )
        call.released = released if call.active.pack.record_content == "redacted" else result
        return released

    async def _relayed(
        self, read: ToolCall, upstream: Upstream, params: dict[str, Any], request_id: Any
    ) -> dict[str, Any]:
        """A read's answer, through the output rules, recorded, then released. A read has
        no side effect: it has its decision record only."""
        started = time.perf_counter()
        try:
            result = await upstream.request(read.method, params, within_s=30.0)
        except ToolServerError as exc:
            read.upstream_ms = (time.perf_counter() - started) * 1000
            if exc.rpc_code is None:
                await self._unavailable(read, request_id)
            await self._protocol_error(read, exc, request_id)
        read.upstream_ms = (time.perf_counter() - started) * 1000
        released = await self._filtered(read, result, request_id, "the answer")
        try:
            await committed(read.commit())
        except RecordCommitError:
            message = "the read's record could not be committed: its answer is withheld"
            raise refusal(NOT_RECORDED, message, request_id) from None
        return released if isinstance(released, dict) else {}

    # -- what a server sends during a call -----------------------------------------

    async def ask_agent(self, ex: Exchange, request: Request) -> Response:
        """Relay a server's request to the agent on its call's stream; its answer."""
        assert ex.emit is not None
        minted = f"cordon-{uuid7()}"
        waiting: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._awaiting[minted] = waiting
        try:
            await ex.emit(Request(minted, request.method, request.params))
            async with asyncio.timeout(ANSWER_WITHIN_S):
                answer = await waiting
        finally:
            self._awaiting.pop(minted, None)
        return Response(request.id, answer.result, answer.error)


class Relay:
    """What a tool server sends while one call runs: progress for the agent's token,
    log lines through the output rules, and its requests to the agent — relayed only
    if the pack allows that kind for this server and the agent offered it, refused
    otherwise; recorded either way."""

    def __init__(
        self,
        service: McpService,
        ex: Exchange,
        call: ToolCall,
        server: ToolServer,
        params: dict[str, Any],
    ) -> None:
        self.service, self.ex, self.call, self.server = service, ex, call, server
        meta = params.get("_meta")
        token = meta.get("progressToken") if isinstance(meta, dict) else None
        self.token = token
        self.minted = f"cordon-{uuid7()}" if token is not None and ex.emit is not None else None

    async def take(self, message: Request | Notification) -> None:
        if isinstance(message, Request):
            await self._server_request(message)
            return
        if self.ex.emit is None:
            return
        params = dict(message.params or {})
        if message.method == "notifications/progress":
            if self.minted is None or params.get("progressToken") != self.minted:
                return
            params["progressToken"] = self.token
        apply = policy.output_policy(self.call.active.pack, None)
        if apply is not None:
            try:
                params = content.map_released(params, apply)
            except OutputBlockedError:
                return  # a log line or progress message a block rule withholds
        await self.ex.emit(Notification(message.method, params))

    async def _server_request(self, request: Request) -> None:
        upstream = await self.service.catalog.upstream(self.server)
        kind = request.method.split("/", 1)[0]
        offered = self.ex.session is not None and kind in self.ex.session.capabilities
        record = ToolCall(
            self.call.runtime,
            self.call.identity,
            self.call.active,
            self.call.endpoint,
            self.call.server,
            self.call.tool,
            self.call.server_declared,
            self.call.declared,
            method=request.method,
        )
        record.arguments_digest = digest(request.params or {})
        if kind not in self.server.allow_requests or not offered or self.ex.emit is None:
            why = (
                "the pack does not allow it"
                if kind not in self.server.allow_requests
                else "the agent cannot answer it here"
            )
            record.decision.fired(f"tools:{kind}_not_allowed", "block")
            await refuse_request(upstream, request, why)
            with contextlib.suppress(RecordCommitError):
                await committed(record.commit("block", f"{kind}_refused"))
            return
        relayed = self._outbound(record, request)
        if relayed is None:  # a rule withholds what the server asks: the agent never sees it
            await refuse_request(upstream, request, "withheld by policy")
            with contextlib.suppress(RecordCommitError):
                await committed(record.commit("block", "content_policy_violation"))
            return
        try:  # evidence first: a request the agent answers is recorded before it is asked
            await committed(record.commit())
        except RecordCommitError:
            await refuse_request(upstream, request, "its record could not be committed")
            return
        try:
            answer = await self.service.ask_agent(self.ex, relayed)
        except TimeoutError:
            await refuse_request(upstream, request, "the agent did not answer")
            return
        with contextlib.suppress(ToolServerError):
            await upstream.respond(self._inbound(answer))

    def _outbound(self, record: ToolCall, request: Request) -> Request | None:
        """A server's request as the agent may see it: through the output rules (its
        messages become the agent's prompt, its text the person's screen); None if a
        block rule withholds it."""
        apply = policy.output_policy(record.active.pack, record.decision)
        if apply is None:
            return request
        try:
            params = content.map_released(request.params or {}, apply)
        except OutputBlockedError as exc:
            record.decision.fired(exc.rule_id, "block")
            return None
        return Request(request.id, request.method, params)

    def _inbound(self, answer: Response) -> Response:
        """The agent's answer as the server may see it: through the input rules (a
        block answers the server a refusal instead)."""
        if answer.result is None:
            return answer
        decision = Decision()
        payload = policy.apply_input(
            self.call.active.pack,
            content.Arguments(),
            {"arguments": answer.result},
            self.call.identity,
            decision,
        )
        if decision.blocked_by is not None:
            refused = jsonrpc.ErrorObject(-1, f"refused by policy rule {decision.blocked_by}")
            return Response(answer.id, error=refused)
        result = payload.get("arguments")
        return Response(answer.id, result if isinstance(result, dict) else {})
