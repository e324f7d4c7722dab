"""Amazon Bedrock as an upstream: the caller speaks OpenAI (the real `openai` SDK), the
gateway calls Bedrock's Converse API on a mock speaking its wire, signed with SigV4 by
botocore with the key pair the pack's secret names; the pack's rules run on what is
translated both ways, and the record names the target and its region. No request may
probe a metadata address: the credentials are given, and AWS_EC2_METADATA_DISABLED is set."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cordon_dev.inprocess import InProcessGateway, in_process_gateway, serve_in_loop
from cordon_dev.mock_provider import MockProvider
from tests.gateway.upstream.translated import bedrock_target, fronting, sdk

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]

EMAIL = "ana.bedrock@example.com"
KEYS = {"access_key_id": "AKIDEXAMPLE", "secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCY"}


@pytest.fixture
async def gw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[InProcessGateway, MockProvider, str]]:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("CORDON_PROVIDER_BEDROCK", json.dumps(KEYS))
    async with fronting(tmp_path, bedrock_target) as served:
        yield served


def decisions(gateway: InProcessGateway) -> list[dict[str, Any]]:
    return [r for r in gateway.records() if r["kind"] == "decision"]


async def test_a_chat_goes_to_converse_signed_and_comes_back_as_openais(
    gw: tuple[InProcessGateway, MockProvider, str],
) -> None:
    gateway, mock, url = gw
    answer = await sdk(url, gateway).chat.completions.create(
        model="anthropic.claude-3-haiku",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": f"mail {EMAIL}"},
        ],
        max_tokens=20,
    )
    assert answer.choices[0].message.content == "echo: mail [EMAIL]"
    assert answer.choices[0].finish_reason == "stop" and answer.usage is not None
    assert mock.seen_auth["model"] == "anthropic.claude-3-haiku"
    signed = mock.seen_auth["authorization"]
    scope = "/eu-central-1/bedrock/aws4_request"
    assert signed.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") and scope in signed
    sent = mock.last_request
    assert sent["system"] == [{"text": "be brief"}] and sent["inferenceConfig"] == {"maxTokens": 20}
    assert EMAIL not in json.dumps(sent)  # the rules ran before the translation
    (record,) = decisions(gateway)
    assert (record["route"], record["route_region"]) == ("bedrock-eu", "eu-central-1")
    assert KEYS["secret_access_key"] not in json.dumps(gateway.records())


async def test_a_tool_call_round_trips(
    gw: tuple[InProcessGateway, MockProvider, str],
) -> None:
    gateway, mock, url = gw
    client = sdk(url, gateway)
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    asked = [{"role": "user", "content": f"who is {EMAIL}"}]
    called = await client.chat.completions.create(model="m", messages=asked, tools=[tool])
    call = called.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert called.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "lookup" and EMAIL not in call.function.arguments  # type: ignore[union-attr]
    assert mock.last_request["toolConfig"]["tools"][0]["toolSpec"]["name"] == "lookup"
    followed = [
        *asked,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": f"{EMAIL} is the CFO"},
    ]
    answered = await client.chat.completions.create(model="m", messages=followed, tools=[tool])
    result = mock.last_request["messages"][-1]["content"][0]["toolResult"]
    assert result["toolUseId"] == call.id and EMAIL not in json.dumps(mock.last_request)
    assert answered.choices[0].finish_reason == "stop"
    assert answered.choices[0].message.content == "tool said: [EMAIL] is the CFO"


def test_lint_takes_a_bedrock_target() -> None:
    from cordon.packs.lint import check

    target = {
        "id": "bedrock-eu",
        "provider": {
            "api": "bedrock",
            "base_url": "https://bedrock-runtime.eu-central-1.amazonaws.com",
        },
        "secret_key_ref": {"store": "BEDROCK_KEYS"},
        "region": "eu-central-1",
    }
    document = {"pack": {"name": "default"}, "providers": {"targets": [target]}}
    assert check(document, "pack.yaml") == []


async def test_without_a_secret_botocores_chain_gives_the_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never a metadata probe
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMCHAIN")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "chain-secret")
    mock = MockProvider()
    async with (
        serve_in_loop(mock) as mock_url,
        in_process_gateway(tmp_path) as gateway,
        serve_in_loop(gateway.app) as url,
    ):
        target = {"id": "bedrock-eu", "provider": {"api": "bedrock", "base_url": mock_url}}
        target["region"] = "eu-west-1"
        providers = {"targets": [target]}
        await gateway.activate({"pack": {"name": "default"}, "providers": providers}, 2)
        answer = await sdk(url, gateway).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "chain"}]
        )
    assert answer.choices[0].message.content == "echo: chain"
    assert mock.seen_auth["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDFROMCHAIN/")
