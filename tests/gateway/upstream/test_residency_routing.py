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
