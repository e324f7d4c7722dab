"""`cordon dev up` (and so `make run`) enforces the baseline pack from the first call."""

from __future__ import annotations

from typing import Any

import httpx
import yaml

from cordon.dev.stack import BASELINE_PACK
from cordon.nats import subjects
from cordon.packs import document_hash, signing
from tests.helpers import nats_as, stored_record


async def test_the_baseline_pack_is_published_first_and_screens_the_first_call(
    endpoints: dict[str, Any],
) -> None:
    baseline = document_hash(yaml.safe_load(BASELINE_PACK.read_text()))
    nc = await nats_as(endpoints["nats"]["central"]["provision"])
    try:
        js = nc.jetstream()
        first_seq = (await js.stream_info(subjects.POLICY_STREAM)).state.first_seq
        first = await js.get_msg(subjects.POLICY_STREAM, first_seq)
    finally:
        await nc.close()
    claimed = signing.claimed(first.data or b"")
    assert claimed == {"name": "default", "revision": 1, "hash": baseline}

    # The region's first decision record was made under it, whenever that call came.
    httpx.post(
        endpoints["gateways"]["eu-west"] + "/v1/chat/completions",
        json={"model": "mock-gpt", "messages": [{"role": "user", "content": "hello"}]},
        headers={"authorization": f"Bearer {endpoints['api_key']}"},
    )
    nc = await nats_as(endpoints["nats"]["regions"]["eu-west"]["audit"]["provision"])
    try:
        js = nc.jetstream()
        subject = subjects.record_subject("eu-west", "gw-1")
        first_call = await js.get_msg(subjects.RECORDS_STREAM, 1, subject=subject, next=True)
    finally:
        await nc.close()
    record = await stored_record(endpoints, "eu-west", int(first_call.seq or 0))
    assert record["kind"] == "decision"
    assert record["pack"]["name"] == "default" and record["pack"]["hash"] == baseline
