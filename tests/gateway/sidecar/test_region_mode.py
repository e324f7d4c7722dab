"""Region mode: a sidecar process that is a replica of a region, its local log the
buffer. Real `openai` SDK calls before, during and after the region's NATS is stopped:
every call is answered (committed to the local log), and once NATS is back every
record reaches the region's RECORDS exactly once, gap-free by `replica_seq`, verified
under the regional key, sealed by the region and verified by the central witness; the
local log itself verifies offline under the regional key."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from cordon.nats import subjects
from cordon_dev.procs import ManagedProcess, free_port, wait_for_http
from cordon_dev.stack import DEV_API_KEY, DevStack
from tests.conftest import ONE_REGION as REGION
from tests.helpers import central_get, eventually, gaps_in, nats_as, replica_records

pytestmark = pytest.mark.servers  # a one-region topology of its own (tests/conftest.py)

REPLICA = "sidecar-region-test"
CLI = [sys.executable, "-m", "cordon_cli"]
OUTAGE_S = 3.0  # calls keep coming while the region's NATS is stopped this long


@pytest.fixture
def region(one_region: DevStack) -> DevStack:
    return one_region


def _endpoints(dev: DevStack) -> dict[str, Any]:
    described: dict[str, Any] = json.loads((dev.root / "endpoints.json").read_text())
    return described


def _sidecar_files(dev: DevStack, root: Path) -> tuple[Path, int]:
    port = free_port()
    settings = dev.gateway_config(REGION, REPLICA, dev.endpoints.mock_provider, port)
    config = root / "sidecar.yaml"
    config.write_text(
        "gateway:\n"
        "  mode: region\n"
        f"  region_settings: {settings}\n"
        f"  listen_port: {port}\n"
        f"  state_dir: {root / 'state'}\n"
        "  ship_retry_interval: 200ms\n"
        # In region mode the file's rules are an overlay on the region's pack.
        "policies:\n  - {name: no-email, type: output_filter, patterns: [email]}\n"
    )
    return config, port


def _ask(url: str, text: str) -> str:
    """One real SDK call; the record id of its answer."""
    sdk = openai.OpenAI(base_url=url + "/v1", api_key=DEV_API_KEY, max_retries=0, timeout=10)
    raw = sdk.chat.completions.with_raw_response.create(
        model="mock-gpt", messages=[{"role": "user", "content": text}]
    )
    assert raw.parse().choices[0].message.content == f"echo: {text}"
    return str(raw.headers["x-cordon-record-id"])


def _shipping(url: str, admin: str) -> dict[str, Any]:
    status = httpx.get(
        url + "/v1/cordon/policy", headers={"authorization": f"Bearer {admin}"}, timeout=5
    ).json()
    shipping: dict[str, Any] = status["source"]["shipping"]
    active = {"active_revision": status["active_revision"], "pack": status["pack"]}
    return shipping | active | {"origin": status["origin"]}


async def _last_stream_seq(endpoints: dict[str, Any]) -> int:
    nc = await nats_as(endpoints["nats"]["regions"][REGION]["audit"]["provision"])
    try:
        subject = subjects.record_subject(REGION, REPLICA)
        last = await nc.jetstream().get_last_msg(subjects.RECORDS_STREAM, subject)
    finally:
        await nc.close()
    return int(last.seq or 0)


def _witnessed(endpoints: dict[str, Any], seq: int) -> dict[str, Any]:
    """The aggregator's newest checkpoint of the region once it covers `seq`, judged."""
    found: dict[str, Any] = {}

    def covered() -> bool:
        latest = central_get(endpoints, "/v1/checkpoints").json()["regions"]
        found.clear()
        found.update(latest.get(REGION) or {})
        return found.get("size", 0) >= seq and found.get("witness") is not None

    eventually(covered, timeout=45, interval=0.5)
    return found


@pytest.mark.timeout(120)  # an outage drill on a private region: start, stop, restart
async def test_records_written_while_nats_is_down_reach_records_once_and_are_witnessed(
    region: DevStack, tmp_path: Path
) -> None:
    assert region.nats is not None
    endpoints = _endpoints(region)
    admin = endpoints["tokens"]["admin"]
    config, port = _sidecar_files(region, tmp_path)
    url = f"http://127.0.0.1:{port}"
    sidecar = ManagedProcess(
        "sidecar", [*CLI, "sidecar", "--config", str(config)], tmp_path / "sidecar.log"
    )
    sidecar.start()
    try:
        assert sidecar.proc is not None
        wait_for_http(url + "/readyz", 15, sidecar.proc)
        # the region's pack (its policy KV), not the file's
        eventually(lambda: _shipping(url, admin)["active_revision"] >= 1, timeout=15)
        assert _shipping(url, admin)["pack"] == "default"
        overlaid = openai.OpenAI(base_url=url + "/v1", api_key=DEV_API_KEY, max_retries=0)
        mail = overlaid.chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": "a@example.com"}]
        )
        assert mail.choices[0].message.content == "echo: [EMAIL]"  # the sidecar's own rule
        asked = [_ask(url, f"before {n}") for n in range(3)]

        region.nats.stop(REGION)
        try:
            deadline = time.monotonic() + OUTAGE_S
            while time.monotonic() < deadline:  # every call answered, committed locally
                asked.append(_ask(url, f"during {len(asked)}"))
                time.sleep(0.2)
            during = _shipping(url, admin)
            assert during["backlog"] >= 1 and during["last_error"]
            metrics = httpx.get(url + "/metrics").text
            assert "cordon_sidecar_ship_backlog" in metrics
        finally:
            region.nats.start(REGION)
        asked += [_ask(url, f"after {n}") for n in range(3)]

        eventually(lambda: _shipping(url, admin)["backlog"] == 0, timeout=20, interval=0.2)
        shipped = await replica_records(endpoints, REGION, REPLICA)  # verified, regional key
        counts = Counter(record["id"] for record in shipped)
        assert {record_id: counts[record_id] for record_id in asked} == dict.fromkeys(asked, 1)
        assert max(counts.values()) == 1
        assert gaps_in(shipped) == [] and len(shipped) >= len(asked)

        latest = _witnessed(endpoints, await _last_stream_seq(endpoints))
        assert latest["witness"]["verified"] is True and latest["witness"]["reason"] is None
        status = _shipping(url, admin)
        assert status["origin"]["overlay"].startswith("sha256:")  # its rules, on the record
    finally:
        sidecar.stop()

    _local_log_verifies_offline(config, endpoints["regional_public_keys"][REGION], tmp_path)


def _local_log_verifies_offline(config: Path, regional_key: str, root: Path) -> None:
    """The local log and its checkpoints, exported, verify under the regional key."""
    bundle = root / "bundle.json"
    export = ["sidecar", "export", "--config", str(config), "--out", str(bundle)]
    for args in (
        [*export, "--regional-key", regional_key],
        ["audit", "verify", str(bundle), "--trust-key", regional_key],
    ):
        done = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr
