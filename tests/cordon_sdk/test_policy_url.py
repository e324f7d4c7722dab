"""An application can follow the policy of the sidecar or gateway beside it: the SDK
polls the signed active pack (`GET /v1/cordon/pack`, for `policy` tokens only) and
enforces it only if its owners signed it; a change there reaches the running
application without a restart."""

from __future__ import annotations

import asyncio
import functools
import time
from pathlib import Path
from typing import Any, TypeVar

import openai
import pytest

from cordon.errors import ConfigError
from cordon.tokens import grant_settings, new_token
from cordon_sdk import govern
from tests.cordon_sdk.harness import EMAIL, asking, records, say
from tests.gateway.sidecar.harness import RunningSidecar, fragment, in_process_sidecar

Client = TypeVar("Client")
SSN = "123-45-6789"
POLICY, ADMIN = new_token(), new_token()


def _sidecar(root: Path) -> list[Path]:
    root.mkdir()
    grants = [grant_settings("app", POLICY, ["policy"], ["*"])]
    grants.append(grant_settings("ops", ADMIN, ["admin"], ["*"]))
    pack = fragment(
        root,
        "team.yaml",
        "policies:\n  - {name: no-ssn, type: output_filter, patterns: [ssn]}\n",
    )
    local = fragment(
        root,
        "local.yaml",
        "gateway:\n  config_reload: true\n  config_watch_interval: 100ms\n"
        f"  admin_tokens: {grants}\n",
    )
    return [pack, local]


async def _govern(client: Client, **options: Any) -> Client:
    """`govern` off this loop: it waits for its first pack from the sidecar this loop
    serves (an application and its sidecar are two processes)."""
    return await asyncio.to_thread(functools.partial(govern, client, **options))


async def _follow(side: RunningSidecar, app: Path, provider_url: str) -> openai.AsyncOpenAI:
    return await _govern(
        openai.AsyncOpenAI(api_key="sk-app", base_url=f"{provider_url}/v1", max_retries=0),
        policy=side.url,
        pack_trust=[side.sidecar.keys.policy_public_hex],
        pack_name=side.sidecar.runtime.packs.pack_name,
        policy_interval="100ms",
        state_dir=app,
    )


async def test_the_sidecars_pack_is_enforced_in_process_and_its_changes_follow(
    tmp_path: Path, provider_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORDON_POLICY_TOKEN", POLICY)
    files = _sidecar(tmp_path / "sidecar")
    async with in_process_sidecar(files) as side:
        client = await _follow(side, tmp_path / "app", provider_url)

        async def answer(text: str) -> str:
            done = await client.chat.completions.create(model="mock-gpt", messages=asking(text))
            return str(done.choices[0].message.content)

        assert await answer(say(f"ssn {SSN}")) == "ssn [SSN]"
        assert await answer(say(f"mail {EMAIL}")) == f"mail {EMAIL}"
        files[0].write_text(
            files[0].read_text() + "  - {name: no-mail, type: output_filter, patterns: [email]}\n"
        )
        # The sidecar re-reads its file, the SDK its pack: 0.1 s each. Asked by the clock,
        # not a count of calls: how many fit in that time is the machine's to say.
        deadline = time.monotonic() + 15
        while await answer(say(f"mail {EMAIL}")) != "mail [EMAIL]":
            if time.monotonic() > deadline:
                pytest.fail("the sidecar's new rule did not reach the application")
            await asyncio.sleep(0.05)
    decisions = records(tmp_path / "app" / "sdk" / "worker-0")
    assert decisions[-1]["pack"]["revision"] > decisions[0]["pack"]["revision"]
    assert decisions[-1]["pack"]["origin"]["url"] == side.url


async def test_the_pack_endpoint_answers_the_policy_role_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with in_process_sidecar(_sidecar(tmp_path / "sidecar")) as side:

        async def get(path: str, token: str | None) -> int:
            headers = {"authorization": f"Bearer {token}"} if token else {}
            return (await side.client.get(path, headers=headers)).status_code

        assert await get("/v1/cordon/pack", POLICY) == 200
        assert await get("/v1/cordon/pack", None) == 401
        assert await get("/v1/cordon/pack", "cordon_not-a-token") == 401
        assert await get("/v1/cordon/pack", ADMIN) == 403  # the admin role is not this one
        assert await get("/v1/cordon/policy", POLICY) == 403  # nor the other way round
        assert await get("/v1/cordon/policy", ADMIN) == 200
        served = await side.client.get(
            "/v1/cordon/pack", headers={"authorization": f"Bearer {POLICY}"}
        )
        again = await side.client.get(
            "/v1/cordon/pack",
            headers={"authorization": f"Bearer {POLICY}", "if-none-match": served.headers["etag"]},
        )
        assert again.status_code == 304 and again.content == b""


async def test_a_pack_its_owners_did_not_sign_is_never_enforced(
    tmp_path: Path, provider_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORDON_POLICY_TOKEN", POLICY)
    async with in_process_sidecar(_sidecar(tmp_path / "sidecar")) as side:
        with pytest.raises(ConfigError, match="signed by a trusted owner"):
            await _govern(
                openai.OpenAI(api_key="sk-app", base_url=f"{provider_url}/v1"),
                policy=side.url,
                pack_trust=["ab" * 32],  # not the sidecar's key
                pack_name=side.sidecar.runtime.packs.pack_name,
                state_dir=tmp_path / "app",
            )
        with pytest.raises(ConfigError, match="pack_trust"):
            govern(openai.OpenAI(api_key="k"), policy=side.url, state_dir=tmp_path / "app")
    monkeypatch.delenv("CORDON_POLICY_TOKEN")
    with pytest.raises(ConfigError, match="CORDON_POLICY_TOKEN"):
        govern(
            openai.OpenAI(api_key="k"),
            policy="http://127.0.0.1:1",
            pack_trust=["ab" * 32],
            state_dir=tmp_path / "other",
        )
