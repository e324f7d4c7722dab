"""JSON-RPC 2.0 messages as MCP carries them: one message per HTTP body or stdio line.

Read strictly through the one JSON reader (`cordon.jsoncodec`): a body it refuses is a
parse error, a well-formed body that is no JSON-RPC message an invalid request, each
answered as JSON-RPC answers errors. MCP narrows JSON-RPC: a request's id is a string
or an integer, never null, and `params`, when present, is an object. Batches (a JSON
array) were allowed by one revision (2025-03-26) and removed by the next; the gateway
refuses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cordon import jsoncodec
from cordon.errors import JsonRpcError, UnreadableJSONError

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "ErrorObject",
    "Message",
    "Notification",
    "Request",
    "RequestId",
    "Response",
    "encode",
    "error_response",
    "parse",
    "result_response",
]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

RequestId = str | int
MAX_DEPTH = 64  # a tool's arguments nest; a document nested deeper is refused


@dataclass(frozen=True)
class Request:
    id: RequestId
    method: str
    params: dict[str, Any] | None = None


@dataclass(frozen=True)
class Notification:
    method: str
    params: dict[str, Any] | None = None


@dataclass(frozen=True)
class ErrorObject:
    code: int
    message: str
    data: Any = None


@dataclass(frozen=True)
class Response:
    """A result or an error answering request `id` (None: a parse error's answer)."""

    id: RequestId | None
    result: dict[str, Any] | None = None
    error: ErrorObject | None = None


Message = Request | Notification | Response


def parse(body: bytes) -> Message:
    """The one message in `body`; `JsonRpcError` (with the id, when it could be read)
    for anything else."""
    try:
        document = jsoncodec.loads(body, max_depth=MAX_DEPTH)
    except UnreadableJSONError as exc:
        raise JsonRpcError(PARSE_ERROR, f"not JSON the gateway reads: {exc}") from exc
    if isinstance(document, list):
        raise JsonRpcError(INVALID_REQUEST, "batches are not served: send one message")
    if not isinstance(document, dict):
        raise JsonRpcError(INVALID_REQUEST, "a message is a JSON object")
    return _message(document)


def _message(document: dict[str, Any]) -> Message:
    request_id = _id(document)
    if document.get("jsonrpc") != "2.0":
        raise JsonRpcError(INVALID_REQUEST, "'jsonrpc' must be \"2.0\"", request_id)
    if "method" in document:
        return _call(document, request_id)
    if "result" in document or "error" in document:
        return _response(document, request_id)
    raise JsonRpcError(INVALID_REQUEST, "neither a request nor a response", request_id)


def _id(document: dict[str, Any]) -> RequestId | None:
    value = document.get("id")
    if value is None or isinstance(value, str) or _is_int(value):
        return value
    raise JsonRpcError(INVALID_REQUEST, "'id' must be a string or an integer")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _call(document: dict[str, Any], request_id: RequestId | None) -> Request | Notification:
    method, params = document["method"], document.get("params")
    if not isinstance(method, str) or not method:
        raise JsonRpcError(INVALID_REQUEST, "'method' must be a non-empty string", request_id)
    if params is not None and not isinstance(params, dict):
        raise JsonRpcError(INVALID_REQUEST, "'params' must be an object", request_id)
    if "id" not in document:
        return Notification(method, params)
    if request_id is None:
        raise JsonRpcError(INVALID_REQUEST, "a request's 'id' may not be null")
    return Request(request_id, method, params)


def _response(document: dict[str, Any], request_id: RequestId | None) -> Response:
    if ("result" in document) == ("error" in document):
        raise JsonRpcError(INVALID_REQUEST, "a response has a result or an error", request_id)
    if "result" in document:
        if not isinstance(document["result"], dict):
            raise JsonRpcError(INVALID_REQUEST, "'result' must be an object", request_id)
        return Response(request_id, result=document["result"])
    error = document["error"]
    if not (isinstance(error, dict) and _is_int(error.get("code"))):
        raise JsonRpcError(INVALID_REQUEST, "'error' needs an integer 'code'", request_id)
    message = error.get("message")
    if not isinstance(message, str):
        raise JsonRpcError(INVALID_REQUEST, "'error' needs a string 'message'", request_id)
    return Response(request_id, error=ErrorObject(error["code"], message, error.get("data")))


def encode(message: Message) -> bytes:
    """The message as one compact JSON object."""
    body: dict[str, Any] = {"jsonrpc": "2.0"}
    if isinstance(message, Request | Notification):
        body["method"] = message.method
        if isinstance(message, Request):
            body["id"] = message.id
        if message.params is not None:
            body["params"] = message.params
        return jsoncodec.dumps(body)
    body["id"] = message.id
    if message.error is not None:
        error: dict[str, Any] = {"code": message.error.code, "message": message.error.message}
        if message.error.data is not None:
            error["data"] = message.error.data
        body["error"] = error
    else:
        body["result"] = message.result or {}
    return jsoncodec.dumps(body)


def result_response(request_id: RequestId, result: dict[str, Any]) -> bytes:
    return encode(Response(request_id, result=result))


def error_response(exc: JsonRpcError) -> bytes:
    """The answer to a message refused with `exc` (its id, when it was readable)."""
    error = ErrorObject(exc.rpc_code, str(exc), exc.data)
    return encode(Response(exc.request_id, error=error))
