"""Amazon Bedrock as an upstream for OpenAI-style chat completions: the Converse API.

The caller keeps speaking OpenAI's chat completions; the gateway's rules run on that
shape before and after, so every field of the translated traffic passes them. Here the
request becomes a Converse request (`POST /model/<modelId>/converse`: messages of
content blocks, `system`, `inferenceConfig`, `toolConfig`) and the answer an OpenAI
chat completion (text, tool calls, usage, finish reason). Requests are signed with
SigV4 by botocore's own signer, never by hand; the credentials come from the target's
secret reference naming a JSON key pair (`{"access_key_id", "secret_access_key",
"session_token"?}`), or else from botocore's standard chain. Streams (ConverseStream)
are not served yet: such a call is refused with a clear error, never half-translated.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from cordon import jsoncodec
from cordon.errors import PackError, UpstreamError

__all__ = ["FINISH", "from_converse", "sign", "to_converse"]

# Converse stop reasons, as OpenAI's finish reasons.
FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}


def url(base_url: str, model: str) -> str:
    return f"{base_url}/model/{quote(model, safe='')}/converse"


def to_converse(chat: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat completion request as a Converse request."""
    if chat.get("stream"):
        raise UpstreamError(
            "streamed answers through Bedrock are not served yet; ask without stream"
        )
    system = [
        {"text": _text(m.get("content"))}
        for m in chat.get("messages", [])
        if m.get("role") in ("system", "developer")
    ]
    messages: list[dict[str, Any]] = []
    for message in chat.get("messages", []):
        role = message.get("role")
        if role in ("system", "developer"):
            continue
        blocks = _blocks(message)
        turn = "assistant" if role == "assistant" else "user"
        if messages and messages[-1]["role"] == turn:  # Converse alternates roles
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": turn, "content": blocks})
    body: dict[str, Any] = {"messages": messages}
    if system:
        body["system"] = system
    config = _inference(chat)
    if config:
        body["inferenceConfig"] = config
    tools = [_tool(t) for t in chat.get("tools") or [] if t.get("type") == "function"]
    if tools:
        body["toolConfig"] = {"tools": tools}
    return body


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    if message.get("role") == "tool":
        result = {
            "toolUseId": str(message.get("tool_call_id", "")),
            "content": [{"text": _text(message.get("content"))}],
        }
        return [{"toolResult": result}]
    blocks: list[dict[str, Any]] = []
    text = _text(message.get("content"))
    if text:
        blocks.append({"text": text})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        try:
            arguments = jsoncodec.loads(function.get("arguments") or "{}")
        except ValueError:
            arguments = {"arguments": function.get("arguments")}
        use = {
            "toolUseId": str(call.get("id", "")),
            "name": str(function.get("name", "")),
            "input": arguments,
        }
        blocks.append({"toolUse": use})
    return blocks or [{"text": ""}]


def _inference(chat: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    tokens = chat.get("max_completion_tokens") or chat.get("max_tokens")
    if isinstance(tokens, int):
        config["maxTokens"] = tokens
    for ours, theirs in (("temperature", "temperature"), ("top_p", "topP")):
        if isinstance(chat.get(ours), int | float):
            config[theirs] = chat[ours]
    stop = chat.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    return config


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
                {
                    "id": str(use.get("toolUseId", "")),
                    "type": "function",
                    "function": {
                        "name": str(use.get("name", "")),
                        "arguments": jsoncodec.dumps(use.get("input") or {}).decode(),
                    },
                }
            )
    reply: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(text) if text or not calls else None,
    }
    if calls:
        reply["tool_calls"] = calls
    usage = answer.get("usage") or {}
    prompt, completion = usage.get("inputTokens"), usage.get("outputTokens")
    return {
        "id": f"chatcmpl-bedrock-{int(time.time() * 1000)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": reply,
                "finish_reason": FINISH.get(str(answer.get("stopReason")), "stop"),
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": usage.get("totalTokens"),
        },
    }


def sign(target_url: str, body: bytes, secret: str, region: str) -> dict[str, str]:
    """SigV4 headers for a Bedrock runtime request, signed by botocore."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(
        method="POST", url=target_url, data=body, headers={"content-type": "application/json"}
    )
    SigV4Auth(_credentials(secret), "bedrock", region).add_auth(request)
    return {k.lower(): v for k, v in request.headers.items()}


def _credentials(secret: str) -> Any:
    from botocore.credentials import Credentials

    if not secret:  # botocore's chain: environment, profile, container or instance role
        from botocore.session import get_session

        found = get_session().get_credentials()
        if found is None:
            raise UpstreamError("no AWS credentials: name a key pair in secret_key_ref")
        return found
    try:
        pair = jsoncodec.loads(secret)
        return Credentials(
            pair["access_key_id"], pair["secret_access_key"], pair.get("session_token")
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise PackError(
            "a Bedrock secret is JSON with access_key_id and secret_access_key"
        ) from exc
