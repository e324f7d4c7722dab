"""Google Gemini as an upstream for OpenAI-style chat completions: `generateContent`.

As for Bedrock (`gateway.upstream.bedrock`), the caller keeps speaking OpenAI's chat
completions and the pack's rules run on that shape on both sides; here the request
becomes `POST <base>/models/<model>:generateContent` (`contents` of role `user` or
`model` with `parts`, `systemInstruction`, `generationConfig`, `tools` of function
declarations) with the key in `x-goog-api-key`, and the answer an OpenAI chat
completion. Streams (`streamGenerateContent`) and service-account tokens are not served
yet: a stream is refused with a clear error.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from cordon.errors import UpstreamError
from gateway.upstream.translate import arguments, chat_completion, sampling, text_of, tool_call

__all__ = ["FINISH", "from_gemini", "to_gemini", "url"]

SAMPLING = {
    "max_tokens": "maxOutputTokens",
    "temperature": "temperature",
    "top_p": "topP",
    "stop": "stopSequences",
}
FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter"}


def url(base_url: str, model: str) -> str:
    return f"{base_url}/models/{quote(model, safe='')}:generateContent"


def to_gemini(chat: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat completion request as a `generateContent` request."""
    if chat.get("stream"):
        raise UpstreamError(
            "streamed answers through Gemini are not served yet; ask without stream"
        )
    messages = [m for m in chat.get("messages", []) if isinstance(m, dict)]
    names = _call_names(messages)
    system = [
        text_of(m.get("content")) for m in messages if m.get("role") in ("system", "developer")
    ]
    contents: list[dict[str, Any]] = []
    for message in messages:
        if message.get("role") in ("system", "developer"):
            continue
        role = "model" if message.get("role") == "assistant" else "user"
        parts = _parts(message, names)
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": "\n".join(system)}]}
    config = sampling(chat, SAMPLING)
    if config:
        body["generationConfig"] = config
    declarations = [_declaration(t) for t in chat.get("tools") or [] if t.get("type") == "function"]
    if declarations:
        body["tools"] = [{"functionDeclarations": declarations}]
    return body


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
    for index, part in enumerate((candidate.get("content") or {}).get("parts") or []):
        if "text" in part:
            text.append(str(part["text"]))
        elif "functionCall" in part:
            call = part["functionCall"]
            calls.append(
                tool_call(f"call_gemini_{index}", str(call.get("name", "")), call.get("args"))
            )
    finish = "tool_calls" if calls else FINISH.get(str(candidate.get("finishReason")), "stop")
    usage = answer.get("usageMetadata") or {}
    counted = (
        usage.get("promptTokenCount"),
        usage.get("candidatesTokenCount"),
        usage.get("totalTokenCount"),
    )
    return chat_completion(model, text, calls, finish, counted)
