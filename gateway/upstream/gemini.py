"""Google Gemini as an upstream for OpenAI-style chat completions: `generateContent`.

As for Bedrock (`gateway.upstream.bedrock`), the caller keeps speaking OpenAI's chat
completions and the pack's rules run on that shape on both sides; here the request
becomes `POST <base>/models/<model>:generateContent` (`contents` of role `user` or
`model` with `parts`, `systemInstruction`, `generationConfig`, `tools` of function
declarations) with the key in `x-goog-api-key`, and the answer an OpenAI chat
completion. A stream asks `streamGenerateContent?alt=sse`, whose chunks `steps` turns
into the caller's stream as they come; embeddings ask `batchEmbedContents`.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from cordon import jsoncodec
from cordon.errors import UpstreamError
from gateway.upstream.steps import End, Step, Text, ToolArgs, ToolStart
from gateway.upstream.translate import (
    arguments,
    chat_completion,
    sampling,
    sse_json,
    text_of,
    tool_call,
    turns,
)

__all__ = [
    "FINISH",
    "embed_request",
    "embed_url",
    "embeddings_of",
    "from_gemini",
    "steps",
    "to_gemini",
    "url",
]

SAMPLING = {
    "max_tokens": "maxOutputTokens",
    "temperature": "temperature",
    "top_p": "topP",
    "stop": "stopSequences",
}
FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    **dict.fromkeys(
        ("SAFETY", "RECITATION", "PROHIBITED_CONTENT", "SPII", "BLOCKLIST"), "content_filter"
    ),
}


def url(base_url: str, model: str, stream: bool = False) -> str:
    operation = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return f"{base_url}/models/{quote(model, safe='')}:{operation}"


def to_gemini(chat: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat completion request as a `generateContent` request (the same body
    streams)."""
    names = _call_names(chat.get("messages") or [])
    system, contents = turns(chat, "model", "parts", lambda message: _parts(message, names))
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": "\n".join(system)}]}
    config = sampling(chat, SAMPLING)
    if config:
        body["generationConfig"] = config
    declarations = [_declaration(t) for t in chat.get("tools") or [] if t.get("type") == "function"]
    if declarations:
        body["tools"] = [{"functionDeclarations": declarations}]
        mode = _calling_mode(chat.get("tool_choice"))
        if mode is not None:
            body["toolConfig"] = {"functionCallingConfig": mode}
    return body


def _calling_mode(choice: Any) -> dict[str, Any] | None:
    """OpenAI's `tool_choice` as Gemini's function calling mode."""
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        return {"mode": "ANY", "allowedFunctionNames": [name]}
    modes = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
    return {"mode": modes[choice]} if choice in modes else None


def _call_id() -> str:
    """A new id for a call Gemini asked for: Gemini gives none, and one reused across
    turns would answer a later call with an earlier call's result."""
    return f"call_gemini_{secrets.token_hex(8)}"


def _call_names(messages: list[dict[str, Any]]) -> dict[str, str]:
    """Each tool call's id -> its function's name (Gemini answers a call by name)."""
    names: dict[str, str] = {}
    for message in messages:
        for call in message.get("tool_calls") or []:
            names[str(call.get("id", ""))] = str((call.get("function") or {}).get("name", ""))
    return names


def _parts(message: dict[str, Any], names: dict[str, str]) -> list[dict[str, Any]]:
    if message.get("role") == "tool":
        name = names.get(str(message.get("tool_call_id", "")), "tool")
        response = {"name": name, "response": {"content": text_of(message.get("content"))}}
        return [{"functionResponse": response}]
    parts: list[dict[str, Any]] = []
    text = text_of(message.get("content"))
    if text:
        parts.append({"text": text})
    for call in message.get("tool_calls") or []:
        name, args = arguments(call)
        parts.append({"functionCall": {"name": name, "args": args}})
    return parts or [{"text": ""}]


def _declaration(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool.get("function") or {}
    declaration: dict[str, Any] = {"name": function.get("name")}
    if function.get("description"):
        declaration["description"] = function["description"]
    if function.get("parameters"):
        declaration["parameters"] = function["parameters"]
    return declaration


def from_gemini(answer: dict[str, Any], model: str) -> dict[str, Any]:
    """A `generateContent` answer as an OpenAI chat completion."""
    candidates = answer.get("candidates") or [{}]
    candidate = candidates[0] if isinstance(candidates[0], dict) else {}
    text, calls = [], []
    for part in (candidate.get("content") or {}).get("parts") or []:
        if "text" in part:
            text.append(str(part["text"]))
        elif "functionCall" in part:
            call = part["functionCall"]
            calls.append(tool_call(_call_id(), str(call.get("name", "")), call.get("args")))
    finish = "tool_calls" if calls else FINISH.get(str(candidate.get("finishReason")), "stop")
    usage = answer.get("usageMetadata") or {}
    counted = (
        usage.get("promptTokenCount"),
        usage.get("candidatesTokenCount"),
        usage.get("totalTokenCount"),
    )
    return chat_completion(model, text, calls, finish, counted)


async def steps(chunks: AsyncIterator[bytes]) -> AsyncIterator[Step]:
    """A `streamGenerateContent?alt=sse` answer's chunks as steps; no `End` if it
    stopped before a chunk gave its finish reason. An `error` chunk is `UpstreamError`."""
    calls = 0
    finish: str | None = None
    usage: tuple[Any, Any, Any] = (None, None, None)
    async for answer in sse_json(chunks, "Gemini"):
        candidate = (answer.get("candidates") or [{}])[0]
        for part in (candidate.get("content") or {}).get("parts") or []:
            if "text" in part:
                yield Text(str(part["text"]))
            elif "functionCall" in part:
                call = part["functionCall"]
                yield ToolStart(calls, _call_id(), str(call.get("name", "")))
                yield ToolArgs(calls, jsoncodec.dumps(call.get("args") or {}).decode())
                calls += 1
        if candidate.get("finishReason"):
            finish = str(candidate["finishReason"])
        counted = answer.get("usageMetadata") or {}
        if counted:
            usage = (
                counted.get("promptTokenCount"),
                counted.get("candidatesTokenCount"),
                counted.get("totalTokenCount"),
            )
    if finish is not None:
        yield End("tool_calls" if calls else FINISH.get(finish, "stop"), usage)


def embed_url(base_url: str, model: str, vertex: bool) -> str:
    """Gemini's API embeds with `batchEmbedContents`; Vertex AI's with `predict`."""
    operation = "predict" if vertex else "batchEmbedContents"
    return f"{base_url}/models/{quote(model, safe='')}:{operation}"


def embed_request(model: str, texts: list[str], vertex: bool) -> dict[str, Any]:
    """One request per text (`batchEmbedContents`), or one instance per text (`predict`)."""
    if vertex:
        return {"instances": [{"content": t} for t in texts]}
    name = f"models/{model}"
    return {"requests": [{"model": name, "content": {"parts": [{"text": t}]}} for t in texts]}


def embeddings_of(answer: dict[str, Any]) -> tuple[list[list[float]], int | None]:
    """The vectors in the order asked, and the tokens counted (Vertex AI counts them)."""
    if isinstance(answer.get("predictions"), list):
        found = [(p or {}).get("embeddings") or {} for p in answer["predictions"]]
        counts = [(e.get("statistics") or {}).get("token_count") for e in found]
        tokens = sum(int(c) for c in counts if isinstance(c, int | float))
        return [list(e.get("values") or []) for e in found], tokens
    listed = answer.get("embeddings")
    if not isinstance(listed, list):
        raise UpstreamError("Gemini's embedding answer held no embeddings")
    return [list((e or {}).get("values") or []) for e in listed], None
