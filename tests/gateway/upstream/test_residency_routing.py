"""Routing that crosses providers stays inside the residency a pack declares: every
target carries its region, a fallback outside the declared regions (or a target with
none) refuses the pack at activation — never a call — and each record names the target
that answered and its region."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cordon.packs.lint import check
from cordon_dev.inprocess import (
    InProcessGateway,
    in_process_gateway,
    serve_in_loop,
    signed_pack,
    wait_for,
)
from cordon_dev.mock_provider import MockProvider
from tests.gateway.upstream.translated import bedrock_target

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]


@pytest.fixture
async def eu_mock() -> AsyncIterator[str]:
    async with serve_in_loop(MockProvider()) as url:
        yield url


def pack(residency: list[str] | None, *targets: dict[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = {
        "pack": {"name": "default", "version": "1"},
        "providers": {"targets": list(targets)},
    }
    if residency is not None:
        document["residency"] = {"regions": residency}
    return document


def azure(url: str, region: str | None, target_id: str = "azure-eu") -> dict[str, Any]:
    target: dict[str, Any] = {
        "id": target_id,
        "provider": {"api": "azure-openai", "base_url": f"{url}/openai/deployments"},
        "secret_key_ref": {"env": "AZURE_OPENAI_KEY"},
    }
    if region is not None:
        target["region"] = region
    return target


def openai_target(url: str, region: str | None) -> dict[str, Any]:
    target: dict[str, Any] = {"id": "openai-us", "provider": {"base_url": f"{url}/v1"}}
    return target | ({"region": region} if region else {})


async def refused(gateway: InProcessGateway, document: dict[str, Any], revision: int) -> str:
    """Offer `document`; the reason the replica gave for refusing it."""
    gateway.backplane.offer(signed_pack(document, gateway.owner, revision))
    await wait_for(lambda: gateway.runtime.packs.last_rejection is not None)
    rejection = gateway.runtime.packs.last_rejection
    assert rejection is not None and gateway.runtime.packs.active.revision != revision
    return rejection.reason


@pytest.fixture
async def gw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[InProcessGateway]:
    monkeypatch.setenv("AZURE_OPENAI_KEY", "azure-key")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never a metadata probe
    keys = '{"access_key_id": "AKIDEXAMPLE", "secret_access_key": "s"}'
    monkeypatch.setenv("CORDON_PROVIDER_BEDROCK", keys)  # read when the gateway starts
    async with in_process_gateway(tmp_path) as gateway:
        yield gateway


async def test_records_name_the_target_and_its_region(gw: InProcessGateway, eu_mock: str) -> None:
    await gw.activate(pack(["eu-*", "westeurope"], azure(eu_mock, "westeurope")), 2)
    call = {"model": "gpt-4o", "messages": [{"role": "user", "content": "where"}]}
    answer = await gw.client.post("/v1/chat/completions", json=call, headers=gw.auth)
    assert answer.status_code == 200, answer.text
    (record,) = [r for r in gw.records() if r["kind"] == "decision"]
    assert (record["route"], record["route_region"]) == ("azure-eu", "westeurope")


async def test_a_fallback_across_the_residency_boundary_refuses_the_pack(
    gw: InProcessGateway, eu_mock: str
) -> None:
    await gw.activate(pack(["eu-*", "westeurope"], azure(eu_mock, "westeurope")), 2)
    us_fallback = pack(
        ["eu-*", "westeurope"], azure(eu_mock, "westeurope"), openai_target(eu_mock, "us-east-1")
    )
    reason = await refused(gw, us_fallback, 3)
    assert "openai-us is in us-east-1, outside the pack's residency" in reason
    no_region = pack(["eu-*"], azure(eu_mock, None))
    gw.runtime.packs.last_rejection = None
    assert "names no region" in await refused(gw, no_region, 4)
    assert gw.runtime.packs.active.revision == 2  # the EU pack is still enforced


async def test_a_pack_without_residency_routes_anywhere(gw: InProcessGateway, eu_mock: str) -> None:
    await gw.activate(pack(None, openai_target(eu_mock, None), azure(eu_mock, "eastus")), 2)
    assert [t.id for t in gw.runtime.packs.current.router.targets] == ["openai-us", "azure-eu"]


def test_lint_takes_residency_and_regions() -> None:
    document = pack(["eu-*"], azure("https://x.openai.azure.com", "eu-central"))
    assert check(document, "pack.yaml") == []


async def _routes(gw: InProcessGateway, calls: int) -> list[str]:
    call = {"model": "gpt-4o", "messages": [{"role": "user", "content": "which"}]}
    for _ in range(calls):
        answer = await gw.client.post("/v1/chat/completions", json=call, headers=gw.auth)
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"] == "echo: which"
    return [r["route"] for r in gw.records() if r["kind"] == "decision"]


async def test_an_azure_deployment_falls_back_to_bedrock_in_the_same_region(
    gw: InProcessGateway,
) -> None:
    failing, healthy = MockProvider(behaviour="500"), MockProvider()
    async with serve_in_loop(failing) as down, serve_in_loop(healthy) as up:
        document = pack(["eu-*", "westeurope"], azure(down, "westeurope"), bedrock_target(up))
        await gw.activate(document, 2)
        assert await _routes(gw, 1) == ["bedrock-eu"]
    (record,) = [r for r in gw.records() if r["kind"] == "decision"]
    assert record["attempts"] == ["azure-eu:500"] and record["route_region"] == "eu-central-1"
    assert healthy.stats["bedrock converse"] == 1


async def test_round_robin_balances_across_dialects(gw: InProcessGateway, eu_mock: str) -> None:
    document = pack(["eu-*", "westeurope"], azure(eu_mock, "westeurope"), bedrock_target(eu_mock))
    document["providers"]["balance"] = "round-robin"
    await gw.activate(document, 2)
    routes = await _routes(gw, 4)
    assert sorted(routes) == ["azure-eu", "azure-eu", "bedrock-eu", "bedrock-eu"]
    assert routes[0] != routes[1]  # each call starts one further along


def test_lint_takes_a_balance_and_refuses_an_unknown_one() -> None:
    document = pack(None, azure("https://x.openai.azure.com", None))
    document["providers"]["balance"] = "round-robin"
    assert check(document, "pack.yaml") == []
    document["providers"]["balance"] = "random"
    assert check(document, "pack.yaml") != []


def test_round_robin_turns_per_model_and_keeps_the_callers_api_first() -> None:
    """Two models interleaved each alternate; an Anthropic caller's own target comes
    first on every call; Azure is a fallback for Anthropic's callers only when its
    `models` lists the model."""
    from gateway.upstream.providers import parse_target
    from gateway.upstream.routing import Breakers, Router

    def target(raw: dict[str, Any]) -> Any:
        return parse_target(raw, {"K": "k"}, None)

    a1 = target({"id": "a1", "provider": {"base_url": "https://a1"}})
    a2 = target({"id": "a2", "provider": {"base_url": "https://a2"}})
    claude = target({"id": "claude", "provider": {"api": "anthropic", "base_url": "https://c"}})
    azure_any = target({"id": "az", "provider": {"api": "azure-openai", "base_url": "https://z"}})
    router = Router((a1, a2, claude, azure_any), Breakers(), "round-robin")
    firsts = [router.serving("openai", m)[0].id for m in ("x", "y", "x", "y", "x", "y")]
    assert firsts == ["a1", "a1", "a2", "a2", "az", "az"]  # Azure is an OpenAI target too
    assert [t.id for t in router.serving("anthropic", "claude-3")] == ["claude"]
    listed = target(
        {"id": "az2", "provider": {"api": "azure-openai", "base_url": "https://z"}}
        | {"models": ["claude-3"]}
    )
    router = Router((claude, listed), Breakers(), "round-robin")
    assert [[t.id for t in router.serving("anthropic", "claude-3")] for _ in range(2)] == [
        ["claude", "az2"],
        ["claude", "az2"],
    ]
    router = Router((claude, azure_any), Breakers())
    assert [t.id for t in router.serving("anthropic", "az/gpt-4o")] == ["az"]  # named
