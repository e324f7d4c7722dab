"""What no rule can read is never released: a provider's answer that is not the JSON or
the stream its API promises, and error answers, which go through the output rules too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from cordon_dev.procs import wait_for_http
from cordon_dev.stack import DevStack
from tests.helpers import chat_stream, enforce, find_record, gateway_sdk

PACK = """\
pack: {name: unreadable}
policies:
  - {name: pii, type: output_filter, action: redact, patterns: [email]}
"""
PROMPT = "mail bob@example.com today"


@pytest.fixture(scope="module")
def gateway(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A replica whose only provider is a mock of its own, made to misbehave per test."""
    assert stack.topology is not None
    mock = stack.start_mock("mock-unreadable")
    name = "gateway-eu-west-gw-unreadable"
    url = stack.start_gateway(
        "eu-west",
        "gw-unreadable",
        mock,
        pack_name="unreadable",
        extra={"targets": [{"id": "odd", "provider": {"api": "openai", "base_url": mock}}]},
    )
    wait_for_http(url + "/readyz", 30, stack.processes[name].proc)
    enforce(stack, url, PACK, tmp_path_factory.mktemp("unreadable"))
    yield url, mock.removesuffix("/v1")
    stack.processes[name].stop()
    stack.processes["mock-unreadable"].stop()


def _behave(mock: str, mode: str) -> None:
    assert httpx.post(mock + "/mock/behaviour", json={"mode": mode}).status_code == 200


async def test_an_answer_that_is_not_json_is_refused_and_recorded(
    gateway: tuple[str, str], endpoints: dict[str, Any]
) -> None:
    url, mock = gateway
    _behave(mock, "garbage")
    try:
        for stream in (False, True):
            with pytest.raises(openai.APIStatusError) as caught:
                gateway_sdk(url, endpoints["api_key"]).chat.completions.create(
                    model="mock-gpt",
                    stream=stream,
                    messages=[{"role": "user", "content": PROMPT}],
                )
            assert caught.value.status_code == 502
            assert "bob@example.com" not in caught.value.response.text
            assert isinstance(caught.value.body, dict)
            assert caught.value.body["code"] == "upstream_unreadable"
            record_id = caught.value.response.headers["x-cordon-record-id"]
            record = await find_record(endpoints, "eu-west", record_id)
            assert record is not None and record["status"] == 502
            assert record["error"] == "upstream_unreadable"
    finally:
        _behave(mock, "ok")


def test_a_stream_event_that_is_not_json_ends_the_stream_unreleased(
    gateway: tuple[str, str], endpoints: dict[str, Any]
) -> None:
    url, mock = gateway
    _behave(mock, "garbage-stream")
    try:
        with chat_stream(url, endpoints["api_key"], PROMPT) as response:
            text = "".join(response.iter_text())
    finally:
        _behave(mock, "ok")
    assert "bob@example.com" not in text
    assert '"code":"upstream_broken"' in text.replace(" ", "")
    assert "data: [DONE]" not in text


def test_an_error_answer_goes_through_the_output_rules(
    gateway: tuple[str, str], endpoints: dict[str, Any]
) -> None:
    url, mock = gateway
    _behave(mock, "echo-error")
    try:
        with pytest.raises(openai.BadRequestError) as caught:
            gateway_sdk(url, endpoints["api_key"]).chat.completions.create(
                model="mock-gpt", messages=[{"role": "user", "content": PROMPT}]
            )
    finally:
        _behave(mock, "ok")
    assert "bob@example.com" not in caught.value.response.text
    assert "[EMAIL]" in caught.value.message
