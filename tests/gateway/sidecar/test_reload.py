"""Policy without restarts: editing the file, sending SIGHUP and pushing a commit to a
git repository each change what is enforced within one interval, with no failed
in-flight call (it finishes under the pack it started with); a broken file or commit
leaves the old policy active and says so."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cordon_dev.inprocess import wait_for
from cordon_dev.mock_provider import MockProvider
from tests.gateway.sidecar.harness import (
    LOOPBACK,
    RunningSidecar,
    in_process_sidecar,
    loopback_fragment,
    provider_from_environment,
)

EMAIL = "jane.doe@example.com"
PACK = """\
pack: {{name: team}}
providers:
  targets:
    - id: openai
      provider:
        base_url: "${{OPENAI_BASE_URL}}"
      secret_key_ref:
        env: OPENAI_API_KEY
policies:
  - name: pii
    type: output_filter
    action: redact
    patterns: [{patterns}]
"""


def pack(patterns: str) -> str:
    return PACK.format(patterns=patterns)


@pytest.fixture
async def provider(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MockProvider]:
    async with provider_from_environment(monkeypatch) as mock:
        yield mock


local = loopback_fragment


async def answer(running: RunningSidecar) -> str:
    said = await running.openai().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": f"mail {EMAIL}"}]
    )
    return said.choices[0].message.content or ""


def active(running: RunningSidecar) -> dict[str, Any]:
    return running.sidecar.runtime.packs.status()


async def test_an_edited_file_is_enforced_and_a_call_in_flight_finishes_under_its_pack(
    tmp_path: Path, provider: MockProvider
) -> None:
    config = tmp_path / "cordon.yaml"
    config.write_text(pack("email"))
    reload = local(tmp_path, "  config_reload: true\n  config_watch_interval: 0.1s\n")
    async with in_process_sidecar([config, reload]) as running:
        assert await answer(running) == "echo: mail [EMAIL]"
        provider.mode = "held-stream"
        stream = await running.openai().chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": f"one two three {EMAIL}"}],
            stream=True,
        )
        chunks = stream.__aiter__()
        await asyncio.wait_for(chunks.__anext__(), 10)  # the stream has begun
        first = active(running)["active_revision"]
        config.write_text(pack("phone"))
        await wait_for(lambda: active(running)["active_revision"] > first, 5)
        provider.released.set()
        rest = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
        provider.mode = "ok"
        assert "[EMAIL]" in rest  # the call in flight kept the pack it started with
        assert await answer(running) == f"echo: mail {EMAIL}"  # the edited pack now
        decisions = [r for r in running.records() if r["kind"] == "decision"]
    assert [d["pack"]["revision"] for d in decisions] == [first, first, first + 1]
    assert decisions[-1]["pack"]["origin"]["digest"] != decisions[0]["pack"]["origin"]["digest"]


async def test_sighup_reloads_at_once(tmp_path: Path, provider: MockProvider) -> None:
    config = tmp_path / "cordon.yaml"
    config.write_text(pack("email"))
    # A minute between looks: only the signal can make it re-read within the test.
    reload = local(tmp_path, "  config_reload: true\n  config_watch_interval: 60s\n")
    async with in_process_sidecar([config, reload]) as running:
        first = active(running)["active_revision"]
        config.write_text(pack("phone"))
        os.kill(os.getpid(), signal.SIGHUP)
        await wait_for(lambda: active(running)["active_revision"] > first, 5)
        assert await answer(running) == f"echo: mail {EMAIL}"


async def test_a_broken_file_keeps_the_old_policy_and_says_why(
    tmp_path: Path, provider: MockProvider
) -> None:
    config = tmp_path / "cordon.yaml"
    config.write_text(pack("email"))
    reload = local(tmp_path, "  config_reload: true\n  config_watch_interval: 0.1s\n")
    async with in_process_sidecar([config, reload]) as running:
        first = active(running)["active_revision"]
        config.write_text(pack("email, no_such_detector"))
        await wait_for(lambda: active(running)["last_rejection"] is not None, 5)
        assert "no_such_detector" in active(running)["last_rejection"]
        config.write_text("policies: [unclosed\n")
        await wait_for(lambda: "not valid YAML" in (active(running)["last_rejection"] or ""), 5)
        assert active(running)["active_revision"] == first
        assert await answer(running) == "echo: mail [EMAIL]"


async def test_a_pushed_commit_is_enforced_and_a_broken_one_is_not(
    tmp_path: Path, provider: MockProvider
) -> None:
    from dulwich import porcelain

    repo_dir = tmp_path / "policy-repo"
    repo = porcelain.init(str(repo_dir))
    repo.refs.set_symbolic_ref(b"HEAD", b"refs/heads/main")  # commits land on main
    (repo_dir / "cordon.yaml").write_text(pack("email"))

    def commit(text: str, message: str) -> str:
        (repo_dir / "cordon.yaml").write_text(text)
        porcelain.add(repo, [str(repo_dir / "cordon.yaml")])
        sha = porcelain.commit(
            repo, message.encode(), author=b"t <t@example.com>", committer=b"t <t@example.com>"
        )
        return sha.decode() if isinstance(sha, bytes) else str(sha)

    first_commit = commit(pack("email"), "email")
    config = tmp_path / "cordon.yaml"
    config.write_text(pack("email"))
    polling = local(
        tmp_path,
        "  config_poll_interval: 0.2s\n"
        f"  config_source: {{url: {repo_dir}, ref: main, path: cordon.yaml}}\n",
    )
    async with in_process_sidecar([config, polling]) as running:
        await wait_for(lambda: (active(running)["origin"] or {}).get("commit") == first_commit, 5)
        assert await answer(running) == "echo: mail [EMAIL]"
        second = commit(pack("phone"), "phone only")
        await wait_for(lambda: (active(running)["origin"] or {}).get("commit") == second, 5)
        assert await answer(running) == f"echo: mail {EMAIL}"
        last = [r for r in running.records() if r["kind"] == "decision"][-1]
        assert last["pack"]["origin"]["commit"] == second  # the record names the commit
        assert last["pack"]["origin"]["ref"] == "main"
        revision = active(running)["active_revision"]
        commit("policies: [unclosed\n", "broken")
        await wait_for(lambda: active(running)["last_rejection"] is not None, 5)
        assert active(running)["active_revision"] == revision
        assert await answer(running) == f"echo: mail {EMAIL}"


async def test_an_unreachable_repository_keeps_the_file_pack_and_says_so(
    tmp_path: Path, provider: MockProvider
) -> None:
    from cordon.tokens import grant_settings, new_token

    admin = new_token()
    config = tmp_path / "cordon.yaml"
    config.write_text(pack("email"))
    polling = local(
        tmp_path,
        "  config_poll_interval: 0.1s\n"
        f"  config_source: {tmp_path / 'no-such-repo'}\n"
        f"  admin_tokens: {[grant_settings('ops', admin, ['admin'], ['*'])]}\n",
    )
    async with in_process_sidecar([config, polling]) as running:
        source = running.sidecar._sources[0]
        await wait_for(lambda: getattr(source, "last_error", None) is not None, 5)
        status = await running.client.get(
            "/v1/cordon/policy", headers={"authorization": f"Bearer {admin}"}
        )
        assert await answer(running) == "echo: mail [EMAIL]"  # the file's pack, still
        exported = (await running.client.get("/metrics")).text
    assert "cordon_sidecar_policy_source_failing 1.0" in exported
    body = status.json()
    assert body["source"]["git"]["ref"] == "main"
    assert body["source"]["readers"][0]["last_error"]


async def test_with_pack_trust_only_an_owners_signed_commit_is_enforced(
    tmp_path: Path, provider: MockProvider
) -> None:
    """`pack_trust`: the repository's file must be a pack its owner signed (`cordon
    policy sign`); an unsigned or foreign-signed commit is refused, the signed one kept."""
    import yaml
    from dulwich import porcelain

    from cordon.log.keys import SigningKey, public_bytes
    from cordon_dev.inprocess import signed_pack

    owner, stranger = SigningKey.generate(), SigningKey.generate()
    repo_dir = tmp_path / "policy-repo"
    repo = porcelain.init(str(repo_dir))
    repo.refs.set_symbolic_ref(b"HEAD", b"refs/heads/main")

    def commit(data: bytes) -> str:
        (repo_dir / "team.json").write_bytes(data)
        porcelain.add(repo, [str(repo_dir / "team.json")])
        who = b"t <t@example.com>"
        return porcelain.commit(repo, b"pack", author=who, committer=who).decode()

    def signed(patterns: str, revision: int, key: SigningKey = owner) -> bytes:
        return signed_pack(yaml.safe_load(pack(patterns)), key, revision, regions=["*"])

    commit(signed("email", 1))
    config = tmp_path / "sidecar.yaml"
    trusted = public_bytes(owner.public_key).hex()
    config.write_text(
        LOOPBACK + f"  pack_trust: [{trusted}]\n  config_poll_interval: 0.2s\n"
        f"  config_source: {{url: {repo_dir}, ref: main, path: team.json}}\n"
    )
    async with in_process_sidecar([config]) as running:
        assert await answer(running) == "echo: mail [EMAIL]"  # enforced before serving
        commit(pack("phone").encode())  # not signed
        await wait_for(lambda: active(running)["last_rejection"] is not None, 5)
        commit(signed("phone", 2, stranger))
        await wait_for(lambda: "2" in str(active(running)["last_rejected_pack"]), 5)
        assert active(running)["active_revision"] == 1
        third = commit(signed("phone", 3))
        await wait_for(lambda: (active(running)["origin"] or {}).get("commit") == third, 5)
        assert await answer(running) == f"echo: mail {EMAIL}"


def test_with_pack_trust_and_no_signed_pack_the_sidecar_does_not_start(tmp_path: Path) -> None:
    from cordon.errors import ConfigError
    from gateway.sidecar.config import SidecarConfig

    config = tmp_path / "sidecar.yaml"
    config.write_text(f"gateway:\n  pack_trust: [{'ab' * 32}]\n" + pack("email"))
    sidecar_config = SidecarConfig.load([config])

    async def start() -> None:
        from gateway.sidecar.server import Sidecar

        sidecar = Sidecar(sidecar_config)
        try:
            await sidecar.start()
        finally:
            await sidecar.stop()

    with pytest.raises(ConfigError, match="only a pack signed by a trusted owner"):
        asyncio.run(start())
