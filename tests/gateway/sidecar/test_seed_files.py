"""The users' files, byte for byte, each starting a sidecar that enforces it, through
the real SDKs, with nothing else running (no NATS anywhere: local mode)."""

from __future__ import annotations

import base64
from pathlib import Path

import openai
import pytest

from cordon.errors import ConfigError
from tests.gateway.sidecar.harness import (
    copy_seed,
    fragment,
    in_process_sidecar,
    proxy_on_loopback,
    real_provider_names,
)

EMAIL = "jane.doe@example.com"


def say(text: str) -> str:
    """A prompt the mock answers with `text` (cordon_dev.mock_provider)."""
    return "say-base64: " + base64.b64encode(text.encode()).decode()


async def test_the_sidecar_file_redacts_an_email_in_the_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = copy_seed("sidecar.yaml", tmp_path)
    async with (
        real_provider_names(tmp_path, monkeypatch) as providers,
        in_process_sidecar([config, proxy_on_loopback(tmp_path)]) as running,
    ):
        sdk = running.openai()
        messages: list[dict[str, str]] = [{"role": "user", "content": f"mail {EMAIL}"}]
        answer = await sdk.chat.completions.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
        assert answer.choices[0].message.content == "echo: mail [EMAIL]"
        stream = await sdk.chat.completions.create(
            model="gpt-4o",
            messages=messages,  # type: ignore[arg-type]
            stream=True,
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "echo: mail [EMAIL]"
        records = [r for r in running.records() if r["kind"] == "decision"]
    assert providers.proxy.tunnels and set(providers.proxy.tunnels) == {"api.openai.com:443"}
    assert [r["outcome"] for r in records] == ["redact", "redact"]
    assert all(r["enforced_by"] == "sidecar" for r in records)
    assert records[0]["pack"]["name"] == "sidecar"
    assert records[0]["pack"]["origin"]["digest"].startswith("sha256:")
    assert records[0]["rules"] == ["pii-redaction"]


async def test_the_reverse_proxy_file_blocks_a_self_harm_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = copy_seed("reverse-proxy.yaml", tmp_path)
    store = tmp_path / "secrets"
    store.mkdir()
    (store / "OPENAI_API_KEY").write_text("sk-from-the-store")
    (store / "ANTHROPIC_API_KEY").write_text("sk-ant-from-the-store")
    local = fragment(
        tmp_path,
        "local.yaml",
        f"gateway:\n  secret_store_dir: {store}\n  allow_loopback_upstreams: true\n",
    )
    async with real_provider_names(tmp_path, monkeypatch) as providers:
        monkeypatch.delenv("OPENAI_API_KEY")
        async with in_process_sidecar([config, local]) as running:
            sdk = running.openai()
            harmless: list[dict[str, str]] = [{"role": "user", "content": "hello"}]
            answer = await sdk.chat.completions.create(model="gpt-4o", messages=harmless)  # type: ignore[arg-type]
            assert answer.choices[0].message.content == "echo: hello"
            asked: list[dict[str, str]] = [{"role": "user", "content": say("I want to die")}]
            with pytest.raises(openai.APIStatusError) as refused:
                await sdk.chat.completions.create(model="gpt-4o", messages=asked)  # type: ignore[arg-type]
            records = [r for r in running.records() if r["kind"] == "decision"]
    assert refused.value.status_code in (400, 403, 451)
    assert "want to die" not in refused.value.response.text
    assert providers.mock.seen_auth["authorization"] == "Bearer sk-from-the-store"
    assert [r["outcome"] for r in records] == ["allow", "block"]
    assert records[1]["rules"] == ["global-safety"]


async def test_the_environment_based_file_routes_through_openai_base_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cordon_dev.inprocess import serve_in_loop
    from cordon_dev.mock_provider import MockProvider

    config = copy_seed("env-providers.yaml", tmp_path)
    local = fragment(
        tmp_path,
        "local.yaml",
        "gateway:\n  allow_loopback_upstreams: true\n  allowed_upstreams: ['http://127.0.0.1:*', 'https://*']\n",
    )
    mock = MockProvider()
    async with serve_in_loop(mock) as url:
        monkeypatch.setenv("OPENAI_BASE_URL", f"{url}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
        monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://example-resource.openai.azure.com")
        monkeypatch.setenv("AZURE_OPENAI_KEY", "azure-key")
        async with in_process_sidecar([config, local]) as running:
            sdk = running.openai()
            messages: list[dict[str, str]] = [{"role": "user", "content": "routed"}]
            answer = await sdk.chat.completions.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
            records = [r for r in running.records() if r["kind"] == "decision"]
    assert answer.choices[0].message.content == "echo: routed"
    assert records[-1]["route"] == "openai"
    assert records[-1]["pack"]["name"] == "architecture-patterns-providers-3"


def test_an_unsupported_key_is_refused_with_its_name_and_line(tmp_path: Path) -> None:
    config = copy_seed("sidecar.yaml", tmp_path)
    typo = fragment(tmp_path, "typo.yaml", "gateway:\n  listen_port: 41003\n  mdoe: local\n")
    with pytest.raises(ConfigError) as refused:
        from gateway.sidecar.config import SidecarConfig

        SidecarConfig.load([config, typo])
    assert f"{typo}:3: gateway.mdoe: unknown key 'mdoe'" in str(refused.value)


def test_a_pack_the_sidecar_cannot_enforce_stops_its_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never the built-in default in its place: a provider the egress policy refuses."""
    from gateway.sidecar.config import SidecarConfig
    from gateway.sidecar.server import Sidecar

    config = copy_seed("env-providers.yaml", tmp_path)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("AZURE_OPENAI_KEY", "azure-key")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://example-resource.openai.azure.com")
    with pytest.raises(ConfigError) as refused:
        Sidecar(SidecarConfig.load([config])).activate_initial()
    assert "'http://127.0.0.1:9/v1' is a loopback address" in str(refused.value)


async def test_the_git_synced_fragment_turns_on_polling_of_the_configured_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sidecar.yaml and git-synced.yaml as written, merged; the repository named on the
    command line (`--config-source`), and a poll interval short enough for a test."""
    from dulwich import porcelain

    from cordon_dev.inprocess import wait_for

    config = copy_seed("sidecar.yaml", tmp_path)
    synced = copy_seed("git-synced.yaml", tmp_path)
    quick = fragment(
        tmp_path,
        "quick.yaml",
        "gateway:\n  config_poll_interval: 0.2s\n  allow_loopback_upstreams: true\n",
    )
    repo_dir = tmp_path / "policy-repo"
    repo = porcelain.init(str(repo_dir))
    repo.refs.set_symbolic_ref(b"HEAD", b"refs/heads/main")
    phone_only = config.read_text().replace("      - email\n", "")
    (repo_dir / "sidecar.yaml").write_text(phone_only)
    porcelain.add(repo, [str(repo_dir / "sidecar.yaml")])
    who = b"t <t@example.com>"
    commit = porcelain.commit(repo, b"no email rule", author=who, committer=who).decode()
    async with (
        real_provider_names(tmp_path, monkeypatch),
        in_process_sidecar([config, synced, quick], str(repo_dir)) as running,
    ):
        packs = running.sidecar.runtime.packs
        await wait_for(lambda: (packs.active.origin or {}).get("commit") == commit, 5)
        sdk = running.openai()
        messages: list[dict[str, str]] = [{"role": "user", "content": f"mail {EMAIL}"}]
        answer = await sdk.chat.completions.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == f"echo: mail {EMAIL}"  # the commit's pack
    assert running.sidecar.config.reload  # git-synced.yaml's config_reload: true
