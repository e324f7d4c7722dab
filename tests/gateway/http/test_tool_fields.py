"""Every content field of every dialect goes through the rules: tool-call arguments,
tool results, Responses items and Anthropic blocks, both ways, streamed and not, with
the real SDKs. Input rules here redact phone numbers, output rules email addresses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from cordon_dev.procs import wait_for_http
from cordon_dev.stack import DevStack
from tests.helpers import chat, enforce, gateway_sdk

PACK = """\
pack: {name: tools}
policies:
  - {name: phones-in, type: input_filter, action: redact, patterns: [phone]}
  - {name: mail-out, type: output_filter, action: redact, patterns: [email]}
"""
PHONE = "+44 20 7946 0958"
EMAIL = "bob@example.com"
CHAT_TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
RESPONSES_TOOL = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}
ANTHROPIC_TOOL = {"name": "lookup", "input_schema": {"type": "object"}}


@pytest.fixture(scope="module")
def gateway(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    assert stack.topology is not None
    mock = stack.start_mock("mock-tools")
    name = "gateway-eu-west-gw-tools"
    url = stack.start_gateway(
        "eu-west",
        "gw-tools",
        mock,
        pack_name="tools",
        extra={
            "targets": [
                {"id": "mock", "provider": {"api": "openai", "base_url": mock}},
                {"id": "mock-anthropic", "provider": {"api": "anthropic", "base_url": mock}},
            ]
        },
    )
    wait_for_http(url + "/readyz", 30, stack.processes[name].proc)
    enforce(stack, url, PACK, tmp_path_factory.mktemp("tools"))
    yield url, mock.removesuffix("/v1")
    stack.processes[name].stop()
    stack.processes["mock-tools"].stop()


def _last(mock: str) -> str:
    return httpx.get(mock + "/mock/last").text


def _anthropic(url: str, endpoints: dict[str, Any]) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=endpoints["api_key"], max_retries=0)


def test_chat_tool_arguments_and_results_are_screened_both_ways(
    gateway: tuple[str, str], endpoints: dict[str, Any]
) -> None:
    url, mock = gateway
    history: list[Any] = [
        {"role": "user", "content": f"find {EMAIL}"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": json.dumps({"phone": PHONE})},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": f"owner's phone is {PHONE}"},
        {"role": "user", "content": f"now mail {EMAIL}"},
    ]
    for stream in (False, True):
        sdk = gateway_sdk(url, endpoints["api_key"])
        if stream:
            arguments = ""
            for chunk in sdk.chat.completions.create(
                model="mock-gpt", messages=history, tools=[CHAT_TOOL], stream=True
            ):
                for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                    arguments += (call.function.arguments or "") if call.function else ""
        else:
            answer = sdk.chat.completions.create(
                model="mock-gpt", messages=history, tools=[CHAT_TOOL]
            )
            calls = answer.choices[0].message.tool_calls or []
            arguments = calls[0].function.arguments  # type: ignore[union-attr]
        sent = _last(mock)
        assert PHONE not in sent and "[PHONE]" in sent  # tool arguments and results, inbound
        forwarded = json.loads(sent)["messages"][1]["tool_calls"][0]["function"]["arguments"]
        assert json.loads(forwarded) == {"phone": "[PHONE]"}  # still valid JSON
        assert EMAIL not in arguments  # tool-call arguments, outbound
        assert json.loads(arguments) == {"echo": "echo: now mail [EMAIL]"}


def test_arguments_the_reader_refuses_are_read_with_their_escapes_decoded(
    gateway: tuple[str, str], endpoints: dict[str, Any]
) -> None:
    """Arguments with a key written twice are not JSON the reader accepts, so they are
    screened as text: a `\\u` escape inside them must not hide a phone number."""
    url, mock = gateway
    hidden = PHONE.replace("0958", "\\u0030958")  # the 0 written as a JSON escape
    arguments = '{"phone": "none", "phone": "' + hidden + '"}'
    call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": arguments}}
    history = [
        {"role": "user", "content": "call someone"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "done"},
        {"role": "user", "content": "go on"},
    ]
    response = chat(url, endpoints["api_key"], body={"model": "mock-gpt", "messages": history})
    assert response.status_code == 200
    forwarded = json.loads(_last(mock))["messages"][1]["tool_calls"][0]["function"]["arguments"]
    assert "[PHONE]" in forwarded and "7946" not in forwarded


def test_responses_items_are_screened_both_ways(
    gateway: tuple[str, str], endpoints: dict[str, Any]
) -> None:
    url, mock = gateway
    items: list[Any] = [
        {"role": "user", "content": [{"type": "input_text", "text": "look it up"}]},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "lookup",
            "arguments": json.dumps({"phone": PHONE}),
        },
        {"type": "function_call_output", "call_id": "call_1", "output": f"call {PHONE}"},
        {"role": "user", "content": f"write to {EMAIL}"},
    ]
    sdk = gateway_sdk(url, endpoints["api_key"])
    answer = sdk.responses.create(model="mock-gpt", input=items, tools=[RESPONSES_TOOL])
    sent = _last(mock)
    assert PHONE not in sent and sent.count("[PHONE]") == 2
    call = answer.output[0]
    assert call.type == "function_call" and EMAIL not in call.arguments
    assert json.loads(call.arguments) == {"echo": "echo: write to [EMAIL]"}
    streamed, done = "", ""
    with sdk.responses.stream(model="mock-gpt", input=items, tools=[RESPONSES_TOOL]) as events:
        for event in events:
            if event.type == "response.function_call_arguments.delta":
                streamed += event.delta
            elif event.type == "response.function_call_arguments.done":
                done = event.arguments
    assert json.loads(streamed) == json.loads(done) == {"echo": "echo: write to [EMAIL]"}


def test_anthropic_tool_blocks_are_screened_both_ways(
    gateway: tuple[str, str], endpoints: dict[str, Any]
) -> None:
    url, mock = gateway
    messages: list[Any] = [
        {"role": "user", "content": "look it up"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "t1", "name": "lookup", "input": {"phone": PHONE}}
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": f"it is {PHONE}"},
                {"type": "text", "text": f"write to {EMAIL}"},
            ],
        },
    ]
    sdk = _anthropic(url, endpoints)
    answer = sdk.messages.create(
        model="mock-claude", max_tokens=64, messages=messages, tools=[ANTHROPIC_TOOL]
    )
    sent = _last(mock)
    assert PHONE not in sent and sent.count("[PHONE]") == 2
    block = answer.content[0]
    assert block.type == "tool_use" and block.input == {"echo": "echo: write to [EMAIL]"}
    with sdk.messages.stream(
        model="mock-claude", max_tokens=64, messages=messages, tools=[ANTHROPIC_TOOL]
    ) as stream:
        final = stream.get_final_message()
    streamed = final.content[0]
    assert streamed.type == "tool_use"
    assert streamed.input == {"echo": "echo: write to [EMAIL]"}
