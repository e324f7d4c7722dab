"""Provider egress over HTTPS: certificates verified against the configured CA, the
host named (SNI) and checked, through the real SDK, streamed and not."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from cordon.dev.procs import wait_for_http
from cordon.dev.stack import DevStack
from tests.helpers import find_record


@pytest.fixture(scope="module")
def over_tls(stack: DevStack) -> Iterator[str]:
    """A replica whose `mock-gpt` is served over HTTPS by a certificate for its host,
    and whose `mock-gpt-mini` by a certificate for another name."""
    valid = stack.start_mock("mock-tls", tls="valid")
    wrong = stack.start_mock("mock-wrong-host", tls="wrong-host")
    name = "gateway-eu-west-gw-tls"
    url = stack.start_gateway(
        "eu-west",
        "gw-tls",
        valid,
        extra={
            "targets": [
                {
                    "id": "tls",
                    "provider": {"api": "openai", "base_url": valid},
                    "models": ["mock-gpt"],
                },
                {
                    "id": "wrong-host",
                    "provider": {"api": "openai", "base_url": wrong},
                    "models": ["mock-gpt-mini"],
                },
            ]
        },
    )
    wait_for_http(url + "/readyz", 30, stack.processes[name].proc)
    yield url
    for process in (name, "mock-tls", "mock-wrong-host"):
        stack.processes[process].stop()


def _sdk(url: str, endpoints: dict[str, Any]) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=endpoints["api_key"], max_retries=0)


def test_a_provider_over_https_answers_whole_and_streamed(
    over_tls: str, endpoints: dict[str, Any]
) -> None:
    sdk = _sdk(over_tls, endpoints)
    messages: Any = [{"role": "user", "content": "over tls"}]
    answer = sdk.chat.completions.create(model="mock-gpt", messages=messages)
    assert answer.choices[0].message.content == "echo: over tls"
    stream = sdk.chat.completions.create(model="mock-gpt", messages=messages, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "echo: over tls"


async def test_a_certificate_for_another_host_is_refused(
    over_tls: str, endpoints: dict[str, Any]
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        _sdk(over_tls, endpoints).chat.completions.create(
            model="mock-gpt-mini", messages=[{"role": "user", "content": "to the wrong host"}]
        )
    assert caught.value.status_code == 502
    record_id = caught.value.response.headers["x-cordon-record-id"]
    record = await find_record(endpoints, "eu-west", record_id)
    assert record is not None and record["status"] == 502
    assert record["attempts"] == ["wrong-host:connect"]  # the handshake failed, not the call
