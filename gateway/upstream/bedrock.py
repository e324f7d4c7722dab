"""Amazon Bedrock as an upstream for OpenAI-style chat completions: the Converse API.

The caller keeps speaking OpenAI's chat completions; the gateway's rules run on that
shape before and after, so every field of the translated traffic passes them. Here the
request becomes a Converse request (`POST /model/<modelId>/converse`: messages of
content blocks, `system`, `inferenceConfig`, `toolConfig`) and the answer an OpenAI
chat completion (text, tool calls, usage, finish reason). A stream asks
ConverseStream (`/converse-stream`), whose AWS event-stream frames botocore's own parser
reads (checksums included) and `steps` turns into the caller's stream event by event.
Embeddings ask a Titan or Cohere embedding model through `InvokeModel`. Requests are
signed with SigV4 by botocore's own signer, never by hand; the credentials come from
the target's secret reference naming a JSON key pair (`{"access_key_id",
"secret_access_key", "session_token"?}`), or else from botocore's standard chain.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from cordon import jsoncodec
from cordon.errors import PackError, UpstreamError
from gateway.upstream.steps import End, Step, Text, ToolArgs, ToolStart
from gateway.upstream.translate import (
    MAX_EVENT,
    arguments,
    chat_completion,
    json_object,
    sampling,
    text_of,
    tool_call,
    turns,
)

__all__ = [
    "FINISH",
    "embed_request",
    "embed_url",
    "embedding_of",
    "from_converse",
    "key_pair",
    "sign",
    "steps",
    "to_converse",
    "url",
]

# OpenAI's sampling settings, by Converse's names (inferenceConfig).
SAMPLING = {
    "max_tokens": "maxTokens",
    "temperature": "temperature",
    "top_p": "topP",
    "stop": "stopSequences",
}
# Converse stop reasons, as OpenAI's finish reasons.
FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}


def url(base_url: str, model: str, stream: bool = False) -> str:
    operation = "converse-stream" if stream else "converse"
    return f"{base_url}/model/{quote(model, safe='')}/{operation}"


def to_converse(chat: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat completion request as a Converse (or ConverseStream) request."""
    texts, messages = turns(chat, "assistant", "content", _blocks)
    system = [{"text": text} for text in texts]
    body: dict[str, Any] = {"messages": messages}
    if system:
        body["system"] = system
    config = sampling(chat, SAMPLING)
    if config:
        body["inferenceConfig"] = config
    tools = [_tool(t) for t in chat.get("tools") or [] if t.get("type") == "function"]
    choice = chat.get("tool_choice")
    if tools and choice != "none":  # Converse has no "none": the tools are left out
        body["toolConfig"] = {"tools": tools}
        if choice == "required":
            body["toolConfig"]["toolChoice"] = {"any": {}}
        elif isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            body["toolConfig"]["toolChoice"] = {"tool": {"name": name}}
    return body


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    if message.get("role") == "tool":
        result = {
            "toolUseId": str(message.get("tool_call_id", "")),
            "content": [{"text": text_of(message.get("content"))}],
        }
        return [{"toolResult": result}]
    blocks: list[dict[str, Any]] = []
    text = text_of(message.get("content"))
    if text:
        blocks.append({"text": text})
    for call in message.get("tool_calls") or []:
        name, args = arguments(call)
        use = {"toolUseId": str(call.get("id", "")), "name": name, "input": args}
        blocks.append({"toolUse": use})
    return blocks or [{"text": ""}]


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool.get("function") or {}
    spec: dict[str, Any] = {
        "name": function.get("name"),
        "inputSchema": {"json": function.get("parameters") or {"type": "object"}},
    }
    if function.get("description"):
        spec["description"] = function["description"]
    return {"toolSpec": spec}


def from_converse(answer: dict[str, Any], model: str) -> dict[str, Any]:
    """A Converse answer as an OpenAI chat completion."""
    message = (answer.get("output") or {}).get("message") or {}
    text, calls = [], []
    for block in message.get("content") or []:
        if "text" in block:
            text.append(str(block["text"]))
        elif "toolUse" in block:
            use = block["toolUse"]
            calls.append(
                tool_call(str(use.get("toolUseId", "")), str(use.get("name", "")), use.get("input"))
            )
    usage = answer.get("usage") or {}
    counted = (usage.get("inputTokens"), usage.get("outputTokens"), usage.get("totalTokens"))
    finish = FINISH.get(str(answer.get("stopReason")), "stop")
    return chat_completion(model, text, calls, finish, counted)


async def steps(chunks: AsyncIterator[bytes]) -> AsyncIterator[Step]:
    """A ConverseStream answer's events as steps; no `End` if it stopped without its
    `messageStop` (the relay then records a broken stream). An exception event, or a
    frame that fails its checksum or declares more than MAX_EVENT bytes, is
    `UpstreamError`."""
    tools: dict[Any, int] = {}  # contentBlockIndex -> the call's index among the calls
    stop: str | None = None
    usage: tuple[Any, Any, Any] = (None, None, None)
    async for headers, payload in _frames(chunks):
        name, data = _event(headers, payload)
        if name == "contentBlockStart" and "toolUse" in (data.get("start") or {}):
            use = data["start"]["toolUse"]
            tools[data.get("contentBlockIndex")] = len(tools)
            index = tools[data.get("contentBlockIndex")]
            yield ToolStart(index, str(use.get("toolUseId", "")), str(use.get("name", "")))
        elif name == "contentBlockDelta":
            delta = data.get("delta") or {}
            if "text" in delta:
                yield Text(str(delta["text"]))
            elif "toolUse" in delta and data.get("contentBlockIndex") in tools:
                index = tools[data.get("contentBlockIndex")]
                yield ToolArgs(index, str(delta["toolUse"].get("input", "")))
        elif name == "messageStop":
            stop = str(data.get("stopReason"))
        elif name == "metadata":
            counted = data.get("usage") or {}
            usage = (
                counted.get("inputTokens"),
                counted.get("outputTokens"),
                counted.get("totalTokens"),
            )
    if stop is not None:
        yield End(FINISH.get(stop, "stop"), usage)


async def _frames(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[dict[str, Any], bytes]]:
    """AWS event-stream messages: cut here by the length each prelude declares (capped,
    so a frame is buffered once and never beyond MAX_EVENT), then checked and parsed by
    botocore's own parser (prelude and message CRC32s, typed headers)."""
    from botocore.eventstream import EventStreamBuffer, ParserError

    pending = bytearray()
    async for chunk in chunks:
        pending += chunk
        while len(pending) >= 4:
            size = int.from_bytes(pending[:4], "big")
            if size > MAX_EVENT or size < 16:
                raise UpstreamError(f"Bedrock's stream declared a frame of {size} bytes")
            if len(pending) < size:
                break
            frame = EventStreamBuffer()
            frame.add_data(bytes(pending[:size]))
            del pending[:size]
            try:
                (message,) = list(frame)
            except (ParserError, ValueError) as exc:
                raise UpstreamError(f"Bedrock's stream was unreadable: {exc}") from exc
            yield message.headers, message.payload


def _event(headers: dict[str, Any], payload: bytes) -> tuple[str, dict[str, Any]]:
    if headers.get(":message-type") != "event":
        # the exception's type only: its message may quote the prompt, and this text
        # reaches the caller's stream and the record, where no rule runs on it
        kind = headers.get(":exception-type") or headers.get(":error-code") or "error"
        raise UpstreamError(f"Bedrock broke off the stream: {str(kind)[:100]}")
    return str(headers.get(":event-type", "")), json_object(payload, "Bedrock")


def embed_url(base_url: str, model: str) -> str:
    return f"{base_url}/model/{quote(model, safe='')}/invoke"


def embed_request(model: str, text: str) -> dict[str, Any]:
    """An InvokeModel body embedding one text: Cohere's models take `texts`, Amazon's
    Titan models `inputText`."""
    if model.startswith("cohere."):
        return {"texts": [text], "input_type": "search_document"}
    return {"inputText": text}


def embedding_of(answer: dict[str, Any]) -> tuple[list[float], int | None]:
    """One embedding's vector and the tokens counted, from an InvokeModel answer."""
    if isinstance(answer.get("embeddings"), list) and answer["embeddings"]:  # Cohere
        return list(answer["embeddings"][0]), None
    if isinstance(answer.get("embedding"), list):  # Titan
        counted = answer.get("inputTextTokenCount")
        return list(answer["embedding"]), counted if isinstance(counted, int) else None
    raise UpstreamError("Bedrock's embedding answer held no vector")


def sign(target_url: str, body: bytes, secret: str, region: str) -> dict[str, str]:
    """SigV4 headers for a Bedrock runtime request, signed by botocore."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(
        method="POST", url=target_url, data=body, headers={"content-type": "application/json"}
    )
    SigV4Auth(_credentials(secret), "bedrock", region).add_auth(request)
    return {k.lower(): v for k, v in request.headers.items()}


_CHAIN: list[Any] = []  # botocore's chain, resolved once: it refreshes what it found


def _credentials(secret: str) -> Any:
    if not secret:  # botocore's chain: environment, profile, container or instance role
        if not _CHAIN:
            from botocore.session import get_session

            found = get_session().get_credentials()
            if found is None:
                raise UpstreamError("no AWS credentials: name a key pair in secret_key_ref")
            _CHAIN.append(found)
        return _CHAIN[0]
    return key_pair(secret)


def key_pair(secret: str) -> Any:
    """The credentials a target's secret names (checked when the pack is activated);
    `PackError` if it is not the JSON key pair."""
    from botocore.credentials import Credentials

    try:
        pair = jsoncodec.loads(secret)
        return Credentials(
            pair["access_key_id"], pair["secret_access_key"], pair.get("session_token")
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise PackError(
            "a Bedrock secret is JSON with access_key_id and secret_access_key"
        ) from exc
