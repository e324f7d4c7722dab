"""More than one replica per region: own keys, own replica_seq, errors still recorded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from cordon_dev.procs import free_port, wait_for_http
from cordon_dev.stack import DevStack
from tests.helpers import recent_records, stored_record


@pytest.fixture(scope="module")
def broken_upstream_replica(stack: DevStack) -> Iterator[str]:
    """A second eu-west replica whose provider refuses connections."""
    dead = f"http://127.0.0.1:{free_port()}/v1"
    url = stack.start_gateway("eu-west", "gw-2", dead)
    wait_for_http(url + "/readyz", 30, stack.processes["gateway-eu-west-gw-2"].proc)
    yield url
    stack.processes["gateway-eu-west-gw-2"].stop()


async def _record(endpoints: dict[str, Any], seq: int) -> dict[str, Any]:
    return await stored_record(endpoints, "eu-west", seq)


async def test_unreachable_provider_is_a_502_and_still_recorded(
    endpoints: dict[str, Any], broken_upstream_replica: str
) -> None:
    sdk = openai.OpenAI(
        base_url=broken_upstream_replica + "/v1", api_key=endpoints["api_key"], max_retries=0
    )
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "upstream_unavailable"  # type: ignore[index]
    headers = caught.value.response.headers
    record = await _record(endpoints, int(headers["x-cordon-record-seq"]))
    assert record["id"] == headers["x-cordon-record-id"]
    assert record["replica"] == "gw-2" and record["outcome"] == "error" and record["status"] == 502


async def test_replica_seq_is_per_replica_and_resumes_after_restart(
    stack: DevStack, endpoints: dict[str, Any], broken_upstream_replica: str
) -> None:
    def seq_of(url: str) -> int:
        response = httpx.post(
            url + "/v1/chat/completions",
            json={"model": "mock-gpt", "messages": [{"role": "user", "content": "x"}]},
            headers={"authorization": f"Bearer {endpoints['api_key']}"},
        )
        return int(response.headers["x-cordon-record-seq"])

    first = (await _record(endpoints, seq_of(broken_upstream_replica)))["replica_seq"]
    second = (await _record(endpoints, seq_of(broken_upstream_replica)))["replica_seq"]
    assert second == first + 1

    process = stack.processes["gateway-eu-west-gw-2"]
    process.stop()
    process.start()
    wait_for_http(broken_upstream_replica + "/readyz", 30, process.proc)
    third = await _record(endpoints, seq_of(broken_upstream_replica))
    assert third["replica"] == "gw-2" and third["replica_seq"] > second
    # whatever the restarted replica recorded in between, its sequence has no gap
    mine = sorted(
        r["replica_seq"]
        for r in await recent_records(endpoints, "eu-west", 60)
        if r["replica"] == "gw-2"
    )
    assert mine == list(range(mine[0], mine[-1] + 1)) and mine[-1] == third["replica_seq"]
