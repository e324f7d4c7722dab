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

from typing import Any
from urllib.parse import quote

from cordon import jsoncodec
from cordon.errors import PackError, UpstreamError
from gateway.upstream.translate import arguments, chat_completion, sampling, text_of, tool_call

__all__ = ["FINISH", "from_converse", "sign", "to_converse"]

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


def url(base_url: str, model: str) -> str:
    return f"{base_url}/model/{quote(model, safe='')}/converse"


def to_converse(chat: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat completion request as a Converse request."""
    if chat.get("stream"):
        raise UpstreamError(
            "streamed answers through Bedrock are not served yet; ask without stream"
        )
    system = [
        {"text": text_of(m.get("content"))}
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
    config = sampling(chat, SAMPLING)
    if config:
        body["inferenceConfig"] = config
    tools = [_tool(t) for t in chat.get("tools") or [] if t.get("type") == "function"]
    if tools:
        body["toolConfig"] = {"tools": tools}
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
