"""The engine in-process reads tool calls as the gateway does (the arguments a model
writes, the results the application sends back), and a record that cannot be written
follows the pack's fail mode: closed, no answer reaches the application."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from cordon_sdk import govern
from gateway.records import local_log
from tests.cordon_sdk.harness import EMAIL, asking, records, say, worker

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "send_note",
            "parameters": {
                "type": "object",
                "properties": {"note": {"type": "string"}},
                "required": ["note"],
            },
        },
    }
]
PACK = """\
pack: {name: tools}
fail_mode: closed
policies:
  - {name: mail-in, type: input_filter, action: redact, patterns: [email]}
  - {name: mail-out, type: output_filter, action: redact, patterns: [email]}
"""


def _client(root: Path, provider_url: str) -> openai.OpenAI:
    config = root / "tools.yaml"
    config.write_text(PACK)
    sdk = openai.OpenAI(api_key="sk-app", base_url=f"{provider_url}/v1", max_retries=0)
    return govern(sdk, config=config)


def test_tool_call_arguments_are_read_whole_and_streamed(tmp_path: Path, provider_url: str) -> None:
    client = _client(tmp_path, provider_url)
    asked = asking(say(f"note for {EMAIL}"))
    whole = client.chat.completions.create(model="mock-gpt", messages=asked, tools=TOOLS)
    call = whole.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert json.loads(call.function.arguments) == {"note": "note for [EMAIL]"}  # type: ignore[union-attr]
    stream = client.chat.completions.create(
        model="mock-gpt", messages=asked, tools=TOOLS, stream=True
    )
    streamed = "".join(
        tool.function.arguments or ""
        for chunk in stream
        if chunk.choices and chunk.choices[0].delta.tool_calls
        for tool in chunk.choices[0].delta.tool_calls
        if tool.function is not None
    )
    assert json.loads(streamed) == {"note": "note for [EMAIL]"}


def test_a_tool_result_is_read_before_it_reaches_the_provider(
    tmp_path: Path, provider_url: str
) -> None:
    client = _client(tmp_path, provider_url)
    messages: list[Any] = [
        {"role": "user", "content": "whom should I write?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "send_note", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": f"write to {EMAIL}"},
    ]
    answer = client.chat.completions.create(model="mock-gpt", messages=messages, tools=TOOLS)
    assert answer.choices[0].message.content == "tool said: write to [EMAIL]"
    sent = httpx.get(f"{provider_url}/mock/last", timeout=5).text
    assert EMAIL not in sent and "[EMAIL]" in sent


def test_a_record_that_cannot_be_written_releases_no_answer(
    tmp_path: Path, provider_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = _client(tmp_path, provider_url)
    assert client.chat.completions.create(model="mock-gpt", messages=asking("first")).choices

    def full(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as disk:
        disk.setattr(local_log, "_write_all", full)
        with pytest.raises(openai.APIStatusError) as refused:
            client.chat.completions.create(model="mock-gpt", messages=asking("the secret answer"))
    assert refused.value.status_code == 503
    assert "secret answer" not in refused.value.response.text
    assert refused.value.code == "record_commit_failed"  # type: ignore[attr-defined]
    after = client.chat.completions.create(model="mock-gpt", messages=asking("room again"))
    assert after.choices[0].message.content == "echo: room again"
    assert [r["outcome"] for r in records(worker(tmp_path))][-1] == "allow"
