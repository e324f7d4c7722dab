"""The regional, read-only auditor API."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import openai

from cordon.log import checkpoints, merkle
from cordon.nats import subjects
from cordon_dev.procs import wait_for_http
from cordon_dev.stack import DevStack
from tests.helpers import audit_get, authed_get, eventually, nats_as, stored


def test_records_come_back_verified_in_stream_order(endpoints: dict[str, Any]) -> None:
    sdk = openai.OpenAI(
        base_url=endpoints["gateways"]["us-east"] + "/v1",
        api_key=endpoints["api_key"],
        max_retries=0,
    )
    raw = sdk.chat.completions.with_raw_response.create(
        model="mock-gpt", messages=[{"role": "user", "content": "for the auditor"}]
    )
    seq = int(raw.headers["x-cordon-record-seq"])
    page = authed_get(
        endpoints,
        endpoints["audit_apis"]["us-east"] + "/v1/records",
        params={"after_seq": seq - 1, "limit": 1},
    ).json()
    assert page["region"] == "us-east"
    (item,) = page["items"]
    assert item["seq"] == seq and item["verified"] is True
    assert item["record"]["id"] == raw.headers["x-cordon-record-id"]
    assert item["record"]["content"]["answer"] == "echo: for the auditor"

    everything = audit_get(endpoints, "us-east", "/v1/records").json()["items"]
    assert everything[0]["kind"] == "enrolment" and everything[0]["verified"] is True
    assert [i["seq"] for i in everything] == sorted(i["seq"] for i in everything)
    assert all(i["verified"] for i in everything)


def _wait_indexed(endpoints: dict[str, Any], region: str, seq: int) -> None:
    for _ in range(100):
        if (
            authed_get(
                endpoints,
                endpoints["audit_apis"][region] + "/v1/records/search",
                params={"limit": 1},
            ).json()["indexed"]
            >= seq
        ):
            return
        time.sleep(0.05)
    raise AssertionError("the audit index never caught up")


def _assert_proven(endpoints: dict[str, Any], base: str, seq: int) -> None:
    """Record `seq` comes with an inclusion proof that holds for the checkpoint given."""
    for _ in range(100):
        response = authed_get(endpoints, f"{base}/v1/records/{seq}/proof")
        if response.status_code == 200:
            break
        time.sleep(0.1)
    assert response.status_code == 200, response.text
    body = response.json()
    stated = checkpoints.unverified(json.dumps(body["checkpoint"]).encode())
    leaf = merkle.leaf_hash(base64.b64decode(body["data"]))
    proof = [base64.b64decode(p) for p in body["proof"]]
    merkle.verify_inclusion(leaf, seq - 1, stated.size, proof, stated.root)


def test_search_by_agent_outcome_and_time_range_with_paging(endpoints: dict[str, Any]) -> None:
    sdk = openai.OpenAI(
        base_url=endpoints["gateways"]["us-east"] + "/v1",
        api_key=endpoints["api_key"],
        max_retries=0,
    )
    since = datetime.now(UTC).isoformat(timespec="microseconds")
    seqs = []
    for i in range(5):
        raw = sdk.chat.completions.with_raw_response.create(
            model="mock-gpt-mini", messages=[{"role": "user", "content": f"q{i}"}]
        )
        seqs.append(int(raw.headers["x-cordon-record-seq"]))
    until = datetime.now(UTC).isoformat(timespec="microseconds")
    _wait_indexed(endpoints, "us-east", seqs[-1])
    api = endpoints["audit_apis"]["us-east"] + "/v1/records/search"
    params: dict[str, Any] = {
        "agent": "dev-app",
        "model": "mock-gpt-mini",
        "since": since,
        "until": until,
        "limit": 3,
    }
    first = authed_get(endpoints, api, params=params).json()
    assert [i["seq"] for i in first["items"]] == seqs[:3]
    assert all(i["verified"] and i["record"]["outcome"] == "allow" for i in first["items"])
    rest = authed_get(
        endpoints, api, params={**params, "after_seq": first["next_after_seq"]}
    ).json()
    assert [i["seq"] for i in rest["items"]] == seqs[3:] and rest["next_after_seq"] is None
    assert authed_get(endpoints, api, params={**params, "outcome": "block"}).json()["items"] == []


async def test_one_record_with_its_inclusion_proof_and_a_consistency_proof(
    endpoints: dict[str, Any],
) -> None:
    sdk = openai.OpenAI(
        base_url=endpoints["gateways"]["us-east"] + "/v1",
        api_key=endpoints["api_key"],
        max_retries=0,
    )
    seq = int(
        sdk.chat.completions.with_raw_response.create(
            model="mock-gpt", messages=[{"role": "user", "content": "prove it"}]
        ).headers["x-cordon-record-seq"]
    )
    base = endpoints["audit_apis"]["us-east"]
    _assert_proven(endpoints, base, seq)

    nc = await nats_as(endpoints["nats"]["regions"]["us-east"]["audit"]["provision"])
    try:
        js = nc.jetstream()
        leaves = [
            merkle.leaf_hash((await js.get_msg(subjects.RECORDS_STREAM, s)).data or b"")
            for s in range(1, seq + 1)
        ]
    finally:
        await nc.close()
    old = max(1, seq // 2)
    proof = authed_get(
        endpoints, f"{base}/v1/consistency", params={"old_size": old, "new_size": seq}
    ).json()["proof"]
    merkle.verify_consistency(
        old,
        seq,
        merkle.root(leaves[:old]),
        merkle.root(leaves),
        [base64.b64decode(p) for p in proof],
    )


def test_an_export_larger_than_a_page_is_refused_with_how_to_page(
    endpoints: dict[str, Any],
) -> None:
    response = authed_get(
        endpoints,
        endpoints["audit_apis"]["us-east"] + "/v1/export",
        params={"from_seq": 1, "to_seq": 20_001},
    )
    assert response.status_code == 400
    assert "at most 10000 records per bundle" in response.json()["detail"]


def test_a_lost_index_is_rebuilt_from_the_stream_with_its_tree(
    stack: DevStack, endpoints: dict[str, Any]
) -> None:
    region, base = "us-east", endpoints["audit_apis"]["us-east"]
    seq = int(
        httpx.post(
            endpoints["gateways"][region] + "/v1/chat/completions",
            json={"model": "mock-gpt", "messages": [{"role": "user", "content": "keep me"}]},
            headers={"authorization": f"Bearer {endpoints['api_key']}"},
        ).headers["x-cordon-record-seq"]
    )
    _wait_indexed(endpoints, region, seq)
    audit_api = stack.processes[f"audit-api-{region}"]
    audit_api.stop()
    for part in (stack.root / "state").glob(f"audit-index-{region}.sqlite3*"):
        part.unlink()
    audit_api.start()
    wait_for_http(base + "/docs", timeout=30, proc=audit_api.proc)

    _wait_indexed(endpoints, region, seq)
    _assert_proven(endpoints, base, seq)


async def test_every_read_leaves_a_signed_access_record_in_the_region(
    endpoints: dict[str, Any],
) -> None:
    region, marker = "us-east", f"nobody-{uuid.uuid4()}"
    asked = audit_get(endpoints, region, "/v1/records/search", params={"person": marker})
    assert asked.status_code == 200 and asked.json()["items"] == []

    def access_record() -> dict[str, Any] | None:
        items = audit_get(
            endpoints,
            region,
            "/v1/records/search",
            params={"kind": "access", "agent": "dev-auditor", "limit": 1000},
        ).json()["items"]
        mine = [i for i in items if i["record"]["query"].get("person") == marker]
        return mine[0] if mine else None

    item = eventually(access_record, timeout=10)
    assert item["verified"] is True
    record = item["record"]
    assert record["route"] == "/v1/records/search"
    assert record["returned"] == 0 and record["roles"] == ["auditor"]
    # in the region's own log, signed by a key the regional key enrolled
    _, payload, _ = await stored(endpoints, region, item["seq"])
    assert payload["kind"] == "access" and payload["id"] == record["id"]
