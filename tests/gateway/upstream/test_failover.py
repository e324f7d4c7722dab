"""Fallback across provider targets, circuit breakers, timeouts and secrets.

A dedicated eu-west replica enforces the pack `failover` (published centrally like
any pack), so these drills never disturb the other tests' gateways.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from cordon_dev.procs import free_port, wait_for_http
from cordon_dev.stack import DevStack
from tests.helpers import (
    eventually,
    gateway_sdk,
    policy_status,
    publish_pack,
    published_revision,
    sdk_chat,
    stored_record,
)

PROVIDER_KEY = "sk-provider-held-by-the-gateway"


@pytest.fixture(scope="module")
def drill(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    secrets = tmp_path_factory.mktemp("secrets")
    (secrets / "store-key").write_text("sk-from-the-store\n")
    mocks = {
        "good": stack.start_mock("mock-good"),
        "fail500": stack.start_mock("mock-500", "500"),
        "busy429": stack.start_mock("mock-429", "429"),
        "slow": stack.start_mock("mock-slow", "slow"),
        "breaks": stack.start_mock("mock-breaks", "break-stream"),
        "refused": f"http://127.0.0.1:{free_port()}/v1",
    }
    url = stack.start_gateway(
        "eu-west",
        "gw-failover",
        stack.endpoints.mock_provider,
        pack_name="failover",
        extra={"breaker_threshold": 3, "breaker_cooldown_s": 1.0, "secret_store_dir": str(secrets)},
        env={"CORDON_TEST_PROVIDER_KEY": PROVIDER_KEY, "CORDON_TEST_GOOD_URL": mocks["good"]},
    )
    wait_for_http(url + "/readyz", 30, stack.processes["gateway-eu-west-gw-failover"].proc)
    yield {
        "url": url,
        "mocks": mocks,
        "stack": stack,
        "dir": tmp_path_factory.mktemp("packs"),
        "admin_token": stack.tokens["admin"],
    }
    stack.processes["gateway-eu-west-gw-failover"].stop()


def target(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": name,
        "provider": {"api": "openai", "base_url": url},
        "models": ["mock-gpt", "slow-stream"],
        **extra,
    }


def activate(
    drill: dict[str, Any], endpoints: dict[str, Any], targets: list[dict[str, Any]]
) -> int:
    """Publish the `failover` pack with these targets; wait until the replica enforces it."""
    path = Path(drill["dir"]) / "failover.yaml"
    path.write_text(
        yaml.safe_dump({"pack": {"name": "failover"}, "providers": {"targets": targets}})
    )
    revision = published_revision(publish_pack(endpoints, path))
    eventually(lambda: status(drill)["active_revision"] == revision)
    return revision


def status(drill: dict[str, Any]) -> dict[str, Any]:
    return policy_status(drill["url"], drill["admin_token"])


def hits(url: str) -> int:
    counts = httpx.get(url.removesuffix("/v1") + "/mock/stats").json()["counts"]
    return int(counts.get("requests /v1/chat/completions", 0))


def circuits(drill: dict[str, Any]) -> dict[str, str]:
    return {t["id"]: t["circuit"] for t in status(drill)["targets"]}


def ask(drill: dict[str, Any], endpoints: dict[str, Any], model: str = "mock-gpt") -> Any:
    return sdk_chat(drill["url"], endpoints["api_key"], "hi", model=model, timeout=10)


async def test_refused_then_500_then_an_answer(
    drill: dict[str, Any], endpoints: dict[str, Any]
) -> None:
    m = drill["mocks"]
    activate(
        drill,
        endpoints,
        [
            target("refused", m["refused"]),
            target("fail500", m["fail500"]),
            target("good", m["good"]),
        ],
    )
    raw = ask(drill, endpoints)
    assert raw.parse().choices[0].message.content == "echo: hi"
    record = await stored_record(endpoints, "eu-west", int(raw.headers["x-cordon-record-seq"]))
    assert record["route"] == "good"
    assert record["attempts"] == ["refused:connect", "fail500:500"]


def test_429_rests_the_target_for_its_retry_after(
    drill: dict[str, Any], endpoints: dict[str, Any]
) -> None:
    m = drill["mocks"]
    activate(drill, endpoints, [target("busy429", m["busy429"]), target("good", m["good"])])
    before = hits(m["busy429"])
    refused_at = time.monotonic()
    assert ask(drill, endpoints).parse().choices[0].message.content == "echo: hi"
    assert hits(m["busy429"]) == before + 1
    ask(drill, endpoints)  # within retry-after: 1 s; busy429 is not asked again
    assert hits(m["busy429"]) == before + 1

    def asked_again() -> bool:
        ask(drill, endpoints)
        return hits(m["busy429"]) == before + 2

    # Calls keep coming; the first after its rest goes to busy429 again, not one before.
    eventually(asked_again, timeout=10, interval=0.1)
    assert time.monotonic() - refused_at >= 1.0


def test_a_lone_429_reaches_the_caller_with_retry_after(
    drill: dict[str, Any], endpoints: dict[str, Any]
) -> None:
    # Its own target id: breaker state is per id, so a rest another test left on
    # `busy429` cannot turn this first call away.
    activate(drill, endpoints, [target("lone429", drill["mocks"]["busy429"])])
    with pytest.raises(openai.RateLimitError) as caught:
        ask(drill, endpoints)
    assert caught.value.response.headers["retry-after"] == "1"


def test_circuit_opens_then_half_opens_then_closes(
    drill: dict[str, Any], endpoints: dict[str, Any]
) -> None:
    m = drill["mocks"]
    flaky = drill["stack"].start_mock("mock-flaky", "500")
    activate(drill, endpoints, [target("flaky", flaky), target("good", m["good"])])
    for _ in range(3):  # threshold 3
        assert ask(drill, endpoints).parse().choices[0].message.content == "echo: hi"
    assert hits(flaky) == 3
    metrics = httpx.get(drill["url"] + "/metrics").text
    assert 'cordon_gateway_circuit_open{target="flaky"} 1.0' in metrics
    assert circuits(drill) == {"flaky": "open", "good": "closed"}
    ask(drill, endpoints)
    assert hits(flaky) == 3  # open: not even tried

    # After its cooldown (1 s) one trial goes through, fails, and opens it again.
    eventually(lambda: circuits(drill)["flaky"] == "half_open", timeout=10)
    ask(drill, endpoints)
    ask(drill, endpoints)
    assert hits(flaky) == 4

    httpx.post(flaky.removesuffix("/v1") + "/mock/behaviour", json={"mode": "ok"})
    eventually(lambda: circuits(drill)["flaky"] == "half_open", timeout=10)
    raw = ask(drill, endpoints)
    assert hits(flaky) == 5 and raw.parse().choices[0].message.content == "echo: hi"
    assert (
        'cordon_gateway_circuit_open{target="flaky"} 0.0'
        in httpx.get(drill["url"] + "/metrics").text
    )
    ask(drill, endpoints)
    assert hits(flaky) == 6  # closed again: first in line


async def test_first_byte_timeout_falls_back_and_all_slow_is_a_504(
    drill: dict[str, Any], endpoints: dict[str, Any]
) -> None:
    m = drill["mocks"]
    quick = {"timeouts": {"first_byte": 0.3}}
    activate(drill, endpoints, [target("slow", m["slow"], **quick), target("good", m["good"])])
    started = time.monotonic()
    raw = ask(drill, endpoints)
    assert time.monotonic() - started < 1.5
    record = await stored_record(endpoints, "eu-west", int(raw.headers["x-cordon-record-seq"]))
    assert record["attempts"] == ["slow:timeout"] and record["route"] == "good"

    activate(drill, endpoints, [target("slow", m["slow"], **quick)])
    with pytest.raises(openai.APIStatusError) as caught:
        ask(drill, endpoints)
    assert caught.value.status_code == 504
    assert caught.value.body["code"] == "upstream_timeout"  # type: ignore[index]


async def test_no_retry_once_a_stream_has_started(
    drill: dict[str, Any], endpoints: dict[str, Any]
) -> None:
    m = drill["mocks"]
    activate(drill, endpoints, [target("breaks", m["breaks"]), target("good", m["good"])])
    good_before = hits(m["good"])
    sdk = gateway_sdk(drill["url"], endpoints["api_key"])
    seen = []
    with pytest.raises(openai.APIError, match="stream ended without its final event"):
        for chunk in sdk.chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": "a b c d"}], stream=True
        ):
            seen.append(chunk.choices[0].delta.content)
    assert seen == ["echo:", " a"]
    assert hits(m["good"]) == good_before  # never retried elsewhere


def test_provider_keys_come_from_env_and_store_never_from_the_caller(
    drill: dict[str, Any], endpoints: dict[str, Any]
) -> None:
    m = drill["mocks"]
    env_ref = {"secret_key_ref": {"env": "CORDON_TEST_PROVIDER_KEY"}}
    activate(drill, endpoints, [target("good", "${CORDON_TEST_GOOD_URL}", **env_ref)])
    ask(drill, endpoints)
    seen = httpx.get(m["good"].removesuffix("/v1") + "/mock/stats").json()["auth"]
    assert seen["authorization"] == f"Bearer {PROVIDER_KEY}"

    activate(drill, endpoints, [target("good", m["good"], secret_key_ref={"store": "store-key"})])
    ask(drill, endpoints)
    seen = httpx.get(m["good"].removesuffix("/v1") + "/mock/stats").json()["auth"]
    assert seen["authorization"] == "Bearer sk-from-the-store"
    assert PROVIDER_KEY not in httpx.get(drill["url"] + "/metrics").text


def test_a_missing_secret_refuses_the_pack_at_activation(
    drill: dict[str, Any], endpoints: dict[str, Any]
) -> None:
    m = drill["mocks"]
    good = activate(drill, endpoints, [target("good", m["good"])])
    path = Path(drill["dir"]) / "bad.yaml"
    for bad_target, reason in [
        (
            target("good", m["good"], secret_key_ref={"env": "CORDON_NOT_SET"}),
            "secret env var CORDON_NOT_SET is not set",
        ),
        (target("good", "${CORDON_NO_URL}/v1"), "environment variable CORDON_NO_URL is not set"),
        (target("good", m["good"], secret_key_ref={"store": "../escape"}), "is not a plain name"),
    ]:
        path.write_text(
            yaml.safe_dump({"pack": {"name": "failover"}, "providers": {"targets": [bad_target]}})
        )
        publish_pack(endpoints, path)
        eventually(lambda reason=reason: reason in (status(drill)["last_rejection"] or ""))
        assert status(drill)["active_revision"] == good
    assert ask(drill, endpoints).parse().choices[0].message.content == "echo: hi"
