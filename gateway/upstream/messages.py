"""Anthropic's Messages API in front of a translated provider: a caller speaking the
`anthropic` SDK to a Bedrock or Gemini target. Its request becomes an OpenAI chat
completion request (which `bedrock` and `gemini` translate on), and the chat completion
they give back becomes an Anthropic message. The pack's rules ran on the Anthropic
shape before this, and run on it again after, so nothing here decides anything.

Content the chat shape cannot carry (images, documents) is refused with a clear error,
never dropped: a translation must not change what was asked.
"""

from __future__ import annotations

import time
from typing import Any

from cordon import jsoncodec
from cordon.errors import UpstreamError
from gateway.upstream.steps import anthropic_stop
from gateway.upstream.translate import count, text_of

__all__ = ["from_completion", "to_chat"]

SAMPLING = ("max_tokens", "temperature", "top_p")


def to_chat(request: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic Messages request as an OpenAI chat completion request."""
    messages: list[dict[str, Any]] = []
    system = request.get("system")
    if system:
        messages.append({"role": "system", "content": _text(system)})
    for message in request.get("messages") or []:
        messages.extend(_turn(message))
    chat: dict[str, Any] = {"model": request.get("model"), "messages": messages}
    chat.update({k: request[k] for k in SAMPLING if k in request})
    stops = request.get("stop_sequences")
    if stops:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise UpstreamError("stop_sequences is a list of strings")
        chat["stop"] = stops
    tools = [_tool(t) for t in request.get("tools") or [] if isinstance(t, dict)]
    if tools:
        chat["tools"] = tools
    choice = _tool_choice(request.get("tool_choice"))
    if choice is not None:
        chat["tool_choice"] = choice
    if request.get("stream"):
        chat["stream"] = True
    return chat


def _text(content: Any) -> str:
    """A system prompt or a tool result as text: a string, or its text blocks (any other
    block, or a text that is not a string, is refused: see `translate.text_of`)."""
    return text_of(content)


def _turn(message: dict[str, Any]) -> list[dict[str, Any]]:
    """One Anthropic message as chat messages: tool results become `tool` messages,
    tool uses the assistant's `tool_calls`."""
    role, content = message.get("role"), message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    if not isinstance(content, list):
        raise UpstreamError("a message's content is a string or a list of blocks")
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_use" and isinstance(block.get("input", {}), dict):
            arguments = jsoncodec.dumps(block.get("input") or {}).decode()
            function = {"name": block.get("name"), "arguments": arguments}
            calls.append({"id": block.get("id"), "type": "function", "function": function})
        elif kind == "tool_result":
            answered = {"role": "tool", "tool_call_id": block.get("tool_use_id")}
            results.append(answered | {"content": _text(block.get("content"))})
        else:
            raise UpstreamError(f"content of type {kind} is not translated for this provider")
    turn: list[dict[str, Any]] = list(results)
    if texts or calls:
        said: dict[str, Any] = {"role": role, "content": "".join(texts) if texts else None}
        if calls:
            said["tool_calls"] = calls
        turn.append(said)
    return turn


def _tool_choice(choice: Any) -> Any:
    """Anthropic's `tool_choice` as OpenAI's: auto, any (required), none, or one tool."""
    if not isinstance(choice, dict):
        return None
    kind = choice.get("type")
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name")}}
    return {"auto": "auto", "any": "required", "none": "none"}.get(str(kind))


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.get("name")}
    if tool.get("description"):
        function["description"] = tool["description"]
    function["parameters"] = tool.get("input_schema") or {"type": "object"}
    return {"type": "function", "function": function}


def from_completion(completion: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat completion (as `bedrock` and `gemini` write it) as an Anthropic
    message."""
    choice = (completion.get("choices") or [{}])[0]
    reply = choice.get("message") or {}
    said = reply.get("content")
    if said is not None and not isinstance(said, str):  # nothing the rules would read
        raise UpstreamError("the provider's answer held content that is not text")
    content: list[dict[str, Any]] = []
    if said:
        content.append({"type": "text", "text": said})
    for call in reply.get("tool_calls") or []:
        function = call.get("function") or {}
        raw = function.get("arguments") or "{}"
        try:
            given = jsoncodec.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            given = raw
        if not isinstance(given, dict):  # the rules read an object's strings
            given = {"arguments": given}
        use = {"type": "tool_use", "id": call.get("id"), "name": function.get("name")}
        content.append(use | {"input": given})
    usage = completion.get("usage") or {}
    return {
        "id": f"msg_{int(time.time() * 1000)}",
        "type": "message",
        "role": "assistant",
        "model": completion.get("model"),
        "content": content,
        "stop_reason": anthropic_stop(str(choice.get("finish_reason") or "stop")),
        "stop_sequence": None,
        "usage": {
            "input_tokens": count(usage.get("prompt_tokens")) or 0,
            "output_tokens": count(usage.get("completion_tokens")) or 0,
        },
    }
