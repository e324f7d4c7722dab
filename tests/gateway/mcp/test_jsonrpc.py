"""JSON-RPC 2.0 as MCP carries it: what the gateway accepts, and how it refuses the rest."""

from __future__ import annotations

import pytest

from cordon import jsoncodec
from cordon.errors import JsonRpcError
from gateway.mcp import jsonrpc
from gateway.mcp.jsonrpc import Notification, Request, Response

pytestmark = pytest.mark.fast


def test_requests_notifications_and_responses_are_told_apart() -> None:
    call = b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}'
    assert jsonrpc.parse(call) == Request(7, "tools/call", {"name": "echo"})
    note = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'
    assert jsonrpc.parse(note) == Notification("notifications/initialized")
    answer = b'{"jsonrpc":"2.0","id":"a","result":{"tools":[]}}'
    assert jsonrpc.parse(answer) == Response("a", result={"tools": []})
    failed = jsonrpc.parse(b'{"jsonrpc":"2.0","id":3,"error":{"code":-32601,"message":"no"}}')
    assert isinstance(failed, Response) and failed.error is not None
    assert (failed.error.code, failed.error.message) == (-32601, "no")


@pytest.mark.parametrize(
    ("body", "code", "request_id"),
    [
        (b"{not json", jsonrpc.PARSE_ERROR, None),
        (b'{"jsonrpc":"2.0","id":1,"id":2,"method":"x"}', jsonrpc.PARSE_ERROR, None),
        (b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', jsonrpc.INVALID_REQUEST, None),
        (b'"ping"', jsonrpc.INVALID_REQUEST, None),
        (b'{"id":1,"method":"ping"}', jsonrpc.INVALID_REQUEST, 1),
        (b'{"jsonrpc":"2.0","id":null,"method":"ping"}', jsonrpc.INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}', jsonrpc.INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","id":true,"method":"ping"}', jsonrpc.INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","id":"r","method":""}', jsonrpc.INVALID_REQUEST, "r"),
        (b'{"jsonrpc":"2.0","id":"r","method":"x","params":[1]}', jsonrpc.INVALID_REQUEST, "r"),
        (b'{"jsonrpc":"2.0","id":4}', jsonrpc.INVALID_REQUEST, 4),
        (b'{"jsonrpc":"2.0","id":4,"result":{},"error":{}}', jsonrpc.INVALID_REQUEST, 4),
        (b'{"jsonrpc":"2.0","id":4,"error":{"code":"x","message":"m"}}', -32600, 4),
        (b'{"jsonrpc":"2.0","id":4,"result":[1]}', jsonrpc.INVALID_REQUEST, 4),
    ],
)
def test_what_is_not_one_mcp_message_is_refused_with_its_code(
    body: bytes, code: int, request_id: object
) -> None:
    with pytest.raises(JsonRpcError) as refused:
        jsonrpc.parse(body)
    assert refused.value.rpc_code == code
    assert refused.value.request_id == request_id
    answer = jsoncodec.loads(jsonrpc.error_response(refused.value))
    assert answer["jsonrpc"] == "2.0" and answer["id"] == request_id
    assert answer["error"]["code"] == code and answer["error"]["message"]


def test_a_document_nested_past_the_limit_is_a_parse_error() -> None:
    deep = b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":' + b"[" * 100 + b"]" * 100 + b"}}"
    with pytest.raises(JsonRpcError) as refused:
        jsonrpc.parse(deep)
    assert refused.value.rpc_code == jsonrpc.PARSE_ERROR


@pytest.mark.parametrize(
    "message",
    [
        Request(1, "tools/list"),
        Request("x", "tools/call", {"name": "echo", "arguments": {"text": "é"}}),
        Notification("notifications/cancelled", {"requestId": 1}),
        Response(2, result={"content": []}),
        Response(3, error=jsonrpc.ErrorObject(-32602, "bad", {"field": "name"})),
    ],
)
def test_what_is_encoded_reads_back_the_same(message: jsonrpc.Message) -> None:
    assert jsonrpc.parse(jsonrpc.encode(message)) == message
