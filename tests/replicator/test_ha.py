"""Two replicators, exactly one active: the lease decides, and a standby takes over a
killed active one mid-fan-out without a region skipping or repeating a revision."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from cordon_dev.procs import wait_for_http
from cordon_dev.stack import DevStack
from tests.helpers import (
    eventually,
    latest_revision_at_central,
    metric,
    pack_document,
    policy_status,
    publish_document,
    regional_pack_history,
)

REGIONS = ("eu-west", "us-east")


def _scrape(url: str) -> str:
    try:
        return httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return ""


def _active(urls: dict[str, str]) -> list[str]:
    return [
        name for name, url in urls.items() if metric(_scrape(url), "cordon_replicator_active") == 1
    ]


def _writes(url: str) -> float:
    page = _scrape(url)
    return sum(metric(page, "cordon_replicator_writes_total", region=r) or 0.0 for r in REGIONS)


def _everywhere(stack: DevStack, revision: int) -> bool:
    admin = stack.tokens["admin"]
    return all(
        policy_status(url, admin)["active_revision"] == revision
        for url in stack.endpoints.gateways.values()
    )


@pytest.mark.timeout(120)
async def test_standby_takes_over_a_killed_active_replicator_mid_fan_out(
    wan_stack: DevStack,
) -> None:
    stack = wan_stack
    urls = {"replicator": stack.endpoints.replicator_metrics}
    urls["replicator-2"] = stack.start_replicator("replicator-2", name="replicator-2")
    wait_for_http(urls["replicator-2"], 30, stack.processes["replicator-2"].proc)
    assert eventually(lambda: _active(urls) or None, timeout=10) == ["replicator"]

    # Both running: only the lease holder writes.
    base = await latest_revision_at_central(stack)
    for step in (1, 2):
        await publish_document(stack, pack_document(marker=f"ha-{step}"), base + step)
    await asyncio.to_thread(eventually, lambda: _everywhere(stack, base + 2), 20)
    assert _writes(urls["replicator-2"]) == 0
    assert _writes(urls["replicator"]) >= 2 * len(REGIONS)
    assert _active(urls) == ["replicator"]

    # Slow eu-west down so the fan-out is in flight, then kill the active one mid-way.
    stack.wan["eu-west"].set_delay(0.25)
    try:
        for step in (3, 4, 5):
            await publish_document(stack, pack_document(marker=f"ha-{step}"), base + step)
        await asyncio.sleep(0.3)
        stack.processes["replicator"].kill()
        killed_at = time.monotonic()
        # The survivor is this topology's replicator from now on, for the later drills.
        stack.endpoints.replicator_metrics = urls["replicator-2"]
        await asyncio.to_thread(
            eventually, lambda: _active({"r2": urls["replicator-2"]}) or None, 10, 0.1
        )
        took_over = time.monotonic() - killed_at
        await asyncio.to_thread(eventually, lambda: _everywhere(stack, base + 5), 30, 0.2)
    finally:
        stack.wan["eu-west"].set_delay(0.0)
    print(f"standby active {took_over:.1f} s after the active replicator was killed")
    assert took_over <= 10
    assert _writes(urls["replicator-2"]) >= 1  # it finished the fan-out the other began

    # Every region's policy bucket holds each revision exactly once, in order.
    for region in REGIONS:
        history = await regional_pack_history(stack, region)
        tail = [r for r in history if r > base]
        assert tail == [base + n for n in range(1, 6)], (region, history)
