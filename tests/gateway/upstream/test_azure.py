"""Azure OpenAI as an upstream: the caller speaks OpenAI (the real `openai` SDK), the
gateway calls Azure's deployment API — the deployment in the path, `api-version`, the
key in `api-key` — of a mock speaking Azure's wire, under the same rules and records.
The seeds' environment-based pack is used byte for byte."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from cordon_dev.inprocess import InProcessGateway, in_process_gateway, serve_in_loop
from cordon_dev.mock_provider import MockProvider
from cordon_dev.procs import free_port
from gateway.upstream.providers import AZURE_API_VERSION
from tests.gateway.upstream.translated import anthropic_sdk, sdk

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]

SEEDS = Path(__file__).resolve().parents[2] / "seed_configs"
ENV_PACK = SEEDS / "env-providers.yaml"
EMAIL = "dana.azure@example.com"


@pytest.fixture
async def azure() -> AsyncIterator[tuple[MockProvider, str]]:
    mock = MockProvider()
    async with serve_in_loop(mock) as url:
        yield mock, url


@pytest.fixture
async def seeded(
    tmp_path: Path, azure: tuple[MockProvider, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[InProcessGateway, str]]:
    """A replica enforcing the seeds' pack as written: `openai` first, pointed at a
    port nothing listens on, then `azure-openai` at the Azure mock."""
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{free_port('127.0.0.1')}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-unused")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", azure[1])
    monkeypatch.setenv("AZURE_OPENAI_KEY", "azure-key-1")
    document = yaml.safe_load(ENV_PACK.read_text())
    settings = {"pack_name": document["pack"]["name"]}
    async with (
        in_process_gateway(tmp_path, settings=settings) as gateway,
        serve_in_loop(gateway.app) as url,
    ):
        await gateway.activate(document, 2)
        yield gateway, url


def decisions(gateway: InProcessGateway) -> list[dict[str, Any]]:
    return [r for r in gateway.records() if r["kind"] == "decision"]


async def test_the_seed_pack_falls_back_to_azure_with_azures_wire(
    seeded: tuple[InProcessGateway, str], azure: tuple[MockProvider, str]
) -> None:
    gateway, url = seeded
    mock, _ = azure
    answer = await sdk(url, gateway).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hello azure"}]
    )
    assert answer.choices[0].message.content == "echo: hello azure"
    assert mock.stats["azure chat/completions"] == 1
    assert mock.seen_auth["deployment"] == "gpt-4o"  # the caller's model names it
    assert mock.seen_auth["api-version"] == AZURE_API_VERSION
    assert mock.seen_auth["api-key"] == "azure-key-1" and mock.seen_auth["authorization"] == ""
    (record,) = decisions(gateway)
    assert record["route"] == "azure-openai" and record["attempts"] == ["openai:connect"]


def governed(azure_url: str, **provider: Any) -> dict[str, Any]:
    """Azure as the only target, with the pack's rules on an email both ways."""
    target = {
        "id": "azure-eu",
        "provider": {
            "api": "azure-openai",
            "base_url": f"{azure_url}/openai/deployments",
            **provider,
        },
        "secret_key_ref": {"env": "AZURE_OPENAI_KEY"},
        "deployments": {"gpt-4o": "prod-gpt4o"},
        "models": ["gpt-4o"],  # listed, so Anthropic's callers are served too
        "region": "westeurope",
    }
    rules = [
        {"name": "email-in", "type": "input_filter", "action": "redact", "patterns": ["email"]},
        {"name": "email-out", "type": "output_filter", "action": "redact", "patterns": ["email"]},
    ]
    return {
        "pack": {"name": "default", "version": "1"},
        "providers": {"targets": [target]},
        "policies": rules,
    }


@pytest.fixture
async def governed_gw(
    tmp_path: Path, azure: tuple[MockProvider, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[InProcessGateway, str]]:
    monkeypatch.setenv("AZURE_OPENAI_KEY", "azure-key-2")
    async with in_process_gateway(tmp_path) as gateway, serve_in_loop(gateway.app) as url:
        await gateway.activate(governed(azure[1], api_version="2024-06-01"), 2)
        yield gateway, url


async def test_chat_stream_tools_and_embeddings_pass_the_rules_through_azure(
    governed_gw: tuple[InProcessGateway, str], azure: tuple[MockProvider, str]
) -> None:
    gateway, url = governed_gw
    mock, _ = azure
    client = sdk(url, gateway)
    said = f"write to {EMAIL}"
    answer = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": said}]
    )
    assert answer.choices[0].message.content == "echo: write to [EMAIL]"
    assert EMAIL not in str(mock.last_request)  # redacted before Azure saw it
    assert mock.seen_auth["deployment"] == "prod-gpt4o"  # the pack maps the model
    assert mock.seen_auth["api-version"] == "2024-06-01"

    stream = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": said}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "echo: write to [EMAIL]"

    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    called = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": said}], tools=[tool]
    )
    call = called.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "lookup" and EMAIL not in call.function.arguments  # type: ignore[union-attr]

    embedded = await client.embeddings.create(model="gpt-4o", input=said)
    assert embedded.data and mock.stats["azure embeddings"] == 1
    assert EMAIL not in str(mock.last_request)
    routes = {r["route"] for r in decisions(gateway)}
    assert routes == {"azure-eu"} and len(decisions(gateway)) == 4
    assert all(r["redactions"].get("email") for r in decisions(gateway))


async def test_an_anthropic_caller_reaches_azure_translated_both_ways(
    governed_gw: tuple[InProcessGateway, str], azure: tuple[MockProvider, str]
) -> None:
    """The `anthropic` SDK to an Azure deployment: a message, a stream and a tool use
    go out as chat completions on Azure's wire and come back as Anthropic's, the rules
    run on both sides, and the records name the target and its region."""
    gateway, url = governed_gw
    mock, _ = azure
    client = anthropic_sdk(url, gateway)
    said = [{"role": "user", "content": f"write to {EMAIL}"}]
    answer = await client.messages.create(model="gpt-4o", max_tokens=50, messages=said)  # type: ignore[arg-type]
    assert answer.content[0].text == "echo: write to [EMAIL]"  # type: ignore[union-attr]
    assert answer.stop_reason == "end_turn" and answer.usage.output_tokens > 0
    assert EMAIL not in str(mock.last_request) and mock.seen_auth["deployment"] == "prod-gpt4o"
    async with client.messages.stream(model="gpt-4o", max_tokens=50, messages=said) as stream:  # type: ignore[arg-type]
        streamed = "".join([text async for text in stream.text_stream])
        final = await stream.get_final_message()
    assert streamed == "echo: write to [EMAIL]" and final.usage.output_tokens > 0
    assert mock.last_request["stream_options"] == {"include_usage": True}
    tool = {"name": "lookup", "input_schema": {"type": "object"}}
    used = await client.messages.create(
        model="gpt-4o",
        max_tokens=50,
        messages=said,  # type: ignore[arg-type]
        tools=[tool],  # type: ignore[list-item]
    )
    block = used.content[0]
    assert used.stop_reason == "tool_use" and block.type == "tool_use"
    assert block.input == {"echo": "echo: write to [EMAIL]"}
    assert {(r["route"], r["route_region"]) for r in decisions(gateway)} == {
        ("azure-eu", "westeurope")
    }


async def test_an_entra_token_is_sent_as_a_bearer_and_v1_keeps_the_model_in_the_body(
    tmp_path: Path, azure: tuple[MockProvider, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    mock, azure_url = azure
    monkeypatch.setenv("AZURE_OPENAI_KEY", "entra-token")
    document = governed(azure_url, auth="entra")
    document["providers"]["targets"][0]["provider"]["base_url"] = f"{azure_url}/openai/v1"
    async with in_process_gateway(tmp_path) as gateway, serve_in_loop(gateway.app) as url:
        await gateway.activate(document, 2)
        answer = await sdk(url, gateway).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "v1"}]
        )
    assert answer.choices[0].message.content == "echo: v1"
    assert (
        mock.seen_auth["authorization"] == "Bearer entra-token" and mock.seen_auth["api-key"] == ""
    )
    assert mock.seen_auth["deployment"] == "" and mock.last_request["model"] == "gpt-4o"


async def test_a_call_naming_the_azure_target_goes_straight_to_it(
    seeded: tuple[InProcessGateway, str], azure: tuple[MockProvider, str]
) -> None:
    """`<target id>/<model>` names the target: no other is tried, and the target is
    asked for the model alone (here: Azure's deployment `gpt-4o-mini`)."""
    gateway, url = seeded
    mock, _ = azure
    answer = await sdk(url, gateway).chat.completions.create(
        model="azure-openai/gpt-4o-mini", messages=[{"role": "user", "content": "named"}]
    )
    assert answer.choices[0].message.content == "echo: named"
    assert mock.seen_auth["deployment"] == "gpt-4o-mini"
    assert mock.last_request["model"] == "gpt-4o-mini"
    (record,) = decisions(gateway)
    assert record["route"] == "azure-openai" and record["attempts"] == []
    assert record["model"] == "azure-openai/gpt-4o-mini" and record["model_id"] == "*"
    anthropic_call = {"model": "azure-openai/gpt-4o", "max_tokens": 5}
    anthropic_call["messages"] = [{"role": "user", "content": "hi"}]
    async with httpx.AsyncClient(base_url=url, headers=gateway.auth) as http:
        other_api = await http.post("/v1/messages", json=anthropic_call)
    # a caller of Anthropic's API naming it is served too, translated to Azure's wire
    assert other_api.status_code == 200 and other_api.json()["type"] == "message"
    assert mock.seen_auth["deployment"] == "gpt-4o"


def test_cordon_policy_lint_takes_azure_targets_as_written() -> None:
    """What the gateway enforces, the policy owner's lint accepts: the seeds' pack and
    an Azure target with its deployments, version and Entra auth."""
    from cordon.packs.lint import check

    seed = yaml.safe_load(ENV_PACK.read_text())
    azure = governed("https://example-eu.openai.azure.com", api_version="2024-06-01", auth="entra")
    assert check(seed, "env-providers.yaml") == []
    assert check(azure, "azure.yaml") == []
    wrong = governed("https://example-eu.openai.azure.com", auth="password")
    assert [p.path for p in check(wrong, "wrong.yaml")] == ["providers.targets[0].provider.auth"]
