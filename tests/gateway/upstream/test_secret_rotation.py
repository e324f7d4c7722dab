"""Provider keys from a Kubernetes Secret volume (`secret_key_ref: {store: NAME}` over
the replica's `secret_store_dir`): read as the volume lays them out, behind its
symlinks, and a rotated key is used by the next call, with no restart and no new pack."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cordon_dev.inprocess import InProcessGateway, in_process_gateway, serve_in_loop
from cordon_dev.mock_provider import MockProvider

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]


def mount(store: Path, version: str, key: str) -> None:
    """What the kubelet does: the keys in a new timestamped folder, then `..data`
    swapped to it in one rename; each key is a symlink through `..data`."""
    folder = store / f"..{version}"
    folder.mkdir(parents=True)
    (folder / "PROVIDER_KEY").write_text(key + "\n")
    swap = store / "..data_tmp"
    swap.symlink_to(folder.name)
    os.replace(swap, store / "..data")
    if not (store / "PROVIDER_KEY").is_symlink():
        (store / "PROVIDER_KEY").symlink_to("..data/PROVIDER_KEY")


@pytest.fixture
async def provider() -> AsyncIterator[tuple[MockProvider, str]]:
    mock = MockProvider()
    async with serve_in_loop(mock) as url:
        yield mock, url


@pytest.fixture
async def gw(tmp_path: Path, provider: tuple[MockProvider, str]) -> AsyncIterator[InProcessGateway]:
    store = tmp_path / "secrets"
    mount(store, "2026_12_06_10_00_00.1", "sk-first")
    async with in_process_gateway(tmp_path, settings={"secret_store_dir": str(store)}) as gateway:
        target = {
            "id": "keyed",
            "provider": {"api": "openai", "base_url": f"{provider[1]}/v1"},
            "secret_key_ref": {"store": "PROVIDER_KEY"},
        }
        document = {"pack": {"name": "default", "version": "1"}, "providers": {"targets": [target]}}
        await gateway.activate(document, 2)
        yield gateway


async def ask(gateway: InProcessGateway) -> int:
    call = {"model": "gpt-4o", "messages": [{"role": "user", "content": "key?"}]}
    return (
        await gateway.client.post("/v1/chat/completions", json=call, headers=gateway.auth)
    ).status_code


async def test_a_rotated_key_file_is_used_by_the_next_call(
    gw: InProcessGateway, provider: tuple[MockProvider, str], tmp_path: Path
) -> None:
    mock, _ = provider
    assert await ask(gw) == 200
    assert mock.seen_auth["authorization"] == "Bearer sk-first"
    mount(tmp_path / "secrets", "2026_12_06_11_00_00.2", "sk-second")
    assert await ask(gw) == 200
    assert mock.seen_auth["authorization"] == "Bearer sk-second"
    assert gw.runtime.packs.active.revision == 2  # no new pack, no restart
    assert "sk-" not in repr(gw.runtime.packs.current.router.targets)


def test_secret_key_ref_may_sit_beside_provider_or_inside_it(tmp_path: Path) -> None:
    """The seeds' printed text allows both nestings: either is the target's key, the
    policy owner's lint takes both, and both at once is refused by name."""
    from cordon.errors import PackError
    from cordon.packs.lint import check
    from gateway.upstream.providers import parse_target

    (tmp_path / "OPENAI_API_KEY").write_text("sk-store\n")
    beside = {
        "id": "openai",
        "provider": {"base_url": "https://api.openai.com/v1"},
        "secret_key_ref": {"store": "OPENAI_API_KEY"},
    }
    inside = {
        "id": "openai",
        "provider": {
            "base_url": "https://api.openai.com/v1",
            "secret_key_ref": {"store": "OPENAI_API_KEY"},
        },
    }
    for raw in (beside, inside):
        assert parse_target(raw, {}, tmp_path).api_key == "sk-store"
        document = {"pack": {"name": "default"}, "providers": {"targets": [raw]}}
        assert check(document, "pack.yaml") == []
    both = {**beside, "provider": inside["provider"]}
    with pytest.raises(PackError, match="secret_key_ref is given twice"):
        parse_target(both, {}, tmp_path)
