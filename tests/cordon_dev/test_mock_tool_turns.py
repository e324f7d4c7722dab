"""The mock provider plays a model an agent framework can loop with: it calls a real
tool with the argument that tool's schema requires, and once the tool's result is the
last message it answers in text (tests/test_agents_sdk.py relies on both). Made-up tools
without such a schema still get `{"echo": ...}`, which older tests read back."""

from __future__ import annotations

import json
from typing import Any

from cordon_dev.mock_provider import chat_completion, chat_events, message, response

ECHO_SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string"}},
    "required": ["text"],
}
PROMPT = [{"role": "user", "content": "hello there"}]


def _chat_tool(parameters: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": "echo", "parameters": parameters}}


def _streamed_arguments(request: dict[str, Any]) -> str:
    arguments = ""
    for event in chat_events(request):
        body = event.removeprefix(b"data: ").strip()
        if body == b"[DONE]":
            break
        for choice in json.loads(body)["choices"]:
            for call in choice["delta"].get("tool_calls") or []:
                arguments += call["function"]["arguments"]
    return arguments


def test_a_tools_one_required_string_parameter_carries_the_reply() -> None:
    request = {"model": "mock-gpt", "messages": PROMPT, "tools": [_chat_tool(ECHO_SCHEMA)]}
    (call,) = chat_completion(request)["choices"][0]["message"]["tool_calls"]
    assert json.loads(call["function"]["arguments"]) == {"text": "echo: hello there"}
    assert json.loads(_streamed_arguments({**request, "stream": True})) == {
        "text": "echo: hello there"
    }
    responses: dict[str, Any] = {
        "input": "hello there",
        "tools": [{"type": "function", "name": "echo", "parameters": ECHO_SCHEMA}],
    }
    assert json.loads(response(responses)["output"][0]["arguments"]) == {
        "text": "echo: hello there"
    }
    anthropic = {"messages": PROMPT, "tools": [{"name": "echo", "input_schema": ECHO_SCHEMA}]}
    assert message(anthropic)["content"][0]["input"] == {"text": "echo: hello there"}


def test_other_schemas_keep_the_echo_argument() -> None:
    two = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        "required": ["a", "b"],
    }
    number = {"type": "object", "properties": {"n": {"type": "number"}}, "required": ["n"]}
    for schema in ({"type": "object"}, two, number):
        request = {"model": "mock-gpt", "messages": PROMPT, "tools": [_chat_tool(schema)]}
        (call,) = chat_completion(request)["choices"][0]["message"]["tool_calls"]
        assert json.loads(call["function"]["arguments"]) == {"echo": "echo: hello there"}


def test_after_the_tools_result_the_answer_is_text() -> None:
    called = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_mock_1",
                "type": "function",
                "function": {"name": "echo", "arguments": '{"text": "hi"}'},
            }
        ],
    }
    history = [*PROMPT, called, {"role": "tool", "tool_call_id": "call_mock_1", "content": "hi"}]
    request = {"model": "mock-gpt", "messages": history, "tools": [_chat_tool(ECHO_SCHEMA)]}
    answer = chat_completion(request)["choices"][0]
    assert answer["message"] == {"role": "assistant", "content": "tool said: hi"}
    assert answer["finish_reason"] == "stop"
    streamed = "".join(
        json.loads(e.removeprefix(b"data: "))["choices"][0]["delta"].get("content", "")
        for e in chat_events({**request, "stream": True})[:-2]
    )
    assert streamed == "tool said: hi"
