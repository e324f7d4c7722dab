"""Google Gemini as an upstream: the caller speaks OpenAI (the real `openai` SDK), the
gateway calls `generateContent` on a mock speaking Gemini's wire with the target's key
in `x-goog-api-key`; the pack's rules run on what is translated both ways, and the
record names the target and its region."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cordon.packs.lint import check
from cordon_dev.inprocess import InProcessGateway
from cordon_dev.mock_provider import MockProvider
from tests.gateway.upstream.translated import fronting, gemini_target, sdk

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]

EMAIL = "eva.gemini@example.com"


@pytest.fixture
async def gw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[InProcessGateway, MockProvider, str]]:
    monkeypatch.setenv("CORDON_PROVIDER_GEMINI", "gemini-key-1")
    async with fronting(tmp_path, gemini_target) as served:
        yield served


async def test_a_chat_and_a_tool_call_go_to_generate_content_and_back(
    gw: tuple[InProcessGateway, MockProvider, str],
) -> None:
    gateway, mock, url = gw
    client = sdk(url, gateway)
    answer = await client.chat.completions.create(
        model="gemini-2.0-flash",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": f"mail {EMAIL}"},
        ],
        max_tokens=20,
    )
    assert answer.choices[0].message.content == "echo: mail [EMAIL]"
    assert mock.seen_auth["x-goog-api-key"] == "gemini-key-1"
    assert mock.seen_auth["model"] == "gemini-2.0-flash"
    sent = mock.last_request
    assert sent["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert sent["generationConfig"] == {"maxOutputTokens": 20} and EMAIL not in json.dumps(sent)

    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    asked = [{"role": "user", "content": f"who is {EMAIL}"}]
    called = await client.chat.completions.create(
        model="gemini-2.0-flash", messages=asked, tools=[tool]
    )
    call = called.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert called.choices[0].finish_reason == "tool_calls" and call.function.name == "lookup"  # type: ignore[union-attr]
    followed = [
        *asked,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": f"{EMAIL} is the CFO"},
    ]
    await client.chat.completions.create(model="gemini-2.0-flash", messages=followed, tools=[tool])
    response = mock.last_request["contents"][-1]["parts"][0]["functionResponse"]
    assert response["name"] == "lookup" and EMAIL not in json.dumps(mock.last_request)
    routes = {(r["route"], r["route_region"]) for r in gateway.records() if r["kind"] == "decision"}
    assert routes == {("gemini-eu", "europe-west4")}


def test_lint_takes_a_gemini_target() -> None:
    document = {
        "pack": {"name": "default"},
        "providers": {"targets": [gemini_target("https://g.example")]},
    }
    assert check(document, "pack.yaml") == []
