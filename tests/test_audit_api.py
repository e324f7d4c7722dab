"""The regional, read-only auditor API."""

from __future__ import annotations

from typing import Any

import httpx
import openai


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
    page = httpx.get(
        endpoints["audit_apis"]["us-east"] + "/v1/records",
        params={"after_seq": seq - 1, "limit": 1},
    ).json()
    assert page["region"] == "us-east"
    (item,) = page["items"]
    assert item["seq"] == seq and item["verified"] is True
    assert item["record"]["id"] == raw.headers["x-cordon-record-id"]
    assert item["record"]["content"]["answer"] == "echo: for the auditor"

    everything = httpx.get(endpoints["audit_apis"]["us-east"] + "/v1/records").json()["items"]
    assert everything[0]["kind"] == "enrolment" and everything[0]["verified"] is True
    assert [i["seq"] for i in everything] == sorted(i["seq"] for i in everything)
    assert all(i["verified"] for i in everything)
