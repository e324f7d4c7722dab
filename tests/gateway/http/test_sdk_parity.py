"""Through the gateway, the real SDKs get what they get from the provider directly."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.helpers import chat_stream, gateway_sdk, stored_record

PROMPT = [{"role": "user", "content": "the quick brown fox"}]


@pytest.fixture(scope="module")
def via(endpoints: dict[str, Any]) -> openai.OpenAI:
    return gateway_sdk(endpoints["gateways"]["eu-west"], endpoints["api_key"])


@pytest.fixture(scope="module")
def direct(endpoints: dict[str, Any]) -> openai.OpenAI:
    return openai.OpenAI(base_url=endpoints["mock_provider"], api_key="direct", max_retries=0)


@pytest.fixture(scope="module")
def claude_via(endpoints: dict[str, Any]) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=endpoints["gateways"]["eu-west"], api_key=endpoints["api_key"], max_retries=0
    )


@pytest.fixture(scope="module")
def claude_direct(endpoints: dict[str, Any]) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=endpoints["mock_provider"].removesuffix("/v1"), api_key="direct", max_retries=0
    )


def _without(dump: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in dump.items() if k not in keys}


def test_chat_completion_matches_direct(via: openai.OpenAI, direct: openai.OpenAI) -> None:
    through = via.chat.completions.create(model="mock-gpt", messages=PROMPT)
    straight = direct.chat.completions.create(model="mock-gpt", messages=PROMPT)
    assert _without(through.model_dump(), "created") == _without(straight.model_dump(), "created")


def test_streamed_chat_matches_direct(via: openai.OpenAI, direct: openai.OpenAI) -> None:
    def collect(client: openai.OpenAI) -> tuple[str, list[str | None]]:
        chunks = list(
            client.chat.completions.create(
                model="mock-gpt",
                messages=PROMPT,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
        return text, finishes

    assert (
        collect(via)
        == collect(direct)
        == (
            "echo: the quick brown fox",
            [None] * 5 + ["stop"],
        )
    )


def test_tools_round_trip_passes_through_untouched(
    via: openai.OpenAI, direct: openai.OpenAI
) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "parameters": {"type": "object", "properties": {"echo": {"type": "string"}}},
            },
        }
    ]
    through = via.chat.completions.create(model="mock-gpt", messages=PROMPT, tools=tools)  # type: ignore[arg-type]
    straight = direct.chat.completions.create(model="mock-gpt", messages=PROMPT, tools=tools)  # type: ignore[arg-type]
    call = through.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.model_dump() == straight.choices[0].message.tool_calls[0].model_dump()  # type: ignore[index]
    follow_up = [
        *PROMPT,
        through.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "42"},
        {"role": "user", "content": "and so?"},
    ]
    answer = via.chat.completions.create(model="mock-gpt", messages=follow_up)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "echo: and so?"


def test_response_format_is_passed_through(endpoints: dict[str, Any], via: openai.OpenAI) -> None:
    raw = via.chat.completions.with_raw_response.create(
        model="mock-gpt", messages=PROMPT, response_format={"type": "json_object"}
    )
    assert raw.parse().choices[0].message.content == "echo: the quick brown fox"


def test_embeddings_match_direct(via: openai.OpenAI, direct: openai.OpenAI) -> None:
    through = via.embeddings.create(model="mock-embed", input=["one", "three"])
    straight = direct.embeddings.create(model="mock-embed", input=["one", "three"])
    assert through.model_dump() == straight.model_dump()
    assert [d.embedding[0] for d in through.data] == [3.0, 5.0]


def test_responses_match_direct(via: openai.OpenAI, direct: openai.OpenAI) -> None:
    through = via.responses.create(model="mock-gpt", input="tell me a story")
    straight = direct.responses.create(model="mock-gpt", input="tell me a story")
    assert through.output_text == straight.output_text == "echo: tell me a story"
    assert _without(through.model_dump(), "created_at") == _without(
        straight.model_dump(), "created_at"
    )


def test_streamed_responses_match_direct(via: openai.OpenAI, direct: openai.OpenAI) -> None:
    def collect(client: openai.OpenAI) -> tuple[str, str]:
        deltas = []
        final = ""
        for event in client.responses.create(model="mock-gpt", input="stream it", stream=True):
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            if event.type == "response.completed":
                final = event.response.output_text
        return "".join(deltas), final

    assert collect(via) == collect(direct) == ("echo: stream it", "echo: stream it")


def test_models_lists_what_the_pack_routes(
    via: openai.OpenAI, claude_via: anthropic.Anthropic
) -> None:
    ids = [m.id for m in via.models.list()]
    assert "mock-gpt" in ids and "mock-embed" in ids and "mock-claude" not in ids
    assert "mock-claude" in [m.id for m in claude_via.models.list()]


def test_anthropic_message_matches_direct(
    claude_via: anthropic.Anthropic, claude_direct: anthropic.Anthropic
) -> None:
    kwargs: dict[str, Any] = {"model": "mock-claude", "max_tokens": 64, "messages": PROMPT}
    through = claude_via.messages.create(**kwargs)
    straight = claude_direct.messages.create(**kwargs)
    assert through.model_dump() == straight.model_dump()
    assert through.content[0].text == "echo: the quick brown fox"  # type: ignore[union-attr]


def test_streamed_anthropic_message_matches_direct(
    claude_via: anthropic.Anthropic, claude_direct: anthropic.Anthropic
) -> None:
    def collect(client: anthropic.Anthropic) -> tuple[str, dict[str, Any]]:
        with client.messages.stream(model="mock-claude", max_tokens=64, messages=PROMPT) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        return text, final.model_dump()

    assert collect(claude_via) == collect(claude_direct)


def test_anthropic_errors_come_in_anthropic_shape(
    endpoints: dict[str, Any], claude_via: anthropic.Anthropic
) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude_via.messages.create(model="no-such-model", max_tokens=8, messages=PROMPT)
    assert caught.value.body == {
        "type": "error",
        "error": {
            "type": "not_found_error",
            "message": "model 'no-such-model' is not served by this gateway",
        },
    }
    wrong_key = anthropic.Anthropic(
        base_url=endpoints["gateways"]["eu-west"], api_key="nope", max_retries=0
    )
    with pytest.raises(anthropic.AuthenticationError):
        wrong_key.messages.create(model="mock-claude", max_tokens=8, messages=PROMPT)


def test_unknown_model_is_a_404_in_openai_shape(via: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        via.chat.completions.create(model="gpt-unknown", messages=PROMPT)
    assert caught.value.body["code"] == "model_not_found"  # type: ignore[index]


async def test_stream_record_is_committed_before_the_last_event(endpoints: dict[str, Any]) -> None:
    body = {"model": "mock-gpt", "messages": PROMPT, "stream": True}
    gateway = endpoints["gateways"]["eu-west"]
    with chat_stream(gateway, endpoints["api_key"], body=body) as response:
        record_id = response.headers["x-cordon-record-id"]
        body = response.read().decode()
    receipt = body.index(": cordon-record-seq ")
    assert receipt < body.index("data: [DONE]")
    seq = int(body[receipt:].split()[2])
    record = await stored_record(endpoints, "eu-west", seq)
    assert record["id"] == record_id and record["stream"] is True
    assert record["content"]["answer"] == "echo: the quick brown fox"
    assert record["outcome"] == "allow" and record["status"] == 200


def test_callers_key_is_never_sent_upstream(endpoints: dict[str, Any], via: openai.OpenAI) -> None:
    via.chat.completions.create(model="mock-gpt", messages=PROMPT)
    seen = httpx.get(endpoints["mock_provider"].removesuffix("/v1") + "/mock/stats").json()["auth"]
    assert endpoints["api_key"] not in seen["authorization"] + seen["x-api-key"]
