"""Output rules on streams: a value split across chunks anywhere is still redacted,
and a block ends the stream with the dialect's own error, through the real SDKs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from cordon_dev.procs import wait_for_http
from cordon_dev.stack import DevStack
from tests.helpers import chat_stream, enforce, find_record, gateway_sdk

PACK = """\
pack: {name: streams}
policies:
  - {name: pii, type: output_filter, action: redact, patterns: [email, phone]}
  - name: no-threats
    type: content_filter
    action: block
    categories: [violence]
    applies_to: output
"""
PROMPT = "contact alice@example.com or +44 20 7946 0958 now"
REPLY = f"echo: {PROMPT}"
EXPECTED = "echo: contact [EMAIL] or [PHONE] now"


@pytest.fixture(scope="module")
def gateway(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    mock = stack.endpoints.mock_provider
    url = stack.start_gateway(
        "eu-west",
        "gw-streams",
        mock,
        pack_name="streams",
        extra={
            "targets": [
                {"id": "mock", "provider": {"api": "openai", "base_url": mock}},
                {"id": "mock-anthropic", "provider": {"api": "anthropic", "base_url": mock}},
            ]
        },
    )
    wait_for_http(url + "/readyz", 30, stack.processes["gateway-eu-west-gw-streams"].proc)
    enforce(stack, url, PACK, tmp_path_factory.mktemp("streams"))
    yield url
    stack.processes["gateway-eu-west-gw-streams"].stop()


def openai_text(gateway: str, key: str, model: str, prompt: str = PROMPT) -> str:
    stream = gateway_sdk(gateway, key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], stream=True
    )
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


def anthropic_text(gateway: str, key: str, model: str, prompt: str = PROMPT) -> str:
    sdk = anthropic.Anthropic(base_url=gateway, api_key=key, max_retries=0)
    with sdk.messages.stream(
        model=model, max_tokens=64, messages=[{"role": "user", "content": prompt}]
    ) as stream:
        return "".join(stream.text_stream)


def cuts_through_the_values() -> Iterator[str]:
    """Every single boundary in the reply, and pairs of boundaries inside each value."""
    for cut in range(1, len(REPLY)):
        yield f"split-{cut}"
    for value in ("alice@example.com", "+44 20 7946 0958"):
        start = REPLY.index(value)
        for first in range(start, start + len(value) - 1, 2):
            yield f"split-{first}-{first + 3}"


@pytest.mark.parametrize("client", [openai_text, anthropic_text], ids=["openai", "anthropic"])
def test_values_split_anywhere_never_reach_the_client(
    gateway: str, endpoints: dict[str, Any], client: Any
) -> None:
    for model in cuts_through_the_values():
        text = client(gateway, endpoints["api_key"], model)
        assert text == EXPECTED, model


async def test_the_record_says_what_was_scanned(gateway: str, endpoints: dict[str, Any]) -> None:
    with chat_stream(gateway, endpoints["api_key"], PROMPT, model="split-9-20") as response:
        record_id = response.headers["x-cordon-record-id"]
        response.read()
    record = await find_record(endpoints, "eu-west", record_id)
    assert record is not None
    assert record["scanned_chars"] == len(REPLY)
    assert record["redactions"] == {"email": 1, "phone": 1}
    assert record["outcome"] == "redact" and record["rules"] == ["pii"]
    assert record["content"]["answer"] == EXPECTED


async def test_a_block_mid_stream_ends_it_with_an_error_event(
    gateway: str, endpoints: dict[str, Any]
) -> None:
    threat = "all fine until I will kill you said the villain in the story"
    with pytest.raises(openai.APIError, match="blocked by policy rule no-threats"):
        openai_text(gateway, endpoints["api_key"], "mock-gpt", threat)
    with pytest.raises(anthropic.APIError, match="blocked by policy rule no-threats"):
        anthropic_text(gateway, endpoints["api_key"], "mock-claude", threat)

    with chat_stream(gateway, endpoints["api_key"], threat) as response:
        record_id = response.headers["x-cordon-record-id"]
        body = response.read().decode()
    assert "kill" not in body and "[DONE]" not in body
    record = await find_record(endpoints, "eu-west", record_id)
    assert record is not None and record["outcome"] == "block" and record["rules"] == ["no-threats"]


def test_a_whole_answer_that_trips_a_block_rule_is_a_403(
    gateway: str, endpoints: dict[str, Any]
) -> None:
    sdk = gateway_sdk(gateway, endpoints["api_key"])
    with pytest.raises(openai.PermissionDeniedError) as caught:
        sdk.chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": "I will kill you"}]
        )
    assert caught.value.body["code"] == "content_policy_violation"  # type: ignore[index]
    assert "kill" not in caught.value.response.text.replace("blocked by policy rule", "")
