"""A sidecar beside an agent in Kubernetes: the agent presents its projected
service-account token, the sidecar verifies it against the cluster's JWKS (a file,
as projected) and acts on the agent the pack maps it to; a bad or expired token is a
401 in the caller's API shape, and nothing is recorded for it."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anthropic
import openai
import pytest

from tests.gateway.identity.test_workload import (
    AUDIENCE,
    K8S_ISSUER,
    RESEARCHER,
    RSA_KEY,
    RSA_KEY_2,
    jwks,
    k8s_token,
)
from tests.gateway.sidecar.harness import (
    RunningSidecar,
    in_process_sidecar,
    loopback_fragment,
    provider_from_environment,
)

PACK = f"""\
pack: {{name: agents}}
providers:
  targets:
    - id: openai
      provider: {{base_url: "${{OPENAI_BASE_URL}}"}}
      secret_key_ref: {{env: OPENAI_API_KEY}}
    - id: anthropic
      provider: {{api: anthropic, base_url: "${{OPENAI_BASE_URL}}"}}
      secret_key_ref: {{env: OPENAI_API_KEY}}
      models: [mock-claude]
workloads:
  - {{subject: "{RESEARCHER}", agent: researcher, roles: [developer]}}
policies: []
"""


@pytest.fixture
async def running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningSidecar]:
    (tmp_path / "jwks.json").write_bytes(jwks((RSA_KEY, "rsa-1")))
    issuers = [
        {
            "kind": "kubernetes",
            "issuer": K8S_ISSUER,
            "audience": AUDIENCE,
            "jwks_file": str(tmp_path / "jwks.json"),
        }
    ]
    config = tmp_path / "cordon.yaml"
    config.write_text(PACK)
    local = loopback_fragment(tmp_path, f"  workload_issuers: {json.dumps(issuers)}\n")
    async with (
        provider_from_environment(monkeypatch),
        in_process_sidecar([config, local]) as sidecar,
    ):
        yield sidecar


async def test_a_projected_service_account_token_acts_as_its_mapped_agent(
    running: RunningSidecar,
) -> None:
    sdk = openai.AsyncOpenAI(base_url=f"{running.url}/v1", api_key=k8s_token())
    answer = await sdk.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hello"}]
    )
    assert answer.choices[0].message.content == "echo: hello"
    (record,) = [r for r in running.records() if r["kind"] == "decision"]
    assert record["agent"] == "researcher" and record["identity_method"] == "workload"


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda: k8s_token(exp=int(time.time()) - 600), id="expired"),
        pytest.param(lambda: k8s_token(key=RSA_KEY_2), id="another-key"),
        pytest.param(lambda: k8s_token(aud=["someone-else"]), id="another-audience"),
        pytest.param(lambda: "not.a.token", id="garbage"),
    ],
)
async def test_a_bad_workload_token_is_a_401_in_each_api_shape(
    running: RunningSidecar, token: object
) -> None:
    presented = token()  # type: ignore[operator]
    chat = openai.AsyncOpenAI(base_url=f"{running.url}/v1", api_key=presented, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as as_openai:
        await chat.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hello"}]
        )
    assert "error" in as_openai.value.response.json()
    messages = anthropic.AsyncAnthropic(base_url=running.url, api_key=presented, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as as_anthropic:
        await messages.messages.create(
            model="mock-claude", max_tokens=16, messages=[{"role": "user", "content": "hello"}]
        )
    assert as_anthropic.value.response.json()["type"] == "error"
    assert not [r for r in running.records() if r["kind"] == "decision"]  # counted, not recorded
