"""An application governed in-process as a replica of a region: its records reach the
region's RECORDS stream once each, in order, after the region's NATS was down a while,
and the calls made meanwhile were answered (committed to the worker's local log)."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import openai
import pytest

from cordon_dev.procs import free_port
from cordon_dev.stack import DevStack
from cordon_sdk import govern
from cordon_sdk.engine import engine_for
from tests.conftest import ONE_REGION as REGION
from tests.helpers import eventually, gaps_in, replica_records

pytestmark = pytest.mark.servers  # a one-region topology of its own (tests/conftest.py)

OUTAGE_S = 3.0
AGENT = "orders"


def _config(region: DevStack, root: Path) -> Path:
    """Two workers' replicas provisioned in the region; the file names them by slot."""
    for slot in (0, 1):
        mock = region.endpoints.mock_provider
        region.gateway_config(REGION, f"sdk-orders-{slot}", mock, free_port())
    settings = region.root / "config" / f"gateway-{REGION}-sdk-orders-{{worker}}.json"
    config = root / "app.yaml"
    config.write_text(
        "gateway:\n"
        "  mode: region\n"
        f"  region_settings: {settings}\n"
        f"  state_dir: {root / 'state'}\n"
        "  ship_retry_interval: 200ms\n"
    )
    return config


def _ask(client: openai.OpenAI, text: str) -> str:
    raw = client.chat.completions.with_raw_response.create(
        model="mock-gpt", messages=[{"role": "user", "content": text}]
    )
    assert raw.parse().choices[0].message.content == f"echo: {text}"
    return str(raw.headers["x-cordon-record-id"])


def _shipping(config: Path) -> dict[str, Any]:
    shipping: dict[str, Any] = engine_for([config], AGENT, None).status()["shipping"]
    return shipping


@pytest.mark.timeout(120)  # an outage drill: calls before, during and after
async def test_records_made_while_the_region_is_down_reach_records_once(
    one_region: DevStack, tmp_path: Path
) -> None:
    assert one_region.nats is not None
    config = _config(one_region, tmp_path)
    client = govern(
        openai.OpenAI(api_key="sk-app", base_url=one_region.endpoints.mock_provider, max_retries=0),
        config=config,
        agent=AGENT,
    )
    asked = [_ask(client, f"before {n}") for n in range(3)]
    one_region.nats.stop(REGION)
    try:
        deadline = time.monotonic() + OUTAGE_S
        while time.monotonic() < deadline:
            asked.append(_ask(client, f"during {len(asked)}"))
            time.sleep(0.2)
        assert _shipping(config)["backlog"] >= 1
    finally:
        one_region.nats.start(REGION)
    asked += [_ask(client, f"after {n}") for n in range(3)]
    eventually(lambda: _shipping(config)["backlog"] == 0, timeout=20, interval=0.2)

    endpoints = json.loads((one_region.root / "endpoints.json").read_text())
    shipped = await replica_records(endpoints, REGION, "sdk-orders-0")
    counts = Counter(record["id"] for record in shipped)
    assert {record_id: counts[record_id] for record_id in asked} == dict.fromkeys(asked, 1)
    assert gaps_in(shipped) == []
    assert {record["enforced_by"] for record in shipped if "enforced_by" in record} == {"sdk"}
    assert {record["agent"] for record in shipped if record.get("kind") == "decision"} == {AGENT}
