"""One line makes an existing application enforce the users' files in-process: the real
`openai` and `anthropic` SDKs, synchronous and asynchronous, streamed and not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from cordon_sdk import PolicyBlocked, govern, shutdown
from tests.cordon_sdk.harness import (
    EMAIL,
    HELLO,
    ROOT,
    asking,
    governed_openai,
    records,
    say,
    seed,
    worker,
)
from tests.helpers import eventually


def test_one_line_makes_an_openai_application_enforce_the_sidecar_file(
    tmp_path: Path, provider_url: str
) -> None:
    client = openai.OpenAI(api_key="sk-app", base_url=f"{provider_url}/v1")
    client = govern(client, config=seed("sidecar.yaml", tmp_path), agent="billing")
    raw = client.chat.completions.with_raw_response.create(
        model="mock-gpt", messages=asking(f"write to {EMAIL}")
    )
    answer = raw.parse()
    assert answer.choices[0].message.content == "echo: write to [EMAIL]"
    assert raw.headers["x-cordon-record-id"]
    (record,) = records(worker(tmp_path))
    assert record["id"] == raw.headers["x-cordon-record-id"]
    assert record["enforced_by"] == "sdk"
    assert record["agent"] == "billing"
    assert record["rules"] == ["pii-redaction"]


def test_an_email_in_a_streamed_answer_never_reaches_the_application(
    tmp_path: Path, provider_url: str
) -> None:
    client = governed_openai(provider_url, seed("sidecar.yaml", tmp_path))
    stream = client.chat.completions.create(
        model="mock-gpt", messages=asking(f"mail {EMAIL} now"), stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "echo: mail [EMAIL] now"
    assert [r["outcome"] for r in records(worker(tmp_path))] == ["redact"]


def test_a_blocked_call_is_the_sdks_own_error_naming_the_rule_and_its_record(
    tmp_path: Path, provider_url: str
) -> None:
    client = governed_openai(provider_url, seed("reverse-proxy.yaml", tmp_path))
    assert client.chat.completions.create(model="mock-gpt", messages=HELLO).choices
    try:
        client.chat.completions.create(model="mock-gpt", messages=asking(say("I want to die")))
    except openai.APIStatusError as exc:  # what the application already catches
        refused = exc
    else:
        pytest.fail("the self-harm answer was released")
    assert isinstance(refused, openai.PermissionDeniedError)
    assert isinstance(refused, PolicyBlocked)
    assert refused.rule == "global-safety"
    assert "want to die" not in refused.response.text
    decisions = records(worker(tmp_path))
    assert [r["outcome"] for r in decisions] == ["allow", "block"]
    assert decisions[1]["id"] == refused.record_id


async def test_an_async_anthropic_application_is_governed_streamed_and_not(
    tmp_path: Path, provider_url: str
) -> None:
    client = govern(
        anthropic.AsyncAnthropic(api_key="sk-ant-app", base_url=provider_url, max_retries=0),
        config=seed("sidecar.yaml", tmp_path),
    )
    message = await client.messages.create(
        model="mock-claude", max_tokens=64, messages=asking(f"reach {EMAIL}")
    )
    assert message.content[0].text == "echo: reach [EMAIL]"  # type: ignore[union-attr]
    streamed = ""
    async with client.messages.stream(
        model="mock-claude", max_tokens=64, messages=asking(f"stream {EMAIL}")
    ) as stream:
        async for text in stream.text_stream:
            streamed += text
    assert streamed == "echo: stream [EMAIL]"
    assert len(records(worker(tmp_path))) == 2


async def test_an_async_openai_blocked_stream_and_the_anthropic_error_shape(
    tmp_path: Path, provider_url: str
) -> None:
    config = seed("reverse-proxy.yaml", tmp_path)
    chat = govern(
        openai.AsyncOpenAI(api_key="sk-app", base_url=f"{provider_url}/v1", max_retries=0),
        config=config,
    )
    stream = await chat.chat.completions.create(model="mock-gpt", messages=HELLO, stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    messages = govern(
        anthropic.AsyncAnthropic(api_key="sk-ant-app", base_url=provider_url, max_retries=0),
        config=config,
    )
    with pytest.raises(anthropic.APIStatusError) as refused:
        await messages.messages.create(
            model="mock-claude", max_tokens=64, messages=asking(say("I want to die"))
        )
    assert isinstance(refused.value, anthropic.PermissionDeniedError)
    assert isinstance(refused.value, PolicyBlocked)
    assert refused.value.rule == "global-safety"


def test_calls_that_are_not_model_calls_go_out_untouched_and_unrecorded(
    tmp_path: Path, provider_url: str
) -> None:
    client = governed_openai(provider_url, seed("sidecar.yaml", tmp_path))
    assert [m.id for m in client.models.list()]
    assert records(worker(tmp_path)) == []


def test_the_governed_client_keeps_its_surface_and_its_copies_stay_governed(
    tmp_path: Path, provider_url: str
) -> None:
    client = governed_openai(provider_url, seed("sidecar.yaml", tmp_path))
    assert isinstance(client, openai.OpenAI)
    copy = client.with_options(timeout=20)
    embedded = copy.embeddings.create(model="mock-embed", input=f"embed {EMAIL}")
    assert embedded.data
    response = copy.responses.create(model="mock-gpt", input=f"respond to {EMAIL}")
    assert "[EMAIL]" in response.output_text and EMAIL not in response.output_text
    assert [r["endpoint"] for r in records(worker(tmp_path))] == ["embeddings", "responses"]


def test_a_client_govern_cannot_enforce_is_refused_not_left_ungoverned(
    tmp_path: Path, provider_url: str
) -> None:
    from cordon.errors import ConfigError

    config = seed("sidecar.yaml", tmp_path)
    with pytest.raises(ConfigError, match="openai or anthropic client"):
        govern(object(), config=config)
    azure = openai.AzureOpenAI(api_key="k", api_version="2024-06-01", azure_endpoint=provider_url)
    with pytest.raises(ConfigError, match="AzureOpenAI"):
        govern(azure, config=config)


CLI = (sys.executable, "-m", "cordon_cli")


def cordon(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_the_in_process_records_verify_offline_with_the_pinned_key(
    tmp_path: Path, provider_url: str
) -> None:
    config = seed("sidecar.yaml", tmp_path)
    client = govern(openai.OpenAI(api_key="sk-app", base_url=f"{provider_url}/v1"), config=config)
    for n in range(3):
        client.chat.completions.create(model="mock-gpt", messages=asking(f"call {n} {EMAIL}"))
    shutdown()  # as at exit: what was written is sealed
    key = cordon("sidecar", "key", "--config", str(config), "--sdk-worker", "0", cwd=ROOT)
    assert key.returncode == 0, key.stderr
    pinned = json.loads(key.stdout)["log_root_public_key"]
    out = tmp_path / "bundle.json"
    exported = cordon(
        "sidecar",
        "export",
        "--config",
        str(config),
        "--sdk-worker",
        "0",
        "--out",
        str(out),
        cwd=ROOT,
    )
    assert exported.returncode == 0, exported.stderr
    good = cordon("audit", "verify", str(out), "--trust-key", pinned, cwd=ROOT)
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.strip().splitlines()[-1].startswith("OK: ")
    forged = cordon("audit", "verify", str(out), "--trust-key", "ab" * 32, cwd=ROOT)
    assert forged.returncode != 0
    assert len(json.loads(out.read_text())["records"]) == 3


def test_a_policy_change_reaches_a_running_application_without_a_restart(
    tmp_path: Path, provider_url: str
) -> None:
    config = seed("sidecar.yaml", tmp_path)
    reload = tmp_path / "reload.yaml"
    reload.write_text("gateway:\n  config_reload: true\n  config_watch_interval: 100ms\n")
    client = governed_openai(provider_url, [config, reload])
    with_email = asking(f"to {EMAIL}")
    assert client.chat.completions.create(model="mock-gpt", messages=with_email).choices
    config.write_text(
        config.read_text()
        + "  - name: no-emails-out\n    type: input_filter\n    action: block\n"
        + "    patterns:\n      - email\n"
    )

    def refused() -> bool:
        try:
            client.chat.completions.create(model="mock-gpt", messages=with_email)
        except PolicyBlocked as exc:
            return exc.rule == "no-emails-out"
        return False

    eventually(refused, timeout=10)


def test_each_process_of_a_multi_worker_application_is_a_replica_of_its_own(
    tmp_path: Path, provider_url: str
) -> None:
    config = seed("sidecar.yaml", tmp_path)
    code = (
        "import sys, openai\n"
        "from cordon_sdk import govern\n"
        f"c = openai.OpenAI(api_key='k', base_url='{provider_url}/v1')\n"
        "c = govern(c, config=sys.argv[1])\n"
        "c.chat.completions.create(model='mock-gpt', messages=[{'role':'user','content':'hi'}])\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for _ in range(2)
    ]
    try:
        for process in workers:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
    finally:
        for process in workers:
            process.communicate("\n", timeout=30)
    replicas = {records(worker(tmp_path, n))[0]["replica"] for n in (0, 1)}
    assert len(replicas) == 2


def test_a_copy_for_another_provider_sends_each_key_only_to_its_own(
    tmp_path: Path, provider_url: str
) -> None:
    """`with_options(base_url=..., api_key=...)` is governed for its own provider: the
    first provider never sees the second's key, and each call is recorded."""
    first = govern(
        openai.OpenAI(api_key="sk-first", base_url=f"{provider_url}/v1", max_retries=0),
        config=seed("sidecar.yaml", tmp_path),
    )
    other = f"http://localhost:{provider_url.rsplit(':', 1)[1]}/v1"  # same mock, another origin
    second = first.with_options(base_url=other, api_key="sk-second")
    assert second.chat.completions.create(model="mock-gpt", messages=HELLO).choices
    seen = httpx.get(f"{provider_url}/mock/stats", timeout=5).json()
    assert seen["auth"]["authorization"] == "Bearer sk-second"
    own = openai.OpenAI(api_key="sk-app", base_url=f"{provider_url}/v1", max_retries=0)
    mixed = first.with_options(http_client=own._client)
    assert mixed.chat.completions.create(model="mock-gpt", messages=HELLO).choices
    assert [r["route"] for r in records(worker(tmp_path))] == ["openai-client"] * 2


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/completions", {"model": "mock-gpt", "prompt": f"mail {EMAIL}"}),
        ("POST", "/batches", {"input_file_id": "f", "endpoint": "/v1/chat/completions"}),
        ("GET", "/responses/resp_1", None),
        ("POST", "/moderations", {"input": f"mail {EMAIL}"}),
    ],
)
def test_a_call_cordon_does_not_govern_is_refused_and_never_sent(
    tmp_path: Path, provider_url: str, method: str, path: str, body: Any
) -> None:
    """Legacy completions, batches, a background response's retrieval, anything not a
    governed model call: the SDK's own 403, and nothing reaches the provider."""
    client = governed_openai(provider_url, seed("sidecar.yaml", tmp_path))
    with pytest.raises(openai.PermissionDeniedError) as refused:
        if method == "POST":
            client.post(path, body=body, cast_to=object)
        else:
            client.get(path, cast_to=object)
    assert refused.value.code == "not_governed"  # refused here: the mock would say 404
    assert records(worker(tmp_path)) == []
