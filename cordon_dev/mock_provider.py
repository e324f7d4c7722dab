"""A mock model provider: a real HTTP server speaking OpenAI's and Anthropic's wire formats.

It answers `echo: <last user message>` so tests can put a value in a prompt and find
it (or its redaction) in the answer, streamed or not. Raw ASGI, so the bench
measures the gateway and not the mock.

Model names steer it: `slow-stream` streams one word every 50 ms (for disconnect
tests), `slow-first-byte` waits 2 s before answering. `--behaviour` (or `POST
/mock/behaviour {"mode": ...}`) makes a whole instance misbehave: `500`, `429`,
`slow` (2 s before answering) or `break-stream` (streams end early, unterminated),
so failover can be tested against real sockets; `held-stream` sends a stream's first
three events and the rest only once `released` is set; `garbage` (a 200 in HTML, streams
included), `garbage-stream` (stream events that are not JSON) and `echo-error` (a 400
whose message repeats the prompt) are providers no rule can read as promised; `huge`
answers 20 MiB (or streams one 2 MiB event); `hostile-surrogate`, `hostile-number` and
`hostile-duplicate` answer (and stream) JSON holding a lone surrogate, a number beyond a
double, or a key written twice.
Amazon Bedrock's and Google Gemini's (and Vertex AI's) wires are served too, streams and
embeddings included: see `cordon_dev.mock_clouds`.
Azure OpenAI's wire is served too (`/openai/deployments/<deployment>/chat/completions`
with `api-version` and an `api-key` header, and the v1 API at `/openai/v1/...`).
A prompt `say-base64: <base64>` is answered with the decoded text, so a test can get an
answer a rule blocks from a prompt the same rule lets through.
`GET /mock/stats` says what it saw, `GET /mock/last` the last call's body as it arrived.
A request with `tools` is answered with a call of the first tool, `{"echo": <reply>}`,
or `{<param>: <reply>}` when the tool's schema requires exactly one string parameter
(so a real tool, such as an MCP server's `echo(text)`, accepts the call). A chat whose
last message is a tool's result is answered in text, `tool said: <result>`, so an
agent framework's loop (model, tool, model) ends.

Each `MockProvider(behaviour=...)` is its own ASGI app with its own mode and counts
(nothing here is global), so a test can serve several in one process; `run` serves one
on a port, as `python -m cordon_dev mock-provider` and the dev stack do.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from cordon_dev import mock_clouds
from cordon_dev.mock_asgi import Receive, Scope, Send
from cordon_dev.mock_asgi import body as _body
from cordon_dev.mock_asgi import respond as _respond

OPENAI_MODELS = ("mock-gpt", "mock-gpt-mini", "mock-embed", "slow-stream", "slow-first-byte")
ANTHROPIC_MODELS = ("mock-claude", "slow-stream")


def targets(base_url: str) -> list[dict[str, Any]]:
    """A gateway's provider targets for a mock at `base_url` (ending in /v1): its OpenAI-
    and Anthropic-style models, as the local topology and in-process gateways route them."""
    return [
        {"id": "mock", "provider": {"api": "openai", "base_url": base_url}}
        | {"models": list(OPENAI_MODELS)},
        {"id": "mock-anthropic", "provider": {"api": "anthropic", "base_url": base_url}}
        | {"models": list(ANTHROPIC_MODELS)},
    ]


HUGE = 20 * 1024 * 1024  # `huge`: an answer of 20 MiB (a stream: one event of 2 MiB)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p
        )
    return ""


def _last_user_text(request: dict[str, Any]) -> str:
    if "input" in request and "messages" not in request:  # the Responses API
        given = request["input"]
        if isinstance(given, str):
            return given
        if isinstance(given, list):
            return _last_user_text({"messages": given})
    for message in reversed(request.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def _tool_result(request: dict[str, Any]) -> str | None:
    """The text of a chat's last message when it is a tool's result: the model's turn
    after the agent ran the tool it asked for."""
    messages = request.get("messages") or []
    last = messages[-1] if isinstance(messages, list) and messages else None
    if isinstance(last, dict) and last.get("role") == "tool":
        return _text_of(last.get("content"))
    return None


def _reply(request: dict[str, Any]) -> str:
    result = _tool_result(request)
    if result is not None:
        return "tool said: " + result
    asked = _last_user_text(request)
    if asked.startswith(SAY_PREFIX):
        return _decoded(asked[len(SAY_PREFIX) :])
    return "echo: " + asked


SAY_PREFIX = "say-base64: "  # the answer a test wants, which its prompt must not hold


def _decoded(encoded: str) -> str:
    """What `say-base64: <text>` asks the mock to answer: an answer a rule blocks,
    from a prompt the same rule lets through."""
    import base64
    import binascii

    try:
        return base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return "echo: " + SAY_PREFIX + encoded


def _calls_tool(request: dict[str, Any]) -> bool:
    """Whether the answer is a tool call: tools offered, and no tool result to read yet."""
    return bool(request.get("tools")) and _tool_result(request) is None


def _argument_name(request: dict[str, Any]) -> str:
    """The key the tool call's reply goes under: the first tool's one required string
    parameter if its schema has exactly one, else `echo` (what tests of made-up tools
    read back)."""
    tool = request["tools"][0]
    schema = (tool.get("function") or {}).get("parameters")  # chat completions
    if schema is None:
        schema = tool.get("parameters", tool.get("input_schema"))  # Responses, Anthropic
    if not isinstance(schema, dict):
        return "echo"
    required, properties = schema.get("required"), schema.get("properties")
    if not (isinstance(required, list) and len(required) == 1 and isinstance(properties, dict)):
        return "echo"
    (name,) = required
    kind = properties.get(name)
    if isinstance(name, str) and isinstance(kind, dict) and kind.get("type") == "string":
        return name
    return "echo"


def _tokens(text: str) -> int:
    return len(text.split())


def chat_completion(request: dict[str, Any]) -> dict[str, Any]:
    text = _reply(request)
    message: dict[str, Any] = {"role": "assistant", "content": text}
    finish = "stop"
    if _calls_tool(request):
        tool = request["tools"][0]["function"]["name"]
        arguments = json.dumps({_argument_name(request): text})
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_mock_1",
                    "type": "function",
                    "function": {"name": tool, "arguments": arguments},
                }
            ],
        }
        finish = "tool_calls"
    prompt = _tokens(_last_user_text(request))
    return {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", OPENAI_MODELS[0]),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": _tokens(text),
            "total_tokens": prompt + _tokens(text),
        },
    }


def pieces(request: dict[str, Any]) -> list[str]:
    """How the reply is cut into stream deltas: by word, or at the offsets a model
    named `split-<i>-<j>...` asks for (to put chunk boundaries anywhere)."""
    text = _reply(request)
    model = str(request.get("model", ""))
    if model.startswith("split-"):
        offsets = (int(c) for c in model.split("-")[1:] if c.isdigit())
        cuts = sorted({c for c in offsets if 0 < c < len(text)})
        bounds = [0, *cuts, len(text)]
        return [text[a:b] for a, b in itertools.pairwise(bounds)]
    words = text.split(" ")
    return [words[0]] + [" " + w for w in words[1:]]


def _arguments(request: dict[str, Any]) -> list[str]:
    """A tool call's arguments, `{"echo": <reply>}`, cut where the reply is cut."""
    cut = pieces(request)
    opening = "{" + json.dumps(_argument_name(request)) + ": " + json.dumps(cut[0])[:-1]
    return [opening, *(json.dumps(p)[1:-1] for p in cut[1:]), '"}']


def chat_events(request: dict[str, Any]) -> list[bytes]:
    answer = chat_completion(request)
    base = {k: answer[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    events = []
    tools = _calls_tool(request)
    for i, piece in enumerate(_arguments(request) if tools else pieces(request)):
        delta: dict[str, Any] = {"content": piece}
        if tools:
            call: dict[str, Any] = {"index": 0, "function": {"arguments": piece}}
            if i == 0:
                name = request["tools"][0]["function"]["name"]
                call |= {
                    "id": "call_mock_1",
                    "type": "function",
                    "function": {"name": name, "arguments": piece},
                }
            delta = {"tool_calls": [call]}
        if i == 0:
            delta["role"] = "assistant"
        chunk = base | {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        events.append(_sse(chunk))
    finish = "tool_calls" if tools else "stop"
    final = base | {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
    if (request.get("stream_options") or {}).get("include_usage"):
        events.append(_sse(final))
        final = base | {"choices": [], "usage": answer["usage"]}
    events.append(_sse(final))
    events.append(b"data: [DONE]\n\n")
    return events


def embeddings(request: dict[str, Any]) -> dict[str, Any]:
    given = request.get("input")
    texts = [given] if isinstance(given, str) else list(given or [])
    data = [
        {"object": "embedding", "index": i, "embedding": [float(len(str(t))), 0.5, -0.25]}
        for i, t in enumerate(texts)
    ]
    tokens = sum(_tokens(str(t)) for t in texts)
    return {
        "object": "list",
        "data": data,
        "model": request.get("model", "mock-embed"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def response(request: dict[str, Any]) -> dict[str, Any]:
    text = _reply(request)
    prompt = _tokens(_last_user_text(request))
    if request.get("tools"):
        return _function_call_response(request, text, prompt)
    item = {
        "type": "message",
        "id": "msg_mock",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }
    usage = {
        "input_tokens": prompt,
        "output_tokens": _tokens(text),
        "total_tokens": prompt + _tokens(text),
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }
    return _response_envelope(request, item, usage)


def _function_call_response(request: dict[str, Any], text: str, prompt: int) -> dict[str, Any]:
    call = {
        "type": "function_call",
        "id": "fc_mock",
        "call_id": "call_mock_1",
        "name": request["tools"][0]["name"],
        "arguments": json.dumps({_argument_name(request): text}),
        "status": "completed",
    }
    usage = {"input_tokens": prompt, "output_tokens": _tokens(text), "total_tokens": prompt}
    return _response_envelope(request, call, usage)


def _response_envelope(
    request: dict[str, Any], item: dict[str, Any], usage: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": "resp_mock",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": request.get("model", OPENAI_MODELS[0]),
        "output": [item],
        "usage": usage,
    }


def _function_call_events(request: dict[str, Any]) -> list[bytes]:
    done = response(request)
    names = ["response.created", "response.output_item.added"]
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {**done, "status": "in_progress", "output": []}}
    ]
    started = {**done["output"][0], "arguments": "", "status": "in_progress"}
    events.append({"type": "response.output_item.added", "output_index": 0, "item": started})
    for piece in _arguments(request):
        events.append(
            {
                "type": "response.function_call_arguments.delta",
                "item_id": "fc_mock",
                "output_index": 0,
                "delta": piece,
            }
        )
        names.append("response.function_call_arguments.delta")
    item = done["output"][0]
    events += [
        {
            "type": "response.function_call_arguments.done",
            "item_id": "fc_mock",
            "output_index": 0,
            "arguments": item["arguments"],
        },
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": done},
    ]
    names += [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    return [
        _sse({**e, "sequence_number": n}, name)
        for n, (e, name) in enumerate(zip(events, names, strict=True))
    ]


def response_events(request: dict[str, Any]) -> list[bytes]:
    if request.get("tools"):
        return _function_call_events(request)
    done = response(request)
    started = {**done, "status": "in_progress", "output": [], "usage": None}
    item = {**done["output"][0], "status": "in_progress", "content": []}
    events = [
        _sse(
            {"type": "response.created", "sequence_number": 0, "response": started},
            "response.created",
        ),
        _sse(
            {
                "type": "response.output_item.added",
                "sequence_number": 1,
                "output_index": 0,
                "item": item,
            },
            "response.output_item.added",
        ),
    ]
    seq = 2
    for delta in pieces(request):
        event = {
            "type": "response.output_text.delta",
            "sequence_number": seq,
            "item_id": "msg_mock",
            "output_index": 0,
            "content_index": 0,
            "delta": delta,
            "logprobs": [],
        }
        events.append(_sse(event, "response.output_text.delta"))
        seq += 1
    text = done["output"][0]["content"][0]
    where = {"item_id": "msg_mock", "output_index": 0, "content_index": 0}
    closing: list[tuple[str, dict[str, Any]]] = [
        ("response.output_text.done", {**where, "text": text["text"], "logprobs": []}),
        ("response.content_part.done", {**where, "part": text}),
        ("response.output_item.done", {"output_index": 0, "item": done["output"][0]}),
        ("response.completed", {"response": done}),
    ]
    for name, fields in closing:
        events.append(_sse({"type": name, "sequence_number": seq, **fields}, name))
        seq += 1
    return events


def message(request: dict[str, Any]) -> dict[str, Any]:
    text = _reply(request)
    block: dict[str, Any] = {"type": "text", "text": text}
    if request.get("tools"):
        name = request["tools"][0]["name"]
        block = {
            "type": "tool_use",
            "id": "toolu_mock",
            "name": name,
            "input": {_argument_name(request): text},
        }
    return {
        "id": "msg_mock",
        "type": "message",
        "role": "assistant",
        "model": request.get("model", ANTHROPIC_MODELS[0]),
        "content": [block],
        "stop_reason": "tool_use" if request.get("tools") else "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": _tokens(_last_user_text(request)),
            "output_tokens": _tokens(text),
        },
    }


def message_events(request: dict[str, Any]) -> list[bytes]:
    done = message(request)
    start = {
        **done,
        "content": [],
        "stop_reason": None,
        "usage": {**done["usage"], "output_tokens": 1},
    }
    events = [
        _sse({"type": "message_start", "message": start}, "message_start"),
        _sse(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": (
                    {**done["content"][0], "input": {}}
                    if request.get("tools")
                    else {"type": "text", "text": ""}
                ),
            },
            "content_block_start",
        ),
    ]
    tools = bool(request.get("tools"))
    for piece in _arguments(request) if tools else pieces(request):
        delta = (
            {"type": "input_json_delta", "partial_json": piece}
            if tools
            else {"type": "text_delta", "text": piece}
        )
        events.append(
            _sse({"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta")
        )
    events += [
        _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": done["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": done["usage"]["output_tokens"]},
            },
            "message_delta",
        ),
        _sse({"type": "message_stop"}, "message_stop"),
    ]
    return events


def _sse(data: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + json.dumps(data).encode() + b"\n\n"


def _error(api: str, status: int, message: str, kind: str = "invalid_request_error") -> bytes:
    if api == "anthropic":
        return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()
    return json.dumps(
        {"error": {"message": message, "type": kind, "param": None, "code": None}}
    ).encode()


Build = Callable[[dict[str, Any]], dict[str, Any]]
Events = Callable[[dict[str, Any]], list[bytes]]

ROUTES: dict[str, tuple[str, Build, Events | None]] = {
    "/v1/chat/completions": ("openai", chat_completion, chat_events),
    "/v1/embeddings": ("openai", embeddings, None),
    "/v1/responses": ("openai", response, response_events),
    "/v1/messages": ("anthropic", message, message_events),
}

# What a model (or a tool) may send back that a lenient reader would pass on: one
# choice's JSON, written by hand because no encoder would write it.
HOSTILE = {
    "hostile-surrogate": b'{"index":0,"message":{"role":"assistant","content":"x\\ud800y"}}',
    "hostile-number": b'{"index":0,"message":{"role":"assistant","content":1' + b"0" * 400 + b"}}",
    "hostile-duplicate": (
        b'{"index":0,"message":{"role":"assistant","content":"mail cfo@example.com",'
        b'"content":"nothing to see"}}'
    ),
}


async def _lifespan(receive: Receive, send: Send) -> None:
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})


def _models() -> bytes:
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "mock"} for m in OPENAI_MODELS]
    return json.dumps({"object": "list", "data": data}).encode()


class MockProvider:
    """One mock provider, an ASGI app. Its mode and what it saw live on the instance, so
    several can be served in one process (a test's own event loop) without sharing any.

    `mode` is the `behaviour` it misbehaves with (`POST /mock/behaviour` changes it);
    `stats` counts calls and streams, `seen_auth` holds the last call's credentials and
    `last_request` its body (`GET /mock/stats` and `GET /mock/last` serve them)."""

    def __init__(self, behaviour: str = "ok") -> None:
        self.mode = behaviour
        self.stats: Counter[str] = Counter()
        self.seen_auth: dict[str, str] = {}
        self.last_request: dict[str, Any] = {}  # the body of the last model call, as it arrived
        self.issued_tokens: set[str] = set()  # bearer tokens `POST /token` gave (Vertex AI)
        self.released = asyncio.Event()  # `held-stream`: a stream's rest waits for this

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["path"] in ROUTES and scope["method"] == "POST":
            await self._serve(scope, receive, send, *ROUTES[scope["path"]])
        elif scope["path"].startswith("/openai/") and scope["method"] == "POST":
            await self._azure(scope, receive, send)
        elif (cloud := mock_clouds.serves(scope)) is not None:
            await cloud(self, scope, receive, send)
        else:
            await self._other(scope, receive, send)

    async def _other(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Health, the `/mock/...` controls, the classifier and the model list."""
        path, method = scope["path"], scope["method"]
        if path == "/healthz":
            await _respond(send, 200, b'{"status":"ok"}')
        elif path == "/mock/last":
            await _respond(send, 200, json.dumps(self.last_request).encode())
        elif path == "/mock/stats":
            seen = {"counts": self.stats, "auth": self.seen_auth}
            await _respond(send, 200, json.dumps(seen).encode())
        elif path == "/v1/classify" and method == "POST":
            await self._classify(receive, send)
        elif path == "/mock/behaviour" and method == "POST":
            self.mode = json.loads(await _body(receive))["mode"]
            await _respond(send, 200, json.dumps({"mode": self.mode}).encode())
        elif path == "/v1/models" and method == "GET":
            await _respond(send, 200, _models())
        else:
            await _respond(send, 404, _error("openai", 404, f"no route {method} {path}"))

    async def _classify(self, receive: Receive, send: Send) -> None:
        """A stand-in external classifier: 'wire the money' is fraud."""
        self.stats["classifications"] += 1
        request = json.loads(await _body(receive))
        if self.mode == "slow":
            await asyncio.sleep(2.0)
        fraud = 0.97 if "wire the money" in str(request.get("text", "")).lower() else 0.01
        await _respond(send, 200, json.dumps({"categories": {"fraud": fraud}}).encode())

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        api: str,
        build: Build,
        stream: Events | None,
    ) -> None:
        self.stats[f"requests {scope['path']}"] += 1
        headers = dict(scope["headers"])
        self.seen_auth["authorization"] = headers.get(b"authorization", b"").decode()
        self.seen_auth["x-api-key"] = headers.get(b"x-api-key", b"").decode()
        self.seen_auth["traceparent"] = headers.get(b"traceparent", b"").decode()
        self.seen_auth["x-cordon-sdk-record"] = headers.get(b"x-cordon-sdk-record", b"").decode()
        if await self._failing(send, api):
            return
        try:
            request = json.loads(await _body(receive))
        except ValueError:
            await _respond(send, 400, _error(api, 400, "invalid JSON"))
            return
        self.last_request = request
        if request.get("model") == "slow-first-byte" or self.mode == "slow":
            await asyncio.sleep(2.0)
        if await _unreadable(send, api, request, self.mode):
            return
        if not (request.get("stream") and stream is not None):
            await _respond(send, 200, json.dumps(build(request)).encode())
            return
        events = stream(request)
        if self.mode == "break-stream":
            events = events[:2]  # then the connection just ends, no terminal event
        await self.stream(receive, send, events, slow=request.get("model") == "slow-stream")

    async def _azure(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Azure OpenAI's wire: `/openai/deployments/<deployment>/<operation>` with an
        `api-version` query and the key in `api-key` (or an Entra bearer token), or the
        v1 API at `/openai/v1/<operation>`; what it saw is in `stats` and `seen_auth`.
        Its answers are OpenAI's, the deployment as the model, with Azure's
        `prompt_filter_results` beside them."""
        path, query = scope["path"], parse_qs(scope.get("query_string", b"").decode())
        headers = dict(scope["headers"])
        key = headers.get(b"api-key", b"").decode()
        bearer = headers.get(b"authorization", b"").decode()
        self.seen_auth.update({"api-key": key, "authorization": bearer})
        deployment, operation = _azure_route(path)
        if operation is None or (deployment is not None and not query.get("api-version")):
            await _respond(send, 404, _azure_error("404", "Resource not found"))
            return
        if not key and not bearer.startswith("Bearer "):
            message = "Access denied due to missing subscription key."
            await _respond(send, 401, _azure_error("401", message))
            return
        self.stats[f"azure {operation}"] += 1
        self.seen_auth["api-version"] = (query.get("api-version") or [""])[0]
        self.seen_auth["deployment"] = deployment or ""
        _, build, stream = ROUTES[f"/v1/{operation}"]
        azure_build = _with_filters(build, deployment)
        await self._serve(scope, receive, send, "openai", azure_build, stream)

    async def _failing(self, send: Send, api: str) -> bool:
        """The `500` and `429` modes, answered before the body is read; True if served."""
        if self.mode == "500":
            await _respond(send, 500, _error(api, 500, "mock is failing on purpose", "api_error"))
        elif self.mode == "429":
            limited = _error(api, 429, "mock is rate limited", "rate_limit_error")
            await _respond(send, 429, limited, {"retry-after": "1"})
        else:
            return False
        return True

    async def stream(
        self,
        receive: Receive,
        send: Send,
        events: list[bytes],
        content_type: str = "text/event-stream",
        slow: bool = False,
    ) -> None:
        """Send `events` one body part each, until the caller leaves."""
        self.stats["streams started"] += 1
        disconnected = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()

        watcher = asyncio.create_task(watch())
        headers = [(b"content-type", content_type.encode()), (b"cache-control", b"no-cache")]
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            for sent, event in enumerate(events):
                if slow:
                    await asyncio.sleep(0.05)
                if sent == 3 and self.mode == "held-stream":  # the rest once a test says so
                    await self.released.wait()
                if disconnected.is_set():
                    self.stats["streams cancelled"] += 1
                    return
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            self.stats["streams completed"] += 1
        except OSError:
            self.stats["streams cancelled"] += 1
        finally:
            watcher.cancel()


AZURE_OPERATIONS = ("chat/completions", "embeddings", "responses")


def _azure_route(path: str) -> tuple[str | None, str | None]:
    """(deployment, operation) of an Azure path; (None, operation) for the v1 API, and
    operation None for a path Azure does not serve."""
    if path.startswith("/openai/v1/"):
        operation = path.removeprefix("/openai/v1/")
        return None, operation if operation in AZURE_OPERATIONS else None
    parts = path.removeprefix("/openai/deployments/").split("/", 1)
    if not path.startswith("/openai/deployments/") or len(parts) != 2 or not parts[0]:
        return None, None
    return parts[0], parts[1] if parts[1] in AZURE_OPERATIONS else None


def _azure_error(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def _with_filters(build: Build, deployment: str | None) -> Build:
    """An answer as Azure gives it: the deployment's model, and its content filters'
    verdicts on the prompt."""

    def azure(request: dict[str, Any]) -> dict[str, Any]:
        if deployment is not None:
            request = {**request, "model": deployment}
        answer = build(request)
        answer["prompt_filter_results"] = [
            {"prompt_index": 0, "content_filter_results": {"hate": {"filtered": False}}}
        ]
        return answer

    return azure


async def _unreadable(send: Send, api: str, request: dict[str, Any], mode: str) -> bool:
    """The misbehaviours that carry the prompt where no rule expects it; True if served."""
    text = _reply(request)
    if mode == "garbage":
        page = f"<html><body>{text}</body></html>".encode()
        await _respond(send, 200, page, {"content-type": "text/html"})
    elif mode == "huge":
        await _huge(send, bool(request.get("stream")))
    elif mode == "echo-error":
        await _respond(send, 400, _error(api, 400, f"cannot do that: {text}"))
    elif mode in HOSTILE and not request.get("stream"):
        await _respond(send, 200, b'{"id":"h","choices":[' + HOSTILE[mode] + b"]}")
    elif mode in HOSTILE:
        hostile = b'data: {"id":"h","choices":[' + HOSTILE[mode] + b"]}\n\n"
        await _raw_stream(send, hostile + b"data: [DONE]\n\n")
    elif mode == "garbage-stream" and request.get("stream"):
        await _raw_stream(send, f"data: {text}\n\ndata: [DONE]\n\n".encode())
    else:
        return False
    return True


async def _huge(send: Send, streamed: bool) -> None:
    if not streamed:
        body = json.dumps({"choices": [{"index": 0, "message": {"content": "x" * HUGE}}]})
        await _respond(send, 200, body.encode())
        return
    event = json.dumps({"choices": [{"index": 0, "delta": {"content": "x" * (2 * 1024 * 1024)}}]})
    headers = [(b"content-type", b"text/event-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": f"data: {event}\n\n".encode()})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


async def _raw_stream(send: Send, body: bytes) -> None:
    """An event stream sent as one body, whatever it holds."""
    headers = [(b"content-type", b"text/event-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def run(
    host: str,
    port: int,
    behaviour: str = "ok",
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> None:
    import uvicorn

    uvicorn.run(
        MockProvider(behaviour),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
    )
