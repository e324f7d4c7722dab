"""Hostile input at the MCP endpoint (a gateway in-process, served on loopback, fronting
the dev tool server).

What a caller must *not* be able to do there:
- make the replica answer 5xx for something it sent, or cost the log a number;
- reach a tool, or fill the log, without authenticating (counted, never recorded);
- be refused without a record, once authenticated;
- use another caller's session, cancel another caller's call, or drive the tools from
  a web page in a browser (a foreign `Origin`);
- reach a tool server the pack does not declare, by any name.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cordon_dev import tool_server
from cordon_dev.inprocess import API_KEY, InProcessGateway, in_process_gateway, serve_in_loop
from tests.helpers import gaps_in
from tests.hostile import hostile_values, text_of
from tests.mcp_agent import dev_tools_section, initialize

pytestmark = [pytest.mark.fast, pytest.mark.timeout(120)]

ACCEPT = "application/json, text/event-stream"


@pytest.fixture(scope="module")
async def tools_url() -> AsyncIterator[str]:
    async with serve_in_loop(tool_server.app(), lifespan="on") as url:
        yield f"{url}/mcp"


@pytest.fixture
async def gw(tmp_path: Path, tools_url: str) -> AsyncIterator[tuple[InProcessGateway, str]]:
    async with in_process_gateway(tmp_path) as gateway, serve_in_loop(gateway.app) as url:
        tools = await dev_tools_section({"url": tools_url})
        await gateway.activate({"pack": {"name": "default", "version": "1"}, "tools": tools}, 2)
        yield gateway, url


def _post(url: str, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(url, content=body, headers=headers, timeout=30)


def _call(name: str, arguments: Any = None) -> bytes:
    params: dict[str, Any] = {"name": name}
    if arguments is not None:
        params["arguments"] = arguments
    return json.dumps(
        {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}
    ).encode()


CASES = {
    "not-json": (b"{nope", {}, 400, -32700, "parse_error"),
    "a-batch": (b"[" + _call("echo", {"text": "a"}) + b"]", {}, 400, -32600, "invalid_request"),
    "no-jsonrpc": (b'{"id":1,"method":"ping"}', {}, 400, -32600, "invalid_request"),
    "null-id": (b'{"jsonrpc":"2.0","id":null,"method":"ping"}', {}, 400, -32600, "invalid_request"),
    "deep": (
        b'{"jsonrpc":"2.0","id":1,"method":"x","params":' + b'{"a":' * 100 + b"1" + b"}" * 101,
        {},
        400,
        -32700,
        "parse_error",
    ),
    "text-plain": (
        _call("echo", {"text": "a"}),
        {"content-type": "text/plain"},
        415,
        -32600,
        "unsupported_media_type",
    ),
    "unserved-revision": (
        _call("echo", {"text": "a"}),
        {"mcp-protocol-version": "1999-01-01"},
        400,
        -32600,
        "unsupported_version",
    ),
    "forged-session": (
        _call("echo", {"text": "a"}),
        {"mcp-session-id": "c1.eyJ2IjoiMjAyNS0wNi0xOCJ9"},
        404,
        -32600,
        "unknown_session",
    ),
    "too-large": (
        _call("echo", {"text": "x" * (5 * 1024 * 1024)}),
        {},
        413,
        -32600,
        "body_too_large",
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
async def test_a_message_the_gateway_will_not_serve_is_refused_with_a_record(
    gw: tuple[InProcessGateway, str], case: str
) -> None:
    gateway, url = gw
    body, extra, status, code, error = CASES[case]
    headers = {"content-type": "application/json", "accept": ACCEPT, **gateway.auth, **extra}
    answer = await asyncio.to_thread(_post, f"{url}/mcp/dev-tools", body, **headers)
    assert answer.status_code == status, answer.text
    refusal = answer.json()["error"]
    assert refusal["code"] == code
    (record,) = gateway.records()[-1:]
    assert refusal["data"]["record"] == record["id"] and record["error"] == error
    assert record["outcome"] == "error" and "x" * 100 not in json.dumps(record)


async def test_without_credentials_nothing_is_recorded_and_nothing_is_called(
    gw: tuple[InProcessGateway, str],
) -> None:
    gateway, url = gw
    for body in (_call("echo", {"text": "anonymous"}), b"{nope", b"[]"):
        answer = await asyncio.to_thread(
            _post, f"{url}/mcp", body, **{"content-type": "application/json"}
        )
        assert answer.status_code == 401 and "www-authenticate" in answer.headers
    assert gateway.records() == []


async def test_a_stream_is_opened_only_for_a_client_that_takes_one(
    gw: tuple[InProcessGateway, str],
) -> None:
    gateway, url = gw
    headers = {"accept": "application/json", **gateway.auth}
    answer = await asyncio.to_thread(httpx.get, f"{url}/mcp/dev-tools", headers=headers)
    assert answer.status_code == 406 and answer.json()["error"]["code"] == -32600
    ended = await asyncio.to_thread(httpx.delete, f"{url}/mcp/dev-tools", headers=gateway.auth)
    assert ended.status_code == 405 and ended.headers["allow"] == "GET, POST"


async def test_a_foreign_origin_is_refused(gw: tuple[InProcessGateway, str]) -> None:
    gateway, url = gw
    headers = {"content-type": "application/json", "origin": "https://evil.example", **gateway.auth}
    answer = await asyncio.to_thread(
        _post, f"{url}/mcp/dev-tools", _call("echo", {"text": "a"}), **headers
    )
    assert answer.status_code == 403 and gateway.records() == []


async def test_a_session_and_a_call_are_their_callers_only(tmp_path: Path, tools_url: str) -> None:
    other = {"agent": "other-app", "roles": ["developer"]}
    keys = {API_KEY: {"agent": "inprocess-app", "roles": ["developer"]}, "other-key": other}
    async with (
        in_process_gateway(tmp_path, settings={"api_keys": keys}) as gateway,
        serve_in_loop(gateway.app) as url,
    ):
        tools = await dev_tools_section({"url": tools_url})
        await gateway.activate({"pack": {"name": "default", "version": "1"}, "tools": tools}, 2)
        base = {"content-type": "application/json", "accept": ACCEPT}
        mine = {**base, **gateway.auth}
        theirs = {**base, "authorization": "Bearer other-key"}
        init = initialize()
        opened = await asyncio.to_thread(_post, f"{url}/mcp", json.dumps(init).encode(), **mine)
        session = {"mcp-session-id": opened.headers["mcp-session-id"]}
        used = await asyncio.to_thread(
            _post, f"{url}/mcp", _call("dev-tools__echo", {"text": "a"}), **mine, **session
        )
        stolen = await asyncio.to_thread(
            _post, f"{url}/mcp", _call("dev-tools__echo", {"text": "a"}), **theirs, **session
        )
        assert "result" in used.json() and stolen.status_code == 404

        slow = asyncio.create_task(
            asyncio.to_thread(_post, f"{url}/mcp", _call("dev-tools__slow", {"seconds": 1}), **mine)
        )
        await asyncio.sleep(0.3)
        cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}}
        sent = await asyncio.to_thread(_post, f"{url}/mcp", json.dumps(cancel).encode(), **theirs)
        assert sent.status_code == 202
        assert "result" in (await slow).json()  # another caller's cancel reached nothing


async def test_no_name_reaches_a_server_the_pack_does_not_declare(
    gw: tuple[InProcessGateway, str],
) -> None:
    gateway, url = gw
    names = ["nope__echo", "__echo", "dev-tools__", "dev-tools__../echo", "DEV-TOOLS__echo", "echo"]
    headers = {"content-type": "application/json", "accept": ACCEPT, **gateway.auth}
    for name in names:
        answer = await asyncio.to_thread(_post, f"{url}/mcp", _call(name, {}), **headers)
        assert answer.json()["error"]["code"] == -32602, name
    paths = ("/mcp/nope", "/mcp/", "/mcp/dev-tools/extra", "/mcp/DEV-TOOLS", "/mcp/dev-tools%2F")
    for path in paths:
        answer = await asyncio.to_thread(_post, url + path, _call("echo", {"text": "a"}), **headers)
        assert answer.status_code == 404, path
    refused = [r for r in gateway.records() if r.get("tool")]
    assert all(r["outcome"] == "block" for r in refused) and len(refused) == len(names)


async def test_hostile_arguments_never_get_a_5xx_and_never_cost_a_number(
    gw: tuple[InProcessGateway, str],
) -> None:
    """Generated arguments and names for `tools/call`: never a 5xx, a JSON-RPC answer
    every time, and afterwards no gap in the replica's numbers."""
    gateway, url = gw
    headers = {"content-type": "application/json", "accept": ACCEPT, **gateway.auth}
    names = st.sampled_from(["echo", "contact", "fail", "send_email", "\ud800", "x" * 300])

    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:

        @settings(
            max_examples=60,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(names, hostile_values(), st.booleans())
        def probe(name: str, arguments: Any, ascii_only: bool) -> None:
            params = (
                '{"name":'
                + json.dumps(name)
                + ',"arguments":'
                + text_of(arguments, ascii_only)
                + "}"
            )
            body = '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":' + params + "}"
            answer = client.post("/mcp/dev-tools", content=body.encode("utf-8", "surrogatepass"))
            assert answer.status_code < 500, (body[:300], answer.text[:300])
            assert "result" in answer.json() or "error" in answer.json()

        await asyncio.to_thread(probe)
    assert gaps_in(gateway.records()) == []
