"""The audit API on a sidecar: the regional routes over the local log, for an auditor
token only, every read itself recorded, and the export verifying with the pinned root
key of the log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cordon.log import bundle
from cordon.tokens import grant_settings, new_token
from tests.gateway.sidecar.harness import (
    RunningSidecar,
    in_process_sidecar,
    loopback_fragment,
    provider_from_environment,
)

PACK = """\
pack: {name: audited}
providers:
  targets:
    - id: openai
      provider: {base_url: "${OPENAI_BASE_URL}"}
      secret_key_ref: {env: OPENAI_API_KEY}
policies:
  - {name: pii, type: output_filter, action: redact, patterns: [email]}
"""


@pytest.fixture
async def audited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[RunningSidecar, str]]:
    auditor = new_token()
    tokens = [grant_settings("ann", auditor, ["auditor"], ["local"])]
    config = tmp_path / "cordon.yaml"
    config.write_text(PACK)
    local = loopback_fragment(tmp_path, f"  audit_tokens: {tokens}\n")
    async with (
        provider_from_environment(monkeypatch),
        in_process_sidecar([config, local]) as running,
    ):
        yield running, auditor


async def test_an_auditor_reads_searches_and_exports_a_verifiable_range(
    audited: tuple[RunningSidecar, str],
) -> None:
    running, auditor = audited
    for n in range(3):
        await running.openai().chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": f"call {n}"}]
        )
    await asyncio.sleep(1.2)  # sealed every second
    auth = {"authorization": f"Bearer {auditor}"}
    async with httpx.AsyncClient(base_url=running.url, headers=auth) as client:
        listed = (await client.get("/v1/records")).json()
        found = (await client.get("/v1/records/search", params={"kind": "decision"})).json()
        last = max(i["seq"] for i in listed["items"] if i["kind"] == "decision")
        response = await client.get("/v1/export", params={"to_seq": last})
        assert response.status_code == 200, response.text
        exported = response.json()
    decisions = [i for i in listed["items"] if i["kind"] == "decision"]
    assert len(decisions) == 3 and all(i["verified"] for i in listed["items"])
    assert decisions[0]["record"]["enforced_by"] == "sidecar"
    assert found["items"]
    root = bytes.fromhex(running.sidecar.keys.root_public_hex)
    report = bundle.verify(exported, root, None)
    assert report.ok, report.problems
    kinds = [r["kind"] for r in running.records()]
    assert "access" in kinds  # every read is itself a record


async def test_without_an_auditor_token_nothing_is_read_or_recorded(
    audited: tuple[RunningSidecar, str],
) -> None:
    running, _ = audited
    caller = {"authorization": f"Bearer {running.caller_key}"}
    async with httpx.AsyncClient(base_url=running.url) as client:
        anonymous = await client.get("/v1/records")
        as_the_app = await client.get("/v1/records", headers=caller)
        forged = await client.get("/v1/export?to_seq=1", headers={"authorization": "Bearer x"})
    assert {anonymous.status_code, as_the_app.status_code, forged.status_code} <= {401, 403}
    assert not [r for r in running.records() if r["kind"] == "access"]
    # Nothing was built or written for them: no FastAPI, no enrolment, no index.
    assert running.app.audit._app is None
    assert not (running.sidecar.config.state_dir / "audit-index.sqlite3").exists()


def test_the_sidecar_sends_every_audit_route_to_the_audit_app() -> None:
    """The paths are listed apart from the routes (reading those would load FastAPI)."""
    from gateway.ledger.audit_api import router
    from gateway.sidecar.audit import serves

    paths = [route.path.replace("{seq}", "7") for route in router.routes]  # type: ignore[attr-defined]
    assert paths and all(serves(path) for path in paths)
    assert not serves("/v1/chat/completions") and not serves("/v1/recordsx")
