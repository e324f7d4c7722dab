"""The gateway's chat completions path, driven by the real openai SDK."""

from __future__ import annotations

from typing import Any

import httpx
import msgpack
import openai
import pytest

from tests.helpers import chat, gateway_sdk, stored, stored_record, unique_word


def client(
    endpoints: dict[str, Any], region: str = "eu-west", key: str | None = None
) -> openai.OpenAI:
    return gateway_sdk(endpoints["gateways"][region], key or endpoints["api_key"])


async def test_answer_is_committed_as_signed_record_before_it_is_returned(
    endpoints: dict[str, Any],
) -> None:
    marker = f"tell me about {unique_word()}"
    raw = client(endpoints).chat.completions.with_raw_response.create(
        model="mock-gpt", messages=[{"role": "user", "content": marker}]
    )
    answer = raw.parse()
    assert answer.choices[0].message.content == f"echo: {marker}"
    record_id = raw.headers["x-cordon-record-id"]
    seq = int(raw.headers["x-cordon-record-seq"])
    # The overhead it reports is a share of the wait the caller saw: it includes the
    # record's commit (so it is never zero) and cannot exceed the whole round trip.
    overhead_ms = float(raw.headers["x-cordon-overhead-ms"])
    assert 0 < overhead_ms <= raw.elapsed.total_seconds() * 1000

    raw_record, record, keyring = await stored(endpoints, "eu-west", seq)
    assert record["id"] == record_id
    assert record["region"] == "eu-west"
    assert record["agent"] == "dev-app"
    assert record["roles"] == ["developer"] and record["scopes"] == ["chat"]
    assert record["model"] == "mock-gpt" and record["route"] == "mock"
    assert record["outcome"] == "allow"
    assert record["pack"]["name"] and isinstance(record["pack"]["revision"], int)
    assert record["classification"] and record["ts"]
    assert record["replica_seq"] >= 1
    assert record["content"]["answer"] == f"echo: {marker}"
    # the signature covers the exact bytes: any change to them is caught
    tampered = bytearray(raw_record)
    index = raw_record.index(marker.encode())
    tampered[index] ^= 0x01
    with pytest.raises(Exception, match="signature"):
        keyring.verify_record(bytes(tampered))
    assert msgpack.unpackb(raw_record)["k"].startswith("sha256:")


def test_missing_and_wrong_api_keys_get_401_in_openai_shape(endpoints: dict[str, Any]) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        client(endpoints, key="not-a-key").chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 401
    assert caught.value.body["code"] == "invalid_api_key"  # type: ignore[index]
    bare = httpx.post(endpoints["gateways"]["eu-west"] + "/v1/chat/completions", json={})
    assert bare.status_code == 401
    assert "missing API key" in bare.json()["error"]["message"]


async def test_malformed_json_is_a_400_recorded_and_reaches_no_provider(
    endpoints: dict[str, Any],
) -> None:
    stats_url = endpoints["mock_provider"].removesuffix("/v1") + "/mock/stats"
    before = httpx.get(stats_url).json()["counts"]
    response = chat(
        endpoints["gateways"]["eu-west"],
        endpoints["api_key"],
        raw=b'{"model": "mock-gpt", "messages": [',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and "not valid JSON" in error["message"]
    assert httpx.get(stats_url).json()["counts"] == before
    record = await stored_record(endpoints, "eu-west", int(response.headers["x-cordon-record-seq"]))
    assert record["outcome"] == "error" and record["status"] == 400
    assert record["error"] == "invalid_request" and record["agent"] == "dev-app"


def test_missing_messages_is_a_400_naming_the_field(endpoints: dict[str, Any]) -> None:
    with pytest.raises(openai.BadRequestError, match="messages"):
        client(endpoints).chat.completions.create(model="mock-gpt", messages=[])


def test_oversized_body_is_a_413(endpoints: dict[str, Any]) -> None:
    huge = "x" * (5 * 1024 * 1024)
    with pytest.raises(openai.APIStatusError) as caught:
        client(endpoints).chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": huge}]
        )
    assert caught.value.status_code == 413
    assert "exceeds" in caught.value.message


def test_health_ready_and_metrics(endpoints: dict[str, Any]) -> None:
    base = endpoints["gateways"]["us-east"]
    assert httpx.get(base + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(base + "/readyz").json()
    assert ready["ready"] is True and ready["region"] == "us-east"
    client(endpoints, "us-east").chat.completions.create(
        model="mock-gpt", messages=[{"role": "user", "content": "count me"}]
    )
    metrics = httpx.get(base + "/metrics").text
    assert 'cordon_gateway_requests_total{outcome="allow",route="chat"}' in metrics
    assert "cordon_gateway_record_commit_seconds_bucket" in metrics
