"""Packs published centrally are enforced in every region, without restarts."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import httpx

from cordon.log.keys import SigningKey
from cordon.nats import subjects
from cordon.packs import signing
from tests.helpers import eventually, nats_as, policy_status, publish_pack, sdk_chat

PACK = """\
pack:
  name: default
  version: 1.0.{patch}
  enabled: true
policies:
  - name: pii-redaction
    type: output_filter
    action: redact
    patterns: [email, phone, ssn]
"""


def _publish(endpoints: dict[str, Any], path: Path) -> subprocess.CompletedProcess[str]:
    return publish_pack(endpoints, path, check=False)


def _reply(endpoints: dict[str, Any], region: str, content: str) -> str:
    answer = sdk_chat(endpoints["gateways"][region], endpoints["api_key"], content).parse()
    return answer.choices[0].message.content or ""


def _status(endpoints: dict[str, Any], region: str) -> dict[str, Any]:
    return policy_status(endpoints["gateways"][region], endpoints["tokens"]["admin"])


def test_published_pack_is_enforced_in_every_region(
    endpoints: dict[str, Any], tmp_path: Path
) -> None:
    prompt = "write to alice@example.com or call +44 20 7946 0958"
    pack = tmp_path / "pack.yaml"
    pack.write_text(PACK.format(patch=1))
    result = _publish(endpoints, pack)
    assert result.returncode == 0, result.stderr
    assert "published default revision" in result.stdout
    revision = int(result.stdout.split("revision ")[1].split()[0])

    for region in ("eu-west", "us-east"):
        reply = eventually(
            lambda region=region: (r := _reply(endpoints, region, prompt)) and "[EMAIL]" in r and r,
            timeout=5.0,
            interval=0.1,
        )
        assert "alice@example.com" not in reply and "[PHONE]" in reply
        status = _status(endpoints, region)
        assert status["active_revision"] == revision and status["pack"] == "default"
        metrics = httpx.get(endpoints["gateways"][region] + "/metrics").text
        assert f"cordon_gateway_pack_revision {float(revision)}" in metrics
        (age_line,) = [
            line
            for line in metrics.splitlines()
            if line.startswith("cordon_gateway_pack_age_seconds ")
        ]
        age = float(age_line.split()[1])
        assert 0 < age < 60


async def test_replicas_report_the_revision_they_applied(
    endpoints: dict[str, Any], tmp_path: Path
) -> None:
    pack = tmp_path / "pack.yaml"
    pack.write_text(PACK.format(patch=2))
    result = _publish(endpoints, pack)
    assert result.returncode == 0, result.stderr
    revision = int(result.stdout.split("revision ")[1].split()[0])
    region = endpoints["nats"]["regions"]["eu-west"]
    nc = await nats_as(region["xr"]["provision"])
    try:
        applied = await nc.jetstream().key_value(subjects.APPLIED_BUCKET)

        async def applied_revision() -> int:
            return int(json.loads((await applied.get("gw-1")).value)["revision"])

        for _ in range(100):
            if await applied_revision() == revision:
                break
            await asyncio.sleep(0.05)
        assert await applied_revision() == revision
    finally:
        await nc.close()


def test_pack_with_a_rule_no_gateway_can_enforce_is_refused_at_publish(
    endpoints: dict[str, Any], tmp_path: Path
) -> None:
    pack = tmp_path / "pack.yaml"
    pack.write_text(PACK.format(patch=3).replace("output_filter", "telepathy_filter"))
    result = _publish(endpoints, pack)
    assert result.returncode == 1
    assert f"{pack}:7: policies[0].type: 'telepathy_filter' is not one of" in result.stderr
    assert "Traceback" not in result.stderr


async def test_forged_pack_on_the_stream_is_never_activated(
    endpoints: dict[str, Any], tmp_path: Path
) -> None:
    before = _status(endpoints, "eu-west")["active_revision"]
    # signed, but by a key no gateway or replicator trusts
    document = {"pack": {"name": "default"}, "policies": []}
    statement = signing.statement_bytes(document, "default", before + 100, 2**40, ["*"])
    forged = signing.sign(statement, [SigningKey.generate()])
    nc = await nats_as(endpoints["nats"]["central"]["publisher"])
    try:
        await nc.jetstream().publish(subjects.policy_subject("default"), forged)
    finally:
        await nc.close()
    metrics = eventually(
        lambda: (
            (m := httpx.get(endpoints["replicator_metrics"]).text)
            and 'cordon_replicator_errors_total{reason="invalid_pack"}' in m
            and m
        ),
        timeout=5.0,
    )
    assert "cordon_policy_replication_lag_seconds" in metrics
    assert _status(endpoints, "eu-west")["active_revision"] == before
    # the forged pack was passed over, not left blocking the fan-out
    pack = tmp_path / "pack.yaml"
    pack.write_text(PACK.format(patch=4))
    result = _publish(endpoints, pack)
    assert result.returncode == 0, result.stderr
    revision = int(result.stdout.split("revision ")[1].split()[0])
    eventually(lambda: _status(endpoints, "us-east")["active_revision"] == revision)
