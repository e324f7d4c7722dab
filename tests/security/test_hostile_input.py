"""Hostile input against a real replica on loopback (its own mock provider, the suite's
NATS): never a 500, never a `replica_seq` without a record, never a provider paid for a
call that is then refused, and slow clients shown the door.

What each caller must *not* be able to do:
- cost the audit log a number (a body or an answer the record codec cannot encode);
- make the replica answer 500 for something it sent (depth, surrogates, huge numbers,
  repeated keys, odd tokens, wrong methods, malformed HTTP);
- make a provider be called, and paid, for a request that is then refused;
- hold a connection (and its file descriptor) open by sending slowly or not at all;
- fill the log without authenticating (connection-level refusals are counted only).
"""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from cordon_dev.procs import wait_for_http
from cordon_dev.stack import DevStack
from tests.helpers import chat, eventually, find_record, gaps_in, metric, replica_records
from tests.hostile import request_bodies

REGION = "eu-west"


@dataclass
class Replica:
    url: str
    mock: str  # the mock provider's root (no /v1)
    name: str

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        return str(parts.hostname), int(parts.port or 80)

    def mock_calls(self) -> int:
        counts = httpx.get(self.mock + "/mock/stats").json()["counts"]
        return sum(v for k, v in counts.items() if k.startswith("requests /v1/"))

    def closed(self, reason: str) -> float:
        page = httpx.get(self.url + "/metrics").text
        return metric(page, "cordon_gateway_connections_closed_total", reason=reason) or 0.0


def _replica(stack: DevStack, name: str, extra: dict[str, Any]) -> Iterator[Replica]:
    mock = stack.start_mock(f"mock-{name}")
    process = f"gateway-{REGION}-{name}"
    url = stack.start_gateway(REGION, name, mock, extra=extra)
    wait_for_http(url + "/readyz", 30, stack.processes[process].proc)
    yield Replica(url, mock.removesuffix("/v1"), name)
    stack.processes[process].stop()
    stack.processes[f"mock-{name}"].stop()


@pytest.fixture(scope="module")
def hostile(stack: DevStack) -> Iterator[Replica]:
    """A replica with short slow-client timeouts, so stalls are shown the door quickly."""
    short = {"header_timeout_s": 1, "body_idle_timeout_s": 1, "send_timeout_s": 1}
    yield from _replica(stack, "gw-hostile", short)


@pytest.fixture(scope="module")
def crowded(stack: DevStack) -> Iterator[Replica]:
    """A replica that keeps at most three connections open."""
    yield from _replica(stack, "gw-crowded", {"max_connections": 3, "header_timeout_s": 2})


def _auth(endpoints: dict[str, Any]) -> dict[str, str]:
    return {"authorization": f"Bearer {endpoints['api_key']}", "content-type": "application/json"}


def _post(replica: Replica, endpoints: dict[str, Any], path: str, body: bytes) -> httpx.Response:
    return httpx.post(replica.url + path, content=body, headers=_auth(endpoints), timeout=30)


def _raw(replica: Replica, data: bytes, wait: float = 10.0) -> bytes:
    """Send `data` on a fresh socket and read until the replica closes it."""
    with socket.create_connection(replica.address, timeout=wait) as sock:
        sock.sendall(data)
        return _read_to_close(sock)


def _read_to_close(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(raw: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, orjson.loads(body)


# -- the findings, one regression test each --------------------------------------------

MESSAGES = b'"messages":[{"role":"user","content":'
FINDINGS = {
    "nesting beyond the reader's depth": (
        "/v1/chat/completions",
        b'{"model":"mock-gpt","messages":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ),
    "escaped lone surrogate in the prompt": (
        "/v1/chat/completions",
        b'{"model":"mock-gpt",' + MESSAGES + b'"x\\ud800y"}]}',
    ),
    "lone surrogate as CESU bytes": (
        "/v1/responses",
        b'{"model":"mock-gpt","input":"x\xed\xa0\x80y"}',
    ),
    "lone surrogate in the model of a refusal": (
        "/v1/messages",
        b'{"model":"mock\\udc00","max_tokens":9,' + MESSAGES + b'"hi"}]}',
    ),
    "a stream with a lone surrogate": (
        "/v1/messages",
        b'{"model":"mock-claude","max_tokens":9,"stream":true,' + MESSAGES + b'"\\udfff"}]}',
    ),
    "an integer beyond a double": (
        "/v1/chat/completions",
        b'{"model":"mock-gpt",' + MESSAGES + b"1" + b"0" * 400 + b"}]}",
    ),
    "a key written twice": (
        "/v1/chat/completions",
        b'{"model":"mock-gpt",' + MESSAGES + b'"mail cfo@example.com","content":"hi"}]}',
    ),
    "a model name longer than a record may hold whole": (
        "/v1/chat/completions",
        b'{"model":"mock-gpt' + b"x" * 2_000_000 + b'",' + MESSAGES + b'"hi"}]}',
    ),
    "embeddings input with a lone surrogate": (
        "/v1/embeddings",
        b'{"model":"mock-embed","input":["ok","\\ud800"]}',
    ),
}


@pytest.mark.parametrize(("path", "body"), FINDINGS.values(), ids=FINDINGS.keys())
async def test_a_body_the_record_could_not_carry_is_a_400_with_a_record_and_no_provider_call(
    hostile: Replica, endpoints: dict[str, Any], path: str, body: bytes
) -> None:
    before = hostile.mock_calls()
    response = _post(hostile, endpoints, path, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert hostile.mock_calls() == before  # refused before any provider was paid
    record = await find_record(endpoints, REGION, response.headers["x-cordon-record-id"])
    assert record is not None and record["status"] == 400 and record["error"] == "invalid_request"


@pytest.mark.parametrize("mode", ["hostile-surrogate", "hostile-number", "hostile-duplicate"])
async def test_an_answer_the_record_could_not_carry_is_refused_with_a_record(
    hostile: Replica, endpoints: dict[str, Any], mode: str
) -> None:
    """The same hostile JSON from the provider: a 502 with a receipt, never the answer;
    a stream ends with an error event; the replica's numbers stay whole."""
    httpx.post(hostile.mock + "/mock/behaviour", json={"mode": mode})
    ask = b'{"model":"mock-gpt",' + MESSAGES + b'"hi"}]'
    try:
        whole = _post(hostile, endpoints, "/v1/chat/completions", ask + b"}")
        streamed = _post(hostile, endpoints, "/v1/chat/completions", ask + b',"stream":true}')
    finally:
        httpx.post(hostile.mock + "/mock/behaviour", json={"mode": "ok"})
    assert whole.status_code == 502 and whole.json()["error"]["code"] == "upstream_unreadable"
    assert "cfo@example.com" not in whole.text
    record = await find_record(endpoints, REGION, whole.headers["x-cordon-record-id"])
    assert record is not None and record["outcome"] == "error"
    assert streamed.status_code == 200  # the intent was committed and the stream began
    assert "[DONE]" not in streamed.text and "upstream_broken" in streamed.text
    assert "cfo@example.com" not in streamed.text
    assert gaps_in(await replica_records(endpoints, REGION, hostile.name)) == []


async def test_a_delegation_token_pyjwt_cannot_read_is_a_401(
    hostile: Replica, endpoints: dict[str, Any]
) -> None:
    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    token = ".".join([part(b'{"alg":"EdDSA","typ":"JWT"}'), part(b"[" * 5000 + b"]" * 5000), "x"])
    response = chat(hostile.url, token, "hi")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert "x-cordon-record-id" not in response.headers  # anonymous: counted, not recorded


def test_a_wrong_method_is_a_405_that_says_so(hostile: Replica) -> None:
    response = httpx.get(hostile.url + "/v1/chat/completions")
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"
    anthropic = httpx.delete(hostile.url + "/v1/messages")
    assert anthropic.status_code == 405
    assert anthropic.json()["error"]["type"] == "invalid_request_error"


def test_a_websocket_upgrade_is_answered_as_plain_http(
    hostile: Replica, endpoints: dict[str, Any]
) -> None:
    """No route speaks WebSocket (or h2c), so an upgrade is not a second door: a GET is
    answered as the HTTP it also is, and a call that asks to upgrade is told plainly
    (the parser would hand its body to the new protocol)."""
    upgrade = {
        "upgrade": "websocket",
        "connection": "Upgrade",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-version": "13",
    }
    response = httpx.get(hostile.url + "/v1/chat/completions", headers=upgrade)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    body = b'{"model":"mock-gpt",' + MESSAGES + b'"hi"}]}'
    h2c = {**_auth(endpoints), "upgrade": "h2c", "connection": "Upgrade, HTTP2-Settings"}
    call = httpx.post(hostile.url + "/v1/chat/completions", content=body, headers=h2c)
    assert call.status_code == 400 and "upgrades are not served" in call.json()["error"]["message"]
    assert "x-cordon-record-id" in call.headers


MALFORMED = {
    "bad chunk size": b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n",
    "NUL in a header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "Transfer-Encoding with Content-Length": b"POST /v1/messages HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "bare CR": b"GET /healthz HTTP/1.1\rHost: x\r\n\r\n",
    "not HTTP": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_http_gets_the_api_error_shape_and_a_closed_connection(
    hostile: Replica, data: bytes
) -> None:
    status, headers, body = _answer(_raw(hostile, data))
    assert status == 400 and headers["content-type"] == "application/json"
    assert body["error"]["code"] == "malformed_http"  # OpenAI's field ...
    assert (
        body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    )  # ... Anthropic's


@pytest.mark.parametrize("complete", [False, True], ids=["still-arriving", "in-one-read"])
def test_headers_beyond_the_cap_are_a_431(hostile: Replica, complete: bool) -> None:
    data = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (100 * 1024)
    status, _, body = _answer(_raw(hostile, data + (b"\r\n\r\n" if complete else b"")))
    assert status == 431 and body["error"]["code"] == "headers_too_large"


# -- slow and stalled clients -------------------------------------------------------------


def test_a_stalled_connection_is_closed_after_the_header_timeout_while_others_are_served(
    hostile: Replica, endpoints: dict[str, Any]
) -> None:
    before = hostile.closed("header_timeout")
    silent = socket.create_connection(hostile.address, timeout=15)  # sends nothing at all
    stalled = socket.create_connection(hostile.address, timeout=15)
    stalled.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Ty")
    dripping = socket.create_connection(hostile.address, timeout=15)
    try:
        served = _post(
            hostile,
            endpoints,
            "/v1/chat/completions",
            b'{"model":"mock-gpt",' + MESSAGES + b'"hi"}]}',
        )
        assert served.status_code == 200  # a normal caller meanwhile
        for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: 1234567":  # a header a byte at a time
            try:
                dripping.sendall(bytes([byte]))
            except OSError:
                break  # closed on us mid-drip: what this test wants
            time.sleep(0.1)
        for sock in (silent, stalled, dripping):
            status, _, body = _answer(_read_to_close(sock))
            assert status == 408 and body["error"]["code"] == "request_timeout"
    finally:
        for sock in (silent, stalled, dripping):
            sock.close()
    eventually(lambda: hostile.closed("header_timeout") >= before + 3)


async def test_a_body_that_stops_arriving_is_a_408_with_a_record(
    hostile: Replica, endpoints: dict[str, Any]
) -> None:
    """An authenticated caller that promises more body than it sends: answered 408 in
    its API's shape, with a receipt, once the body has been idle for the timeout."""
    head = (
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"x-api-key: " + endpoints["api_key"].encode() + b"\r\nContent-Length: 500\r\n\r\n"
    )
    status, headers, body = _answer(_raw(hostile, head + b'{"model":"mock-claude",'))
    assert status == 408 and body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    record = await find_record(endpoints, REGION, headers["x-cordon-record-id"])
    assert record is not None and record["status"] == 408 and record["error"] == "request_timeout"
    assert hostile.closed("body_timeout") >= 1


def test_a_kept_alive_connection_whose_next_headers_stall_is_closed(hostile: Replica) -> None:
    with socket.create_connection(hostile.address, timeout=15) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")  # the next request, stalled
        status, _, body = _answer(_read_to_close(sock))
    assert status == 408 and body["error"]["code"] == "request_timeout"


def test_a_body_still_dripping_after_its_refusal_is_cut_off(hostile: Replica) -> None:
    """An anonymous caller answered 401 before its body was read cannot keep the
    connection by sending the rest of a huge body a byte at a time."""
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n{"
    )
    with socket.create_connection(hostile.address, timeout=15) as sock:
        sock.sendall(head)
        assert sock.recv(65536).startswith(b"HTTP/1.1 401")
        deadline = time.monotonic() + 12
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                sock.sendall(b" ")
                sock.settimeout(0.3)
                closed = sock.recv(1) == b""
            except TimeoutError:
                continue
            except OSError:
                closed = True
    assert closed


def test_a_caller_that_stops_reading_its_answers_is_cut_off(hostile: Replica) -> None:
    """Pipelined requests whose answers are never read: once the replica's send buffer
    has stayed full for the send timeout, the connection is aborted (an unread answer
    holds no memory and no slot)."""
    before = hostile.closed("send_timeout")
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(hostile.address, timeout=15) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(request * 2000)  # megabytes of answers; nothing is read
        eventually(lambda: hostile.closed("send_timeout") > before, timeout=15)


def test_a_slow_body_that_keeps_arriving_is_served(
    hostile: Replica, endpoints: dict[str, Any]
) -> None:
    """The body timeout is an idle timeout: a slow uplink that pauses less than it each
    time is served, however long the whole body takes."""
    body = b'{"model":"mock-gpt",' + MESSAGES + b'"a slow uplink"}]}'
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + endpoints["api_key"].encode() + b"\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with socket.create_connection(hostile.address, timeout=15) as sock:
        sock.sendall(head)
        for start in range(0, len(body), len(body) // 4 + 1):  # 2 s in all, 0.5 s pauses
            time.sleep(0.5)
            sock.sendall(body[start : start + len(body) // 4 + 1])
        status, _, answer = _answer(_read_to_close(sock))
    assert status == 200, answer
    assert answer["choices"][0]["message"]["content"] == "echo: a slow uplink"


def test_connections_beyond_the_cap_get_a_503_with_retry_after_and_are_not_recorded(
    crowded: Replica, endpoints: dict[str, Any]
) -> None:
    body = b'{"model":"mock-gpt",' + MESSAGES + b'"hi"}]}'
    idle = [socket.create_connection(crowded.address, timeout=10) for _ in range(3)]
    try:
        refused = _post(crowded, endpoints, "/v1/chat/completions", body)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "overloaded"
        assert "x-cordon-record-id" not in refused.headers  # counted, never recorded
    finally:
        for sock in idle:
            sock.close()
    served = eventually(
        lambda: (
            (r := _post(crowded, endpoints, "/v1/chat/completions", body)).status_code == 200 and r
        )
    )
    assert "x-cordon-record-id" in served.headers
    assert crowded.closed("over_capacity") >= 1  # asked now: /metrics was refused too


# -- property-based: hostile bodies on every route of both dialects ------------------------


async def test_hostile_bodies_never_get_a_5xx_and_never_cost_a_number(
    hostile: Replica, endpoints: dict[str, Any]
) -> None:
    """Generated bodies for every route: no 5xx, a receipt on every 4xx (the caller is
    authenticated), and afterwards the replica's `replica_seq` has no gap."""
    seen: list[int] = []
    with httpx.Client(base_url=hostile.url, headers=_auth(endpoints), timeout=30) as client:

        @settings(
            max_examples=150,
            deadline=None,
            database=None,
            derandomize=True,  # the same bodies each run: a failure here is reproducible
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(request_bodies())
        def probe(request: tuple[str, bytes]) -> None:
            path, body = request
            response = client.post(path, content=body)
            seen.append(response.status_code)
            assert response.status_code < 500, (path, body[:300], response.text[:300])
            if response.status_code >= 400:
                assert "x-cordon-record-id" in response.headers, (path, response.text[:300])

        probe()
    assert any(code == 200 for code in seen) and any(code == 400 for code in seen)
    assert gaps_in(await replica_records(endpoints, REGION, hostile.name)) == []
