"""An upstream MCP server over Streamable HTTP: the dev tool server (the official SDK),
stateless and stateful, served by uvicorn on loopback, and a scripted server that
frames its answers as the wire allows and the SDK never does. The handshake settles
the revision; results, tool errors and protocol errors come back as the stdio
upstream gives them; progress reaches the caller before the result; a cancelled or
timed-out call leaves the server usable; a server that ends its session gets a new
one without the caller noticing; one that is not there fails at once."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from cordon.errors import ToolServerError
from cordon_dev import tool_server
from cordon_dev.inprocess import serve_in_loop
from cordon_dev.procs import free_port
from gateway.mcp import jsonrpc
from gateway.mcp.http_upstream import HttpUpstream
from gateway.mcp.jsonrpc import Notification, Request
from gateway.mcp.upstream import connect
from gateway.upstream.httpclient import HttpClient
from tests.gateway.mcp.test_stdio import DEV_TOOL_NAMES, cancel_after_first_progress
from tests.helpers import asgi_body

pytestmark = [pytest.mark.servers, pytest.mark.timeout(60)]

ASGI = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


@pytest.fixture(scope="module")
async def stateless_url() -> AsyncIterator[str]:
    async with serve_in_loop(tool_server.app(), lifespan="on") as base:
        yield f"{base}/mcp"


@pytest.fixture(scope="module")
async def stateful_url() -> AsyncIterator[str]:
    app = tool_server.build().streamable_http_app()  # issues session ids
    async with serve_in_loop(app, lifespan="on") as base:
        yield f"{base}/mcp"


@pytest.fixture(scope="module", params=["httpx", "gateway-client"])
def poster(request: pytest.FixtureRequest) -> Iterator[HttpClient | None]:
    """Both clients an upstream's POSTs may go by: httpx (the CLI's), or the replica's
    own (the providers' client, which a gateway hands its upstreams)."""
    if request.param == "httpx":
        yield None
        return
    client = HttpClient()
    yield client
    client.close()


@pytest.fixture(scope="module")
async def tools(stateless_url: str, poster: HttpClient | None) -> AsyncIterator[HttpUpstream]:
    upstream = HttpUpstream(
        "dev-tools", stateless_url, headers={"Authorization": "Bearer ours"}, poster=poster
    )
    await upstream.start()
    try:
        yield upstream
    finally:
        await upstream.close()


async def test_the_handshake_settles_the_latest_revision(tools: HttpUpstream) -> None:
    hello = tools.initialized
    assert hello is not None and hello["protocolVersion"] == "2025-11-25"
    assert hello["serverInfo"]["name"] == "cordon-dev-tools" and "tools" in hello["capabilities"]
    assert tools.session_id is None  # a stateless server issues none
    await tools.start()  # started already: nothing happens
    assert tools.initialized is hello and tools.running


async def test_tools_list_and_call(tools: HttpUpstream) -> None:
    listed = await tools.request("tools/list")
    assert {tool["name"] for tool in listed["tools"]} == DEV_TOOL_NAMES
    echoed = await tools.request("tools/call", {"name": "echo", "arguments": {"text": "hi"}})
    assert echoed["content"][0]["text"] == "hi" and not echoed.get("isError")
    failed = await tools.request("tools/call", {"name": "fail", "arguments": {}})
    assert failed["isError"] is True  # a tool error is a result, not a JSON-RPC error


async def test_a_json_rpc_error_keeps_its_code(tools: HttpUpstream) -> None:
    with pytest.raises(ToolServerError) as refused:
        await tools.request("no/such/method")
    assert refused.value.rpc_code == jsonrpc.METHOD_NOT_FOUND


async def test_progress_reaches_the_caller_before_the_result(tools: HttpUpstream) -> None:
    seen: list[object] = []

    async def sink(message: Request | Notification) -> None:
        seen.append(message)

    params = {"name": "slow", "arguments": {"seconds": 0.2, "steps": 2}}
    await tools.request(
        "tools/call", {**params, "_meta": {"progressToken": "h-1"}}, on_message=sink
    )
    seen.append("result")
    progress = [m for m in seen if isinstance(m, Notification)]
    assert [m.method for m in progress] == ["notifications/progress"] * 2
    assert [m.params and m.params["progress"] for m in progress] == [1, 2]
    assert seen[-1] == "result" and len(seen) == 3


async def test_a_cancelled_call_ends_at_once_and_the_server_stays_usable(
    tools: HttpUpstream,
) -> None:
    await cancel_after_first_progress(tools)
    echoed = await tools.request("tools/call", {"name": "echo", "arguments": {"text": "next"}})
    assert echoed["content"][0]["text"] == "next"


async def test_a_call_past_its_deadline_fails_and_the_server_stays_usable(
    tools: HttpUpstream,
) -> None:
    params = {"name": "slow", "arguments": {"seconds": 20, "steps": 1}}
    with pytest.raises(ToolServerError, match="no answer") as late:
        await tools.request("tools/call", params, within_s=0.3)
    assert late.value.rpc_code is None
    echoed = await tools.request("tools/call", {"name": "echo", "arguments": {"text": "after"}})
    assert echoed["content"][0]["text"] == "after"


async def test_a_server_that_is_not_listening_fails_at_once() -> None:
    upstream = connect("absent", f"http://127.0.0.1:{free_port()}/mcp", ())
    began = time.monotonic()
    with pytest.raises(ToolServerError) as absent:
        await upstream.start()
    assert absent.value.rpc_code is None and time.monotonic() - began < 2
    assert not upstream.running
    await upstream.close()


async def test_a_stateful_server_s_ended_session_is_renewed(
    stateful_url: str, poster: HttpClient | None
) -> None:
    upstream = HttpUpstream("stateful", stateful_url, poster=poster)
    await upstream.start()
    try:
        first = upstream.session_id
        assert first is not None
        echoed = await upstream.request("tools/call", {"name": "echo", "arguments": {"text": "a"}})
        assert echoed["content"][0]["text"] == "a"
        async with httpx.AsyncClient() as outsider:  # the server ends the session
            ended = await outsider.delete(stateful_url, headers={"Mcp-Session-Id": first})
        assert ended.status_code == 200
        echoed = await upstream.request("tools/call", {"name": "echo", "arguments": {"text": "b"}})
        assert echoed["content"][0]["text"] == "b"
        assert upstream.session_id not in (None, first)
        await cancel_after_first_progress(upstream)  # progress and cancel, in a session
    finally:
        await upstream.close()


def scripted_app(answers: dict[str, tuple[int, str, list[bytes]]]) -> ASGI:
    """A server that answers each method with a fixed status, content type and body
    chunks (sent as they are split), and accepts every notification with 202."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = await asgi_body(receive)
        message = json.loads(body)
        status, media, chunks = answers.get(message.get("method"), (202, "text/plain", []))
        if "id" not in message:
            status, media, chunks = 202, "text/plain", []
        headers = [(b"content-type", media.encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


def answer(result: dict[str, Any]) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 1, "result": result}).encode()


PROGRESS = (
    b'{"jsonrpc": "2.0",\n"method": "notifications/progress", "params": {"progressToken": 1}}'
)
# Comments, a priming event, an event of another type, CRLF and CR line ends split
# across chunks, and a message whose data spans two lines: one progress, then the answer.
FRAMED = (
    b": keep-alive\r\n\r\nid: prime-1\r\ndata:\r\n\r\nevent: other\ndata: {}\n\n"
    + b"event: message\rid: 2\rdata: "
    + PROGRESS.replace(b"\n", b"\rdata: ")
    + b"\r\r"
    + b"data: "
    + answer({"framed": True})
    + b"\r\n\r\n"
)
SSE = "text/event-stream"
SCRIPTS: dict[str, tuple[int, str, list[bytes]]] = {
    "framed": (200, SSE, [FRAMED[i : i + 7] for i in range(0, len(FRAMED), 7)]),
    "huge": (200, SSE, [b"data: " + b"x" * 4096 + b"\n\n"]),
    "garbled": (200, "application/json", [b"<html>not json</html>"]),
    "refused": (
        400,
        "application/json",
        [b'{"jsonrpc":"2.0","id":null,"error":{"code":-32602,"message":"bad","data":{"k":1}}}'],
    ),
    "broken": (500, "text/plain", [b"oops"]),
    "silent": (200, SSE, [b": nothing to say\n\n"]),
}


@pytest.fixture(scope="module")
async def scripted_url() -> AsyncIterator[str]:
    async with serve_in_loop(scripted_app(SCRIPTS)) as base:
        yield f"{base}/mcp"


async def test_an_event_stream_is_read_as_the_format_says(
    scripted_url: str, poster: HttpClient | None
) -> None:
    seen: list[Request | Notification] = []

    async def sink(message: Request | Notification) -> None:
        seen.append(message)

    upstream = HttpUpstream("scripted", scripted_url, max_message_bytes=1024, poster=poster)
    try:
        assert await upstream.request("framed", on_message=sink) == {"framed": True}
        assert seen == [Notification("notifications/progress", {"progressToken": 1})]
    finally:
        await upstream.close()


@pytest.mark.parametrize(
    ("method", "code", "says"),
    [
        ("huge", None, "over 1024 bytes"),
        ("garbled", None, "no JSON-RPC message"),
        ("refused", jsonrpc.INVALID_PARAMS, "bad"),
        ("broken", None, "HTTP 500"),
        ("silent", None, "without answering"),
    ],
)
async def test_what_is_no_answer_fails_with_the_right_kind(
    scripted_url: str, method: str, code: int | None, says: str, poster: HttpClient | None
) -> None:
    upstream = HttpUpstream("scripted", scripted_url, max_message_bytes=1024, poster=poster)
    try:
        with pytest.raises(ToolServerError, match=says) as failed:
            await upstream.request(method, within_s=5)
        assert failed.value.rpc_code == code
        assert failed.value.data == (None if code is None else {"k": 1})  # relayed as sent
    finally:
        await upstream.close()
