"""`make run` enforces the baseline pack from the first call."""

from __future__ import annotations

from typing import Any

import yaml

from cordon.nats import subjects
from cordon.packs import document_hash, signing
from cordon_dev.stack import BASELINE_PACK
from tests.helpers import chat, nats_as, stored_record


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
    chat(endpoints["gateways"]["eu-west"], endpoints["api_key"], "hello")
    record = await _first_decision(endpoints)
    assert record["pack"]["name"] == "default" and record["pack"]["hash"] == baseline


async def _first_decision(endpoints: dict[str, Any]) -> dict[str, Any]:
    """gw-1's first decision record in eu-west; streams other tests ran first may have put
    intent records before it."""
    nc = await nats_as(endpoints["nats"]["regions"]["eu-west"]["audit"]["provision"])
    try:
        js = nc.jetstream()
        subject = subjects.record_subject("eu-west", "gw-1")
        seq = 1
        while True:
            found = await js.get_msg(subjects.RECORDS_STREAM, seq, subject=subject, next=True)
            record = await stored_record(endpoints, "eu-west", int(found.seq or 0))
            if record["kind"] == "decision":
                return record
            seq = int(found.seq or 0) + 1
    finally:
        await nc.close()
