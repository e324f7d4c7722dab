"""The pack's external classifier: its verdict blocks, its silence follows the fail mode."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from cordon_dev.procs import wait_for_http
from cordon_dev.stack import DevStack
from tests.helpers import (
    eventually,
    find_record,
    policy_status,
    publish_pack,
    published_revision,
    sdk_chat,
)


@pytest.fixture(scope="module")
def replica(stack: DevStack) -> Iterator[dict[str, Any]]:
    classifier = stack.start_mock("mock-classifier")
    url = stack.start_gateway(
        "eu-west",
        "gw-classified",
        stack.endpoints.mock_provider,
        pack_name="classified",
        env={"CLASSIFIER_BASE": classifier.removesuffix("/v1")},
    )
    wait_for_http(url + "/readyz", 30, stack.processes["gateway-eu-west-gw-classified"].proc)
    yield {"url": url, "classifier": classifier.removesuffix("/v1")}
    stack.processes["gateway-eu-west-gw-classified"].stop()


def activate(
    replica: dict[str, Any], endpoints: dict[str, Any], tmp_path: Path, fail_mode: str
) -> None:
    document = {
        "pack": {"name": "classified"},
        "classifier": {
            "url": "${CLASSIFIER_BASE}/v1/classify",
            "categories": ["fraud"],
            "timeout_ms": 300,
            "fail_mode": fail_mode,
            "threshold": 0.9,
        },
    }
    path = tmp_path / f"classified-{fail_mode}.yaml"
    path.write_text(yaml.safe_dump(document))
    revision = published_revision(publish_pack(endpoints, path))
    eventually(
        lambda: (
            policy_status(replica["url"], endpoints["tokens"]["admin"])["active_revision"]
            == revision
        )
    )


async def test_a_verdict_blocks_and_names_the_category(
    replica: dict[str, Any], endpoints: dict[str, Any], tmp_path: Path
) -> None:
    activate(replica, endpoints, tmp_path, "closed")
    assert (
        sdk_chat(replica["url"], endpoints["api_key"], "what is our refund policy")
        .parse()
        .choices[0]
        .message.content.startswith("echo:")
    )
    with pytest.raises(openai.PermissionDeniedError) as caught:
        sdk_chat(replica["url"], endpoints["api_key"], "please wire the money tonight")
    record = await find_record(
        endpoints, "eu-west", caught.value.response.headers["x-cordon-record-id"]
    )
    assert (
        record is not None
        and record["outcome"] == "block"
        and record["rules"] == ["classifier:fraud"]
    )


async def test_silence_fails_closed_or_open_as_the_pack_says(
    replica: dict[str, Any], endpoints: dict[str, Any], tmp_path: Path
) -> None:
    httpx.post(replica["classifier"] + "/mock/behaviour", json={"mode": "slow"})
    try:
        activate(replica, endpoints, tmp_path, "closed")
        with pytest.raises(openai.APIStatusError) as caught:
            sdk_chat(replica["url"], endpoints["api_key"], "hello")
        assert caught.value.status_code == 503
        assert caught.value.body["code"] == "classifier_unavailable"  # type: ignore[index]

        activate(replica, endpoints, tmp_path, "open")
        raw = sdk_chat(replica["url"], endpoints["api_key"], "hello")
        assert raw.parse().choices[0].message.content == "echo: hello"
        record = await find_record(endpoints, "eu-west", raw.headers["x-cordon-record-id"])
        assert record is not None and record["flags"] == ["classifier-unavailable"]
    finally:
        httpx.post(replica["classifier"] + "/mock/behaviour", json={"mode": "ok"})
