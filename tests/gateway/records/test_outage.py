"""A regional NATS outage: fail-closed while it lasts, normal service after."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from mcp.shared.exceptions import MCPError

from cordon.nats import subjects
from cordon_dev.procs import wait_for_http
from cordon_dev.stack import DevStack
from gateway.mcp.service import NOT_RECORDED
from tests.helpers import (
    authed_get,
    central_summary,
    eventually,
    nats_as,
    policy_status,
    publish_pack,
    published_revision,
    stored_record,
    unique_word,
)
from tests.mcp_agent import agent_session

AUDIT = (sys.executable, "-m", "cordon_cli", "audit")


def _sdk(endpoints: dict[str, Any]) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=endpoints["gateways"]["eu-west"] + "/v1",
        api_key=endpoints["api_key"],
        max_retries=0,
    )


def _try_raw(endpoints: dict[str, Any], content: str) -> Any:
    try:
        return _sdk(endpoints).chat.completions.with_raw_response.create(
            model="mock-gpt", messages=[{"role": "user", "content": content}]
        )
    except openai.APIStatusError:
        return None


def _in_central_view(endpoints: dict[str, Any], record_id: str) -> bool:
    return central_summary(endpoints, record_id, "eu-west") is not None


async def _a_tool_is_never_called_while_nats_is_down(
    stack: DevStack, endpoints: dict[str, Any]
) -> None:
    """No intent record can be committed, so the tool is not called: the agent gets a
    clear JSON-RPC error and the tool server never sees the arguments."""
    marker = f"tool call during the outage {unique_word()}"
    key = {"authorization": f"Bearer {endpoints['api_key']}"}
    async with agent_session(endpoints["mcp"]["eu-west"]["dev-tools"], key) as agent:
        with pytest.raises(MCPError) as caught:
            await agent.call_tool("echo", {"text": marker})
    assert caught.value.code == NOT_RECORDED and "not called" in caught.value.message
    assert marker not in stack.processes["tool-server"].log_path.read_text()


@pytest.mark.timeout(120)  # a NATS outage drill: stops, waits out, restarts a server
@pytest.mark.usefixtures("fronted")  # other tests publish packs of their own
async def test_regional_nats_outage_fails_closed_then_recovers(
    stack: DevStack, endpoints: dict[str, Any]
) -> None:
    assert stack.nats is not None
    refused = f"during the outage {unique_word()}"
    stack.nats.stop("eu-west")
    try:
        with pytest.raises(openai.APIStatusError) as caught:
            _sdk(endpoints).chat.completions.create(
                model="mock-gpt", messages=[{"role": "user", "content": refused}]
            )
        assert caught.value.status_code == 503
        error = caught.value.body
        assert isinstance(error, dict) and error["code"] == "record_commit_failed"
        assert refused not in caught.value.response.text  # no model output escaped
        assert httpx.get(endpoints["gateways"]["eu-west"] + "/readyz").status_code == 503
        await _a_tool_is_never_called_while_nats_is_down(stack, endpoints)
        # the other region is not affected
        other = openai.OpenAI(
            base_url=endpoints["gateways"]["us-east"] + "/v1",
            api_key=endpoints["api_key"],
            max_retries=0,
        )
        assert (
            other.chat.completions.create(
                model="mock-gpt", messages=[{"role": "user", "content": "still here"}]
            )
            .choices[0]
            .message.content
            == "echo: still here"
        )
    finally:
        stack.nats.start("eu-west")

    after = f"after the outage {unique_word()}"
    raw = eventually(lambda: _try_raw(endpoints, after), timeout=20.0, interval=0.2)
    assert raw.parse().choices[0].message.content == f"echo: {after}"
    # and its summary reaches the central view again: the central source of the
    # region's SUMMARY resumes by itself (the server's source health check, ~15-20 s)
    record_id = raw.headers["x-cordon-record-id"]
    eventually(lambda: _in_central_view(endpoints, record_id), timeout=60.0, interval=0.5)

    # nothing was recorded for the refused call; the stream holds only what was answered
    nc = await nats_as(endpoints["nats"]["regions"]["eu-west"]["audit"]["provision"])
    try:
        js = nc.jetstream()
        last = (await js.stream_info(subjects.RECORDS_STREAM)).state.last_seq
        stored = [(await js.get_msg(subjects.RECORDS_STREAM, s)).data for s in range(1, last + 1)]
    finally:
        await nc.close()
    assert not any(refused.encode() in data for data in stored)
    assert any(after.encode() in data for data in stored)


@pytest.mark.timeout(120)  # a NATS outage drill: stops, waits out, restarts a server
async def test_a_replica_started_while_nats_is_down_enforces_its_last_good_pack(
    stack: DevStack, endpoints: dict[str, Any], tmp_path: Path
) -> None:
    assert stack.nats is not None
    gateway = endpoints["gateways"]["eu-west"]
    pack = tmp_path / "pack.yaml"
    pack.write_text(
        "pack: {name: default}\n"
        "policies:\n  - {name: pii, type: output_filter, patterns: [email]}\n"
    )
    revision = published_revision(publish_pack(endpoints, pack))
    eventually(
        lambda: policy_status(gateway, endpoints["tokens"]["admin"])["active_revision"] == revision
    )

    process = stack.processes["gateway-eu-west"]
    process.stop()
    stack.nats.stop("eu-west")
    try:
        process.start()
        wait_for_http(gateway + "/healthz", 30, process.proc)
        status = policy_status(gateway, endpoints["tokens"]["admin"])
        assert status["active_revision"] == revision  # from disk, with no NATS at all
        assert httpx.get(gateway + "/readyz").status_code == 503
        with pytest.raises(openai.APIStatusError) as caught:
            _sdk(endpoints).chat.completions.create(
                model="mock-gpt", messages=[{"role": "user", "content": "mail bob@example.com"}]
            )
        assert caught.value.status_code == 503  # fail-closed: no record, no answer
    finally:
        stack.nats.start("eu-west")
    raw = eventually(
        lambda: _try_raw(endpoints, "mail bob@example.com"), timeout=20.0, interval=0.2
    )
    assert raw.parse().choices[0].message.content == "echo: mail [EMAIL]"
    # leave the pipeline as found: summaries reach the central view again
    record_id = raw.headers["x-cordon-record-id"]
    eventually(lambda: _in_central_view(endpoints, record_id), timeout=60.0, interval=0.5)


@pytest.mark.timeout(120)  # a NATS outage drill: stops, waits out, restarts a server
async def test_nats_killed_mid_load_every_answer_has_its_record(
    stack: DevStack, endpoints: dict[str, Any]
) -> None:
    """Fail-closed under load: each 200 has exactly its record; every other call got a 503."""
    assert stack.nats is not None
    outcomes: list[tuple[int, str | None, str]] = []

    async def caller(client: httpx.AsyncClient, worker: int) -> None:
        for i in range(60):
            marker = f"load-{worker}-{i}-{unique_word()[:8]}"
            try:
                response = await client.post(
                    endpoints["gateways"]["eu-west"] + "/v1/chat/completions",
                    json={"model": "mock-gpt", "messages": [{"role": "user", "content": marker}]},
                    headers={"authorization": f"Bearer {endpoints['api_key']}"},
                    timeout=10,
                )
            except httpx.HTTPError:
                outcomes.append((0, None, marker))
                continue
            outcomes.append(
                (response.status_code, response.headers.get("x-cordon-record-id"), marker)
            )
            if response.status_code == 200:
                assert marker in response.text
            else:
                assert marker not in response.text  # no model output without a record
            await asyncio.sleep(0.01)

    async def outage() -> None:
        await asyncio.sleep(0.3)
        stack.nats.processes["eu-west"].kill()  # no graceful shutdown
        await asyncio.sleep(1.0)
        await asyncio.to_thread(stack.nats.start, "eu-west")

    async with httpx.AsyncClient() as client:
        await asyncio.gather(outage(), *(caller(client, w) for w in range(4)))
    statuses = {status for status, _, _ in outcomes}
    assert statuses <= {200, 503}, statuses
    assert 503 in statuses and 200 in statuses
    answered = {record_id for status, record_id, _ in outcomes if status == 200}

    nc = await nats_as(endpoints["nats"]["regions"]["eu-west"]["audit"]["provision"])
    try:
        js = nc.jetstream()
        info = await js.stream_info(subjects.RECORDS_STREAM)
        stored = [
            (await js.get_msg(subjects.RECORDS_STREAM, s)).data or b""
            for s in range(max(1, info.state.last_seq - 600), info.state.last_seq + 1)
        ]
    finally:
        await nc.close()
    for record_id in answered:
        assert sum(record_id.encode() in data for data in stored) == 1, record_id
    # (a refused call's record may still land late if its publish was in flight; the
    # recorder then commits a void for its replica_seq, see tests/test_recorder.py)
    # leave the pipeline as found
    raw = eventually(lambda: _try_raw(endpoints, "after the load"), timeout=20.0, interval=0.2)
    eventually(
        lambda: _in_central_view(endpoints, raw.headers["x-cordon-record-id"]),
        timeout=60.0,
        interval=0.5,
    )


def _stream_lines(
    endpoints: dict[str, Any], on_first: Any, words: int = 40
) -> tuple[Any, list[str]]:
    """A slow stream (one word per 50 ms) from eu-west; `on_first()` runs once the first
    event has arrived. Returns the response headers and every line received."""
    body = {
        "model": "slow-stream",
        "stream": True,
        "messages": [{"role": "user", "content": " ".join(["word"] * words)}],
    }
    with httpx.stream(
        "POST",
        endpoints["gateways"]["eu-west"] + "/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {endpoints['api_key']}"},
        timeout=20,
    ) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        received = [next(lines)]
        on_first()
        received += list(lines)
        return response.headers, received


@pytest.mark.timeout(120)  # a NATS outage drill: stops, waits out, restarts a server
async def test_a_stream_asked_for_while_nats_is_down_gets_a_503_and_the_provider_is_not_paid(
    stack: DevStack, endpoints: dict[str, Any]
) -> None:
    assert stack.nats is not None
    mock_stats = endpoints["mock_provider"].removesuffix("/v1") + "/mock/stats"
    before = httpx.get(mock_stats).json()["counts"].get("streams started", 0)
    stack.nats.stop("eu-west")
    try:
        with pytest.raises(openai.APIStatusError) as caught:
            for _ in _sdk(endpoints).chat.completions.create(
                model="mock-gpt",
                stream=True,
                messages=[{"role": "user", "content": "stream while the log is away"}],
            ):
                pytest.fail("a stream event went out with no record possible")
        assert caught.value.status_code == 503
        assert isinstance(caught.value.body, dict)
        assert caught.value.body["code"] == "record_commit_failed"
        assert httpx.get(mock_stats).json()["counts"].get("streams started", 0) == before
    finally:
        stack.nats.start("eu-west")
    eventually(lambda: _try_raw(endpoints, "back"), timeout=20.0, interval=0.2)


@pytest.mark.timeout(120)  # a NATS outage drill: stops, waits out, restarts a server
async def test_nats_lost_mid_stream_ends_it_with_an_error_and_the_intent_stands(
    stack: DevStack, endpoints: dict[str, Any], tmp_path: Path
) -> None:
    assert stack.nats is not None
    nats_servers = stack.nats
    headers, lines = _stream_lines(endpoints, lambda: nats_servers.stop("eu-west"))
    try:
        events = [line for line in lines if line.startswith("data: ")]
        assert "data: [DONE]" not in events  # the stream did not end as if all were well
        error = json.loads(events[-1][6:])["error"]
        assert error["code"] == "record_commit_failed"
    finally:
        stack.nats.start("eu-west")
    intent_id, intent_seq = headers["x-cordon-intent-id"], int(headers["x-cordon-intent-seq"])
    eventually(lambda: _try_raw(endpoints, "after the broken stream"), timeout=20.0)

    intent = await stored_record(endpoints, "eu-west", intent_seq)
    assert intent["kind"] == "intent" and intent["id"] == intent_id
    assert intent["outcome"] == "pending" and intent["stream"] is True
    # The auditor's bundle names the stream that began and never completed...
    out = tmp_path / "bundle.json"
    env = {**os.environ, "CORDON_AUDIT_TOKEN": endpoints["tokens"]["auditor"]}
    span = ["--from", str(intent_seq), "--to", str(intent_seq + 1), "--out", str(out)]
    # The sealer checkpoints every second, and the audit API's index catches up once its
    # consumer is back after the outage: under load that takes a while, so wait by time.
    deadline = time.monotonic() + 60
    while True:
        export = subprocess.run(
            [*AUDIT, "export", "--api", endpoints["audit_apis"]["eu-west"], *span],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )
        if export.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert export.returncode == 0, export.stderr
    verified = subprocess.run(
        [*AUDIT, "verify", str(out), "--trust-key", endpoints["regional_public_keys"]["eu-west"]],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert f"INCOMPLETE stream intent {intent_id} (seq {intent_seq})" in verified.stdout

    # ...and so does the central view, once the region's summaries flow again.
    def open_in_central_view() -> bool:
        items = authed_get(
            endpoints,
            endpoints["aggregator"] + "/v1/intents/open",
            params={"region": "eu-west", "older_than_s": 0},
        ).json()["items"]
        return any(item["id"] == intent_id for item in items)

    eventually(open_in_central_view, timeout=60.0, interval=0.5)
