"""Staged rollouts: a revision reaches one wave of regions at a time, halts on its
canary's refusals or errors, and operators halt, resume and roll back.

A dedicated replica per region enforces the pack `staged`, on the WAN topology, so
holding a wave back never holds back the other tests' packs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from cordon_dev.procs import wait_for_http
from cordon_dev.stack import DEV_API_KEY, DevStack
from tests.helpers import (
    eventually,
    gateway_sdk,
    pack_document,
    policy_status,
    publish_document,
    regional_pack_history,
)
from tests.helpers import latest_revision_at_central as latest

PACK = "staged"
REGIONS = ("eu-west", "us-east")


@pytest.fixture(scope="module")
def staged(wan_stack: DevStack) -> Iterator[dict[str, str]]:
    gateways = {}
    for region in REGIONS:
        gateways[region] = wan_stack.start_gateway(
            region, "gw-staged", wan_stack.endpoints.mock_provider, pack_name=PACK
        )
    for region, url in gateways.items():
        wait_for_http(url + "/readyz", 30, wan_stack.processes[f"gateway-{region}-gw-staged"].proc)
    yield gateways
    for region in REGIONS:
        wan_stack.processes[f"gateway-{region}-gw-staged"].stop()


def _cli(stack: DevStack, *args: str) -> subprocess.CompletedProcess[str]:
    assert stack.topology is not None
    publisher = stack.topology.central_endpoint("publisher")
    identity = ["--nats-url", publisher.url, "--nats-seed", str(publisher.seed_file)]
    return subprocess.run(
        [sys.executable, "-m", "cordon_cli", "policy", *args, *identity],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _status(stack: DevStack) -> tuple[int, dict[str, Any]]:
    result = _cli(stack, "status", "--json", "--regions", ",".join(REGIONS))
    return result.returncode, json.loads(result.stdout)


def _rollout(stack: DevStack) -> dict[str, Any] | None:
    return next((r for r in _status(stack)[1]["rollouts"] if r["pack"] == PACK), None)


def _active(stack: DevStack, url: str) -> int:
    return int(policy_status(url, stack.tokens["admin"])["active_revision"])


SOAK_S = 8  # the first wave's soak in the waves drill


def _staged(marker: str, soak: str, **halt_on: Any) -> dict[str, Any]:
    rollout: dict[str, Any] = {"waves": [["eu-west"], ["us-east"]], "soak": soak}
    if halt_on:
        rollout["halt_on"] = halt_on
    return pack_document(PACK, marker, rollout=rollout)


def _route(document: dict[str, Any], base_url: str) -> None:
    """Send the pack's `mock-gpt` calls to `base_url`."""
    target = {"id": "staged", "provider": {"api": "openai", "base_url": base_url}}
    document["providers"] = {"targets": [{**target, "models": ["mock-gpt"]}]}


async def _settle(stack: DevStack, gateways: dict[str, str], marker: str) -> int:
    """Publish an unstaged revision and wait until both replicas enforce it."""
    revision = await latest(stack, PACK) + 1
    await publish_document(stack, pack_document(PACK, marker), revision)
    for url in gateways.values():
        eventually(lambda url=url: _active(stack, url) == revision, timeout=20)
    return revision


@pytest.mark.timeout(90)
async def test_the_next_wave_opens_after_the_first_enforces_and_soaks(
    wan_stack: DevStack, staged: dict[str, str]
) -> None:
    before = await _settle(wan_stack, staged, "waves-base")
    revision = before + 1
    # The soak is long enough to see the first wave alone on a loaded machine: at 4 s,
    # one full run (2026-12-06) first saw the rollout after the second wave had opened.
    await publish_document(wan_stack, _staged("waves-1", f"{SOAK_S}s"), revision)
    published = time.monotonic()

    eventually(lambda: _active(wan_stack, staged["eu-west"]) == revision, timeout=10)
    rollout = eventually(lambda: (r := _rollout(wan_stack)) and r["revision"] == revision and r)
    assert rollout["wave"] == 0 and not rollout["complete"] and rollout["halted"] is None
    assert _active(wan_stack, staged["us-east"]) == before  # the second wave waits
    _, found = _status(wan_stack)
    held = [r for r in found["replicas"] if r["pack"] == PACK and r["region"] == "us-east"]
    assert held and all(r["held"] and not r["behind"] for r in held)

    eventually(lambda: _active(wan_stack, staged["us-east"]) == revision, timeout=20 + SOAK_S)
    assert time.monotonic() - published >= SOAK_S  # not before the soak ended
    rollout = eventually(lambda: (r := _rollout(wan_stack)) and r["complete"] and r, timeout=5)
    assert rollout["released"] == {"eu-west": revision, "us-east": revision}


@pytest.mark.timeout(90)
async def test_a_canary_that_refuses_the_pack_halts_the_rollout_until_resumed(
    wan_stack: DevStack, staged: dict[str, str]
) -> None:
    before = await _settle(wan_stack, staged, "canary-base")
    revision = before + 1
    broken = _staged("canary-broken", "1s")
    _route(broken, "${CORDON_WAVES_UNSET}/v1")  # refused: the variable is not set
    await publish_document(wan_stack, broken, revision)

    rollout = eventually(lambda: (r := _rollout(wan_stack)) and r["halted"] and r, timeout=20)
    assert rollout["revision"] == revision and rollout["wave"] == 0
    assert "eu-west/gw-staged" in rollout["halted"] and "CORDON_WAVES_UNSET" in rollout["halted"]
    code, _ = _status(wan_stack)
    assert code == 1  # a halted rollout fails the status check: it needs a person
    text = _cli(wan_stack, "status", "--regions", ",".join(REGIONS)).stdout
    assert f"rollout {PACK} r{revision}: HALTED at wave 1 of 2 [eu-west | us-east]" in text
    assert f"eu-west/gw-staged: {PACK} r{before} since " in text
    assert "refused: " in text and "CORDON_WAVES_UNSET" in text
    time.sleep(3)  # well past the soak: the second wave still gets nothing
    assert revision not in await regional_pack_history(wan_stack, "us-east", PACK)
    assert _active(wan_stack, staged["eu-west"]) == before  # the canary kept its good pack

    resumed = _cli(wan_stack, "resume", PACK)
    assert resumed.returncode == 0, resumed.stderr
    # Delivered to the next wave once resumed; refused there too, it halts that wave.
    again = eventually(
        lambda: (r := _rollout(wan_stack)) and r["wave"] == 1 and r["halted"] and r, 15
    )
    assert "us-east/gw-staged" in again["halted"]
    history = await regional_pack_history(wan_stack, "us-east", PACK)
    assert history[-1] == revision
    await _settle(wan_stack, staged, "canary-fixed")


@pytest.mark.timeout(120)
async def test_a_wave_whose_error_ratio_rises_halts_the_rollout(
    wan_stack: DevStack, staged: dict[str, str]
) -> None:
    before = await _settle(wan_stack, staged, "errors-base")
    failing = wan_stack.start_mock("mock-waves-500", "500")
    revision = before + 1
    document = _staged("errors", "60s", error_ratio=0.5, min_calls=4)
    _route(document, failing)
    await publish_document(wan_stack, document, revision)
    eventually(lambda: _active(wan_stack, staged["eu-west"]) == revision, timeout=10)
    sdk = gateway_sdk(staged["eu-west"], DEV_API_KEY)
    for _ in range(6):
        with pytest.raises(openai.InternalServerError):
            sdk.chat.completions.create(
                model="mock-gpt", messages=[{"role": "user", "content": "hi"}]
            )
    # Replicas report their counts every 10 s.
    rollout = eventually(lambda: (r := _rollout(wan_stack)) and r["halted"] and r, timeout=30)
    assert "error ratio" in rollout["halted"] and rollout["revision"] == revision
    assert _active(wan_stack, staged["us-east"]) == before
    await _settle(wan_stack, staged, "errors-fixed")


@pytest.mark.timeout(90)
async def test_an_operator_halts_and_resumes_a_rollout(
    wan_stack: DevStack, staged: dict[str, str]
) -> None:
    before = await _settle(wan_stack, staged, "manual-base")
    revision = before + 1
    await publish_document(wan_stack, _staged("manual", "1h"), revision)
    eventually(lambda: _active(wan_stack, staged["eu-west"]) == revision, timeout=10)
    halted = _cli(wan_stack, "halt", PACK, "--reason", "looking at dashboards")
    assert halted.returncode == 0, halted.stderr
    rollout = eventually(lambda: (r := _rollout(wan_stack)) and r["halted"] and r)
    assert "looking at dashboards" in rollout["halted"]
    again = _cli(wan_stack, "halt", PACK)
    assert again.returncode == 0  # halting a halted rollout changes nothing

    resumed = _cli(wan_stack, "resume", PACK)
    assert resumed.returncode == 0, resumed.stderr
    # Resumed: wave 1 accepted, wave 2 opens now, not after the hour's soak.
    eventually(lambda: _active(wan_stack, staged["us-east"]) == revision, timeout=15)
    not_halted = _cli(wan_stack, "resume", PACK)
    assert not_halted.returncode == 1  # nothing to resume: it is moving, or done
    assert "not halted" in not_halted.stderr or "no rollout" in not_halted.stderr


@pytest.mark.timeout(90)
async def test_rollback_publishes_the_old_content_as_a_higher_revision(
    wan_stack: DevStack, staged: dict[str, str]
) -> None:
    good = await _settle(wan_stack, staged, "rollback-good")
    good_hash = policy_status(staged["eu-west"], wan_stack.tokens["admin"])["active_hash"]
    await _settle(wan_stack, staged, "rollback-later")
    assert policy_status(staged["eu-west"], wan_stack.tokens["admin"])["active_hash"] != good_hash

    result = _cli(
        wan_stack, "rollback", PACK, "--to", str(good), "--key", str(wan_stack.policy_owner_key)
    )
    assert result.returncode == 0, result.stderr
    revision = good + 2
    assert f"revision {revision} with the content of revision {good}" in result.stdout
    for url in staged.values():
        eventually(lambda url=url: _active(wan_stack, url) == revision, timeout=20)
        assert policy_status(url, wan_stack.tokens["admin"])["active_hash"] == good_hash

    missing = _cli(
        wan_stack, "rollback", PACK, "--to", "9999", "--key", str(wan_stack.policy_owner_key)
    )
    assert missing.returncode == 1 and "not in POLICY" in missing.stderr


@pytest.mark.timeout(60)
async def test_waves_skip_regions_the_pack_does_not_cover(
    wan_stack: DevStack, staged: dict[str, str]
) -> None:
    before = await _settle(wan_stack, staged, "covered-base")
    revision = before + 1
    await publish_document(wan_stack, _staged("us-only", "1h"), revision, regions=("us-east",))
    # eu-west's wave is empty for this pack: us-east is the first wave, open at once.
    eventually(lambda: _active(wan_stack, staged["us-east"]) == revision, timeout=10)
    rollout = eventually(lambda: (r := _rollout(wan_stack)) and r["complete"] and r, 10)
    assert rollout["waves"] == [["us-east"]]
    assert _active(wan_stack, staged["eu-west"]) == before
    await _settle(wan_stack, staged, "covered-after")
