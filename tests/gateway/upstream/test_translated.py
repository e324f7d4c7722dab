"""Every new dialect (Bedrock's Converse and ConverseStream, Gemini's generateContent and
streamGenerateContent, Vertex AI with a service account's token, and Azure OpenAI, which
an Anthropic caller reaches translated), through the real `openai` and `anthropic` SDKs:
a chat, a stream, a tool call and an embedding, with an email redacted in the translated
request and in the translated answer, and the records naming the target and its region.
The mocks speak each provider's wire (`cordon_dev.mock_clouds`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from cordon_dev.google_token import service_account_key
from cordon_dev.inprocess import (
    InProcessGateway,
    in_process_gateway,
    serve_in_loop,
    signed_pack,
    wait_for,
)
from cordon_dev.mock_provider import MockProvider
from tests.gateway.upstream.translated import (
    EMAIL_RULES,
    anthropic_sdk,
    bedrock_target,
    fronting,
    gemini_target,
    sdk,
)

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]

EMAIL = "ana.translated@example.com"
KEYS = {"access_key_id": "AKIDEXAMPLE", "secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCY"}
OUTPUT_ONLY = [EMAIL_RULES[1]]  # the email reaches the provider, and is redacted coming back
TOOL = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object"}},
}
Served = tuple[InProcessGateway, MockProvider, str]
Target = Callable[[str], dict[str, Any]]


def _service_account(token_uri: str) -> str:
    return service_account_key(token_uri)[0]


def _targets(monkeypatch: pytest.MonkeyPatch) -> dict[str, Target]:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("CORDON_PROVIDER_BEDROCK", json.dumps(KEYS))
    monkeypatch.setenv("CORDON_PROVIDER_GEMINI", "gemini-key-1")
    monkeypatch.setenv("CORDON_PROVIDER_AZURE", "azure-key-1")

    def vertex(base: str) -> dict[str, Any]:
        monkeypatch.setenv("CORDON_PROVIDER_VERTEX", _service_account(f"{base}/token"))
        where = "v1/projects/cordon-test/locations/europe-west4/publishers/google"
        provider = {"api": "gemini", "base_url": f"{base}/{where}", "auth": "service-account"}
        secret = {"env": "CORDON_PROVIDER_VERTEX"}
        return {"id": "vertex-eu", "provider": provider, "secret_key_ref": secret} | {
            "region": "europe-west4"
        }

    def azure(base: str) -> dict[str, Any]:
        provider = {"api": "azure-openai", "base_url": f"{base}/openai/deployments"}
        secret = {"env": "CORDON_PROVIDER_AZURE"}
        models = ["gpt-4o", "text-embedding-3-small"]  # listed: Anthropic's callers too
        return {"id": "azure-eu", "provider": provider, "secret_key_ref": secret} | {
            "region": "westeurope",
            "models": models,
        }

    return {"bedrock": bedrock_target, "gemini": gemini_target, "vertex": vertex, "azure": azure}


TRANSLATED = ["bedrock", "gemini", "vertex"]  # for callers of either API
DIALECTS = [*TRANSLATED, "azure"]  # Azure: OpenAI's wire, translated for Anthropic callers
REGIONS = {"bedrock": "eu-central-1", "gemini": "europe-west4", "vertex": "europe-west4"}
REGIONS["azure"] = "westeurope"
MODELS = {"bedrock": "anthropic.claude-3-haiku", "gemini": "gemini-2.0-flash"}
MODELS |= {"vertex": MODELS["gemini"], "azure": "gpt-4o"}


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def both_ways(
    dialect: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Served]:
    """The email rules on input and output."""
    async with fronting(tmp_path, _targets(monkeypatch)[dialect]) as served:
        yield served


@pytest.fixture
async def answers_only(
    dialect: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Served]:
    """The email rule on output only: the provider echoes the email, the caller must
    not see it."""
    async with fronting(tmp_path, _targets(monkeypatch)[dialect], OUTPUT_ONLY) as served:
        yield served


def _decisions(gateway: InProcessGateway) -> list[dict[str, Any]]:
    return [r for r in gateway.records() if r["kind"] == "decision"]


def _routed(gateway: InProcessGateway, dialect: str) -> None:
    """Every call's record names the target and the region it serves from."""
    routes = {(r["route"], r["route_region"]) for r in _decisions(gateway)}
    assert routes == {(f"{dialect}-eu", REGIONS[dialect])}


async def test_openai_chat_redacts_the_request_and_names_the_route(
    dialect: str, both_ways: Served
) -> None:
    gateway, mock, url = both_ways
    answer = await sdk(url, gateway).chat.completions.create(
        model=MODELS[dialect], messages=[{"role": "user", "content": f"mail {EMAIL}"}]
    )
    assert answer.choices[0].message.content == "echo: mail [EMAIL]"
    assert answer.usage is not None and answer.usage.completion_tokens
    assert EMAIL not in json.dumps(mock.last_request)
    asked = mock.seen_auth["deployment" if dialect == "azure" else "model"]
    assert asked == MODELS[dialect]
    if dialect == "vertex":  # the service account's token, fetched once from the mock's endpoint
        assert mock.seen_auth["authorization"] in mock.issued_tokens
        assert mock.stats["google token"] == 1 and not mock.seen_auth["x-goog-api-key"]
        assert mock.seen_auth["path"].startswith("/v1/projects/cordon-test/locations/europe-west4/")
    _routed(gateway, dialect)


async def test_openai_stream_is_translated_and_its_answer_redacted(
    dialect: str, answers_only: Served
) -> None:
    gateway, mock, url = answers_only
    stream = await sdk(url, gateway).chat.completions.create(
        model=MODELS[dialect],
        messages=[{"role": "user", "content": f"mail {EMAIL} now"}],
        stream=True,
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: mail [EMAIL] now"
    assert len(chunks) > 3  # released as it came, not gathered into one
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert EMAIL in json.dumps(mock.last_request)  # no input rule here: it reached the mock
    (record,) = _decisions(gateway)
    assert record["stream"] is True and record["outcome"] == "redact"
    _routed(gateway, dialect)


async def test_openai_tool_call_whole_and_streamed(dialect: str, both_ways: Served) -> None:
    gateway, mock, url = both_ways
    client = sdk(url, gateway)
    asked = [{"role": "user", "content": f"who is {EMAIL}"}]
    called = await client.chat.completions.create(
        model=MODELS[dialect], messages=asked, tools=[TOOL]
    )
    call = called.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert called.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "lookup"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"echo": "echo: who is [EMAIL]"}  # type: ignore[union-attr]
    stream = await client.chat.completions.create(
        model=MODELS[dialect], messages=asked, tools=[TOOL], stream=True
    )
    chunks = [chunk async for chunk in stream]
    pieces = [
        t.function.arguments or ""
        for c in chunks
        if c.choices
        for t in c.choices[0].delta.tool_calls or []
        if t.function is not None
    ]
    assert json.loads("".join(pieces)) == {"echo": "echo: who is [EMAIL]"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert EMAIL not in json.dumps(mock.last_request)
    _routed(gateway, dialect)


async def test_anthropic_messages_chat_stream_and_tool_use(dialect: str, both_ways: Served) -> None:
    gateway, mock, url = both_ways
    client = anthropic_sdk(url, gateway)
    said = await client.messages.create(
        model=MODELS[dialect],
        max_tokens=50,
        system="be brief",
        messages=[{"role": "user", "content": f"mail {EMAIL}"}],
    )
    assert said.content[0].type == "text" and said.content[0].text == "echo: mail [EMAIL]"
    assert said.stop_reason == "end_turn" and said.usage.output_tokens > 0
    assert EMAIL not in json.dumps(mock.last_request)
    async with client.messages.stream(
        model=MODELS[dialect], max_tokens=50, messages=[{"role": "user", "content": "hi there"}]
    ) as stream:
        streamed = "".join([text async for text in stream.text_stream])
        final = await stream.get_final_message()
    assert streamed == "echo: hi there" and final.stop_reason == "end_turn"
    tool = {"name": "lookup", "input_schema": {"type": "object"}}
    asked = [{"role": "user", "content": f"who is {EMAIL}"}]
    used = await client.messages.create(
        model=MODELS[dialect],
        max_tokens=50,
        messages=asked,
        tools=[tool],  # type: ignore[list-item]
    )
    assert used.stop_reason == "tool_use"
    block = used.content[0]
    assert block.type == "tool_use" and block.input == {"echo": "echo: who is [EMAIL]"}
    result = {"type": "tool_result", "tool_use_id": block.id, "content": f"{EMAIL} is the CFO"}
    followed = [
        *asked,
        {"role": "assistant", "content": used.content},
        {"role": "user", "content": [result]},
    ]
    after = await client.messages.create(
        model=MODELS[dialect],
        max_tokens=50,
        messages=followed,
        tools=[tool],  # type: ignore[arg-type, list-item]
    )
    assert after.content[0].text == "tool said: [EMAIL] is the CFO"  # type: ignore[union-attr]
    assert EMAIL not in json.dumps(mock.last_request)
    _routed(gateway, dialect)


async def test_anthropic_stream_answer_is_redacted(dialect: str, answers_only: Served) -> None:
    gateway, _, url = answers_only
    async with anthropic_sdk(url, gateway).messages.stream(
        model=MODELS[dialect], max_tokens=50, messages=[{"role": "user", "content": f"to {EMAIL}"}]
    ) as stream:
        streamed = "".join([text async for text in stream.text_stream])
    assert streamed == "echo: to [EMAIL]"
    _routed(gateway, dialect)


EMBEDDERS = {"bedrock": "amazon.titan-embed-text-v2:0", "gemini": "text-embedding-004"}
EMBEDDERS |= {"vertex": EMBEDDERS["gemini"], "azure": "text-embedding-3-small"}


async def test_openai_embeddings(dialect: str, both_ways: Served) -> None:
    """Bedrock: Titan through InvokeModel, a call per text; Gemini: batchEmbedContents;
    Vertex AI: predict; Azure: its deployment's embeddings."""
    gateway, mock, url = both_ways
    answer = await sdk(url, gateway).embeddings.create(
        model=EMBEDDERS[dialect], input=[f"mail {EMAIL}", "second"]
    )
    assert [len(d.embedding) for d in answer.data] == [3, 3]
    assert [d.index for d in answer.data] == [0, 1]
    assert EMAIL not in json.dumps(mock.last_request)
    _routed(gateway, dialect)


@pytest.mark.parametrize("dialect", ["bedrock", "gemini"])  # Azure's stream is not translated
async def test_a_broken_stream_is_an_error_the_caller_sees_and_the_record_keeps(
    dialect: str, both_ways: Served
) -> None:
    gateway, mock, url = both_ways
    mock.mode = "break-stream"
    stream = await sdk(url, gateway).chat.completions.create(
        model=MODELS[dialect], messages=[{"role": "user", "content": "a b c d e"}], stream=True
    )
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass
    (record,) = _decisions(gateway)
    assert record["outcome"] == "error"


async def test_a_provider_error_comes_back_in_the_callers_shape(
    dialect: str, both_ways: Served
) -> None:
    gateway, mock, url = both_ways
    mock.mode = "500"
    with pytest.raises(openai.InternalServerError):
        await sdk(url, gateway).chat.completions.create(
            model=MODELS[dialect], messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(anthropic.APIStatusError) as failed:
        await anthropic_sdk(url, gateway).messages.create(
            model=MODELS[dialect], max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert failed.value.status_code >= 500


@pytest.mark.parametrize("dialect", ["bedrock", "gemini"])  # Vertex streams as Gemini does
@pytest.mark.parametrize("mode", ["garbage-stream", "error-stream", "oversize-stream"])
async def test_a_hostile_stream_ends_in_an_error_that_quotes_nothing_unfiltered(
    dialect: str, answers_only: Served, mode: str
) -> None:
    """A frame failing its checksum, a chunk that is not JSON, the provider's error
    whose message quotes the prompt, an event that never ends or a frame declaring
    20 MiB: the caller's stream ends in an error, the record says `error`, and the
    provider's message is neither in the stream nor the record."""
    gateway, mock, url = answers_only
    mock.mode = mode
    stream = await sdk(url, gateway).chat.completions.create(
        model=MODELS[dialect], messages=[{"role": "user", "content": f"to {EMAIL}"}], stream=True
    )
    with pytest.raises(openai.APIError) as broke:
        async for _ in stream:
            pass
    assert EMAIL not in str(broke.value) and "throttled" not in str(broke.value)
    (record,) = _decisions(gateway)
    assert record["outcome"] == "error" and "throttled" not in json.dumps(record)


@pytest.mark.parametrize("dialect", ["bedrock", "gemini"])
async def test_tool_choice_is_translated(dialect: str, both_ways: Served) -> None:
    """`tool_choice` required or naming a tool reaches the provider as its own setting."""
    gateway, mock, url = both_ways
    named = {"type": "function", "function": {"name": "lookup"}}
    await sdk(url, gateway).chat.completions.create(
        model=MODELS[dialect],
        messages=[{"role": "user", "content": "hi"}],
        tools=[TOOL],
        tool_choice=named,  # type: ignore[arg-type]
    )
    sent = mock.last_request
    if dialect == "bedrock":
        assert sent["toolConfig"]["toolChoice"] == {"tool": {"name": "lookup"}}
    else:
        calling = {"mode": "ANY", "allowedFunctionNames": ["lookup"]}
        assert sent["toolConfig"] == {"functionCallingConfig": calling}
    await anthropic_sdk(url, gateway).messages.create(
        model=MODELS[dialect],
        max_tokens=20,
        messages=[{"role": "user", "content": "hi"}],
        tools=[{"name": "lookup", "input_schema": {"type": "object"}}],
        tool_choice={"type": "any"},
    )
    sent = mock.last_request
    if dialect == "bedrock":
        assert sent["toolConfig"]["toolChoice"] == {"any": {}}
    else:
        assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


@pytest.mark.parametrize("dialect", ["bedrock"])  # every wire reads it in messages.to_chat
async def test_content_the_translation_cannot_carry_is_refused_not_dropped(
    dialect: str, both_ways: Served
) -> None:
    """An image block cannot become a chat message for these providers: a 400 in
    Anthropic's shape saying so, a record, and no provider call."""
    gateway, mock, url = both_ways
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"},
    }
    with pytest.raises(anthropic.BadRequestError) as refused:
        await anthropic_sdk(url, gateway).messages.create(
            model=MODELS[dialect],
            max_tokens=20,
            messages=[{"role": "user", "content": [image, {"type": "text", "text": "what is it"}]}],  # type: ignore[list-item]
        )
    assert "content of type image is not translated" in refused.value.message
    assert not mock.last_request
    (record,) = _decisions(gateway)
    assert record["status"] == 400


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        (_service_account("http://169.254.169.254/token"), "link-local"),
        ("AIza-not-a-key-file", "not JSON"),
    ],
    ids=["token-uri-at-a-metadata-address", "an-api-key"],
)
async def test_a_service_account_whose_token_uri_egress_refuses_refuses_the_pack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret: str, reason: str
) -> None:
    """The key's `token_uri` is where the gateway will send a signed grant: it passes
    the egress policy at activation like any provider URL, and a secret that is no
    service-account key refuses the pack then, never a call."""
    monkeypatch.setenv("CORDON_PROVIDER_VERTEX", secret)
    async with serve_in_loop(MockProvider()) as base, in_process_gateway(tmp_path) as gateway:
        target = _targets(monkeypatch)["vertex"](base)
        monkeypatch.setenv("CORDON_PROVIDER_VERTEX", secret)  # what the target set is replaced
        document = {"pack": {"name": "default"}, "providers": {"targets": [target]}}
        gateway.backplane.offer(signed_pack(document, gateway.owner, 2))
        await wait_for(lambda: gateway.runtime.packs.last_rejection is not None)
        rejection = gateway.runtime.packs.last_rejection
    assert rejection is not None and reason in rejection.reason
    assert "PRIVATE KEY" not in rejection.reason and "AIza" not in rejection.reason


@pytest.mark.parametrize(
    ("dialect", "secret", "reason"),
    [
        ("bedrock", "AKIDEXAMPLE:not-json", "a Bedrock secret is JSON"),
        ("gemini", _service_account("https://oauth2.example/token"), "service-account key"),
    ],
    ids=["bedrock-secret-no-key-pair", "gemini-key-file-as-api-key"],
)
async def test_a_translated_targets_unusable_secret_refuses_the_pack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dialect: str, secret: str, reason: str
) -> None:
    """A Bedrock secret that is no key pair, or a service account's key file given as
    Gemini's API key (it would travel as a header, private key and all): the pack is
    refused at activation, quoting neither, and no call is ever tried with it."""
    targets = _targets(monkeypatch)
    name = "CORDON_PROVIDER_" + dialect.upper()
    monkeypatch.setenv(name, secret)
    async with serve_in_loop(MockProvider()) as base, in_process_gateway(tmp_path) as gateway:
        document = {"pack": {"name": "default"}, "providers": {"targets": [targets[dialect](base)]}}
        gateway.backplane.offer(signed_pack(document, gateway.owner, 2))
        await wait_for(lambda: gateway.runtime.packs.last_rejection is not None)
        rejection = gateway.runtime.packs.last_rejection
    assert rejection is not None and reason in rejection.reason
    assert "PRIVATE KEY" not in rejection.reason and "not-json" not in rejection.reason


HIDDEN = [
    ("anthropic", {"role": "user", "content": [{"type": "text", "text": [f"mail {EMAIL}"]}]}),
    ("anthropic", {"role": "user", "content": [{"type": "text", "text": {"t": EMAIL}}]}),
    (
        "anthropic",
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": EMAIL}],
        },
    ),
    ("openai", {"role": "user", "content": [{"type": "text", "text": {"t": EMAIL}}]}),
    (
        "openai",
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "f", "arguments": {"to": EMAIL}},
                }
            ],
        },
    ),
]


@pytest.mark.parametrize("dialect", TRANSLATED)
@pytest.mark.parametrize(
    ("api", "message"), HIDDEN, ids=[f"{a}-{i}" for i, (a, _) in enumerate(HIDDEN)]
)
async def test_text_the_rules_cannot_read_is_refused_not_sent(
    dialect: str, both_ways: Served, api: str, message: dict[str, Any]
) -> None:
    """Text where the rules read none (a text part that is a list or an object, a tool
    input that is a bare string, tool arguments that are an object): translating it
    would send it unscanned, so the call is refused and the provider sees nothing."""
    gateway, mock, url = both_ways
    path = "/v1/messages" if api == "anthropic" else "/v1/chat/completions"
    body: dict[str, Any] = {"model": MODELS[dialect], "max_tokens": 20, "messages": [message]}
    if message["role"] == "assistant":
        body["messages"] = [{"role": "user", "content": "hi"}, message]
    async with httpx.AsyncClient(base_url=url, headers=gateway.auth) as http:
        answer = await http.post(path, json=body)
    assert answer.status_code == 400, answer.text
    assert EMAIL not in answer.text and not mock.last_request


@pytest.mark.parametrize("dialect", ["bedrock", "gemini"])
async def test_a_tool_input_that_is_no_object_still_passes_the_output_rules(
    dialect: str, answers_only: Served
) -> None:
    """The provider answers a tool call whose input is a bare string: it reaches an
    Anthropic caller wrapped in an object the rules read, redacted."""
    gateway, mock, url = answers_only
    mock.mode = "string-tool-input"
    used = await anthropic_sdk(url, gateway).messages.create(
        model=MODELS[dialect],
        max_tokens=50,
        messages=[{"role": "user", "content": f"who is {EMAIL}"}],
        tools=[{"name": "lookup", "input_schema": {"type": "object"}}],
    )
    block = used.content[0]
    assert block.type == "tool_use" and block.input == {"arguments": "echo: who is [EMAIL]"}


@pytest.mark.parametrize("dialect", ["bedrock", "gemini"])
async def test_a_translated_stream_is_released_before_the_provider_has_finished(
    dialect: str, both_ways: Served
) -> None:
    """The provider holds its stream after three events; the caller already has the
    first words (each translated as it came, never gathered), and the rest once the
    provider goes on."""
    gateway, mock, url = both_ways
    mock.mode = "held-stream"
    stream = await sdk(url, gateway).chat.completions.create(
        model=MODELS[dialect],
        messages=[{"role": "user", "content": "one two three four five"}],
        stream=True,
    )
    chunks = stream.__aiter__()
    first = await asyncio.wait_for(chunks.__anext__(), 10)  # a deadline, not a timing goal
    assert first.choices[0].delta.content == "echo:"
    assert not _decisions(gateway)  # the call is still going: no decision record yet
    mock.released.set()
    rest = [chunk async for chunk in chunks]
    text = "echo:" + "".join(c.choices[0].delta.content or "" for c in rest if c.choices)
    assert text == "echo: one two three four five"
