"""`cordon policy status` agrees with what every gateway reports, and fails a script
when a live replica is behind."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from cordon_dev.procs import wait_for_http
from cordon_dev.stack import DevStack
from tests.helpers import cordon_policy_status, enforce, eventually, policy_status


def test_status_agrees_with_every_gateway(endpoints: dict[str, Any]) -> None:
    admin = endpoints["tokens"]["admin"]

    def agreed() -> dict[str, Any] | None:
        result = cordon_policy_status(endpoints)
        found: dict[str, Any] = json.loads(result.stdout)
        replicas = {(r["region"], r["replica"]): r for r in found["replicas"]}
        for region, url in endpoints["gateways"].items():
            said = policy_status(url, admin)
            mine = replicas.get((region, "gw-1"))
            if mine is None or mine["revision"] != said["active_revision"]:
                return None
            if mine["pack"] != said["pack"]:
                return None
        # (replicas the suite started and stopped still have reports here: whether they
        # are behind is theirs; marking stopped replicas stale is the next slice)
        return found

    found = eventually(agreed, timeout=20)
    default = next(p for p in found["packs"] if p["pack"] == "default")
    live = [r for r in found["replicas"] if r["replica"] == "gw-1"]
    assert len(live) == len(endpoints["gateways"])
    assert all(r["revision"] == default["revision"] and not r["behind"] for r in live)
    assert found["unreachable"] == []


def test_a_region_that_cannot_be_read_fails_the_command(endpoints: dict[str, Any]) -> None:
    result = cordon_policy_status(endpoints, "--regions", "eu-west,nowhere")
    assert result.returncode == 1
    assert json.loads(result.stdout)["unreachable"] == ["nowhere"]


@pytest.mark.timeout(90)
def test_a_replica_that_stopped_reporting_is_stale_not_behind(
    stack: DevStack, endpoints: dict[str, Any]
) -> None:
    """Replicas report every 10 s: one silent for longer than --stale-after is listed as
    stale and does not fail the command, so 'behind' speaks only of live replicas."""
    name = "gateway-us-east-gw-gone"
    url = stack.start_gateway("us-east", "gw-gone", stack.endpoints.mock_provider)
    wait_for_http(url + "/readyz", 30, stack.processes[name].proc)

    def reported() -> dict[str, Any] | None:
        replicas = json.loads(cordon_policy_status(endpoints).stdout)["replicas"]
        return next((r for r in replicas if r["replica"] == "gw-gone"), None)

    assert eventually(reported, timeout=15)["stale"] is False
    stack.processes[name].stop()
    time.sleep(13)  # past --stale-after 12s; live replicas reported within the last 10 s
    result = cordon_policy_status(endpoints, "--stale-after", "12s")
    replicas = json.loads(result.stdout)["replicas"]
    gone = next(r for r in replicas if r["replica"] == "gw-gone")
    assert gone["stale"] is True and gone["behind"] is False
    live = [r for r in replicas if r["replica"] == "gw-1"]
    assert live and not any(r["stale"] for r in live)


def test_end_to_end_propagation_and_each_replica_are_metrics(
    stack: DevStack, endpoints: dict[str, Any], tmp_path: Any
) -> None:
    """From what replicas report: commit-in-POLICY to active-at-replica as a histogram per
    region, each replica's revision and report age, and the stale count."""
    pack = (
        "pack: {name: default}\n"
        "policies: [{name: pii-status, type: output_filter, action: redact, patterns: [email]}]\n"
    )
    revision = enforce(stack, endpoints["gateways"]["us-east"], pack, tmp_path)

    def scraped() -> str | None:
        text = httpx.get(endpoints["replicator_metrics"]).text
        wanted = (
            f'cordon_policy_replica_revision{{region="us-east",replica="gw-1"}} {float(revision)}'
        )
        return text if wanted in text else None

    text = eventually(scraped, timeout=20)
    counts = [
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith('cordon_policy_propagation_seconds_count{region="us-east"}')
    ]
    assert counts and counts[0] >= 1
    assert 'cordon_policy_replica_report_age_seconds{region="eu-west",replica="gw-1"}' in text
    assert 'cordon_policy_stale_replicas{region="us-east"}' in text
