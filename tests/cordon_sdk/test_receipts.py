"""A governed call that goes through a Cordon gateway or sidecar leaves two records, tied:
the gateway's names the SDK's (`sdk_record`), so an auditor can tell a call the
application governed in-process from one that went around its SDK."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai

from cordon_sdk import govern
from tests.cordon_sdk.harness import asking, records, seed, worker
from tests.gateway.sidecar.harness import fragment, in_process_sidecar, loopback_fragment


def _sidecar_files(root: Path, provider_url: str) -> list[Path]:
    root.mkdir()
    pack = fragment(
        root,
        "sidecar.yaml",
        "providers:\n  targets:\n    - id: mock\n      provider:\n"
        f"        base_url: {provider_url}/v1\n"
        "policies:\n  - {name: no-ssn, type: output_filter, patterns: [ssn]}\n",
    )
    return [pack, loopback_fragment(root)]


async def test_the_sidecars_record_names_the_in_process_record_of_the_same_call(
    tmp_path: Path, provider_url: str
) -> None:
    async with in_process_sidecar(_sidecar_files(tmp_path / "sidecar", provider_url)) as side:
        app = tmp_path / "app"
        app.mkdir()
        client = govern(
            openai.AsyncOpenAI(api_key=side.caller_key, base_url=f"{side.url}/v1", max_retries=0),
            config=seed("sidecar.yaml", app),
        )
        raw = await client.chat.completions.with_raw_response.create(
            model="mock-gpt", messages=asking("hello")
        )
        bypass = await side.openai().chat.completions.create(
            model="mock-gpt", messages=asking("around the SDK")
        )
        assert bypass.choices
        at_the_sidecar = [r for r in side.records() if r["kind"] == "decision"]
    (in_process,) = records(worker(app))
    assert in_process["id"] == raw.headers["x-cordon-record-id"]
    assert [r.get("sdk_record") for r in at_the_sidecar] == [in_process["id"], None]


async def test_a_receipt_that_is_not_a_record_id_is_refused_in_the_callers_shape(
    tmp_path: Path, provider_url: str
) -> None:
    async with in_process_sidecar(_sidecar_files(tmp_path / "sidecar", provider_url)) as side:
        answer = await side.client.post(
            "/v1/chat/completions",
            json={"model": "mock-gpt", "messages": asking("hi")},
            headers={
                "authorization": f"Bearer {side.caller_key}",
                "x-cordon-sdk-record": "'; drop table records; --",
            },
        )
        refused = [r for r in side.records() if r["kind"] == "decision"]
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_request"
    assert [r["outcome"] for r in refused] == ["error"] and "sdk_record" not in refused[0]


def test_every_governed_call_carries_its_record_id_to_the_provider(
    tmp_path: Path, provider_url: str
) -> None:
    """Straight to a provider too: the header is the in-process record's id, which a
    gateway on the way would tie to its own record."""
    client = govern(
        openai.OpenAI(api_key="sk-app", base_url=f"{provider_url}/v1", max_retries=0),
        config=seed("sidecar.yaml", tmp_path),
    )
    for _ in range(2):
        client.chat.completions.create(model="mock-gpt", messages=asking("hello"))
        seen = httpx.get(f"{provider_url}/mock/stats", timeout=5).json()["auth"]
        assert seen["x-cordon-sdk-record"] == records(worker(tmp_path))[-1]["id"]
