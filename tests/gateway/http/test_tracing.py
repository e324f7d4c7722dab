"""OpenTelemetry traces of calls: with an OTLP endpoint in the standard variables, a
call's GenAI span tree goes to a real OTLP/HTTP receiver (started here), its trace id is
in the record and its record id on the span; a caller's `traceparent` is the parent and
the provider gets the call's. Off by default: no span, nothing exported."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from cordon_dev import tool_server
from cordon_dev.inprocess import InProcessGateway, in_process_gateway, serve_in_loop
from cordon_dev.procs import free_port
from tests.helpers import asgi_body
from tests.mcp_agent import agent_session, dev_tools_section, pack

pytestmark = [pytest.mark.fast, pytest.mark.timeout(60)]

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
PROMPT = "trace this, secret words"


class Receiver:
    """An OTLP/HTTP trace receiver: what it is sent, decoded as the collector does."""

    def __init__(self) -> None:
        self.spans: list[Any] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await asgi_body(receive)
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            for scoped in resource.scope_spans:
                self.spans.extend(scoped.spans)
        headers = [(b"content-type", b"application/x-protobuf")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def attributes(span: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in span.attributes:
        value = item.value
        found[item.key] = value.string_value or value.int_value or value.bool_value
    return found


@pytest.fixture
async def traced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[InProcessGateway, Receiver]]:
    receiver = Receiver()
    async with serve_in_loop(receiver) as url:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{url}/v1/traces")
        async with in_process_gateway(tmp_path) as gateway:
            yield gateway, receiver


async def test_a_call_is_a_genai_span_tree_tied_to_its_record(
    traced: tuple[InProcessGateway, Receiver],
) -> None:
    gateway, receiver = traced
    caller = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01", **gateway.auth}
    call = {"model": "mock-gpt", "messages": [{"role": "user", "content": PROMPT}]}
    answer = await gateway.client.post("/v1/chat/completions", json=call, headers=caller)
    assert answer.status_code == 200
    await asyncio.to_thread(gateway.runtime.tracing.flush)
    (record,) = [r for r in gateway.records() if r["kind"] == "decision"]
    assert record["trace_id"] == CALLER_TRACE  # the record leads to the trace

    (root,) = [s for s in receiver.spans if s.name == "chat mock-gpt"]
    assert root.trace_id.hex() == CALLER_TRACE and root.parent_span_id.hex() == CALLER_SPAN
    tags = attributes(root)
    assert tags["gen_ai.operation.name"] == "chat" and tags["gen_ai.system"] == "openai"
    assert tags["gen_ai.request.model"] == "mock-gpt"
    assert tags["gen_ai.usage.input_tokens"] > 0 and tags["gen_ai.usage.output_tokens"] > 0
    (reasons,) = [a.value for a in root.attributes if a.key == "gen_ai.response.finish_reasons"]
    assert [v.string_value for v in reasons.array_value.values] == ["stop"]
    assert tags["cordon.record.id"] == record["id"]  # and the trace to the record
    children = {s.name for s in receiver.spans if s.parent_span_id == root.span_id}
    assert children == {"cordon.policy", "cordon.upstream", "cordon.record.commit"}
    assert PROMPT not in str(receiver.spans)  # no content on a span
    sent = gateway.provider.seen_auth["traceparent"]
    assert sent == f"00-{CALLER_TRACE}-{root.span_id.hex()}-01"  # the provider's parent


async def test_a_streamed_answer_carries_its_finish_reasons(
    traced: tuple[InProcessGateway, Receiver],
) -> None:
    gateway, receiver = traced
    call = {"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    answer = await gateway.client.post("/v1/chat/completions", json=call, headers=gateway.auth)
    assert answer.status_code == 200 and "[DONE]" in answer.text
    await asyncio.to_thread(gateway.runtime.tracing.flush)
    (root,) = [s for s in receiver.spans if s.name == "chat mock-gpt"]
    (reasons,) = [a.value for a in root.attributes if a.key == "gen_ai.response.finish_reasons"]
    assert [v.string_value for v in reasons.array_value.values] == ["stop"]


async def test_a_step_that_fails_is_an_error_span(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No provider can be reached: the `cordon.upstream` child says so (status error),
    and the call is still recorded under its trace id."""
    receiver = Receiver()
    down = f"http://127.0.0.1:{free_port('127.0.0.1')}/v1"
    target = {"id": "down", "provider": {"api": "openai", "base_url": down}}
    async with serve_in_loop(receiver) as url:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{url}/v1/traces")
        async with in_process_gateway(tmp_path, settings={"targets": [target]}) as gateway:
            call = {"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}
            answer = await gateway.client.post(
                "/v1/chat/completions", json=call, headers=gateway.auth
            )
            assert answer.status_code >= 500
            await asyncio.to_thread(gateway.runtime.tracing.flush)
            (record,) = [r for r in gateway.records() if r["kind"] == "decision"]
    (upstream,) = [s for s in receiver.spans if s.name == "cordon.upstream"]
    assert upstream.status.code == 2  # STATUS_CODE_ERROR
    assert upstream.trace_id.hex() == record["trace_id"]


async def test_the_standard_sampler_variable_is_honoured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`OTEL_TRACES_SAMPLER` (here `always_off`) is the SDK's: a call not sampled is
    served and recorded, and no span is exported."""
    receiver = Receiver()
    async with serve_in_loop(receiver) as url:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{url}/v1/traces")
        monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
        async with in_process_gateway(tmp_path) as gateway:
            call = {"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}
            answer = await gateway.client.post(
                "/v1/chat/completions", json=call, headers=gateway.auth
            )
            assert answer.status_code == 200 and gateway.runtime.tracing.on
            await asyncio.to_thread(gateway.runtime.tracing.flush)
            assert [r["kind"] for r in gateway.records()] == ["decision"]
            sent = gateway.provider.seen_auth["traceparent"]
    assert receiver.spans == [] and int(sent[-2:], 16) & 1 == 0  # not sampled, and says so


async def test_off_by_default_the_callers_trace_context_still_travels(tmp_path: Path) -> None:
    async with in_process_gateway(tmp_path) as gateway:
        assert not gateway.runtime.tracing.on
        parent = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
        call = {"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}
        headers = {"traceparent": parent, **gateway.auth}
        answer = await gateway.client.post("/v1/chat/completions", json=call, headers=headers)
        assert answer.status_code == 200
        assert gateway.provider.seen_auth["traceparent"] == parent
        (record,) = [r for r in gateway.records() if r["kind"] == "decision"]
        assert record["trace_id"] is None


async def test_a_tool_call_is_an_execute_tool_span_tied_to_its_records(
    traced: tuple[InProcessGateway, Receiver],
) -> None:
    gateway, receiver = traced
    async with serve_in_loop(tool_server.app(), lifespan="on") as tools_url:
        tools = await dev_tools_section({"url": f"{tools_url}/mcp"})
        await gateway.activate(pack(tools), 2)
        async with serve_in_loop(gateway.app) as url:
            caller = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01", **gateway.auth}
            async with agent_session(f"{url}/mcp/dev-tools", caller) as agent:
                await agent.call_tool("echo", {"text": PROMPT})
    await asyncio.to_thread(gateway.runtime.tracing.flush)
    (decision,) = [r for r in gateway.records() if r.get("tool") and r["kind"] == "decision"]
    (root,) = [s for s in receiver.spans if s.name == "execute_tool echo"]
    assert root.trace_id.hex() == CALLER_TRACE
    tags = attributes(root)
    assert (
        tags["gen_ai.operation.name"] == "execute_tool"
        and tags["cordon.tool.server"] == "dev-tools"
    )
    assert tags["cordon.record.id"] == decision["id"]
    children = [s.name for s in receiver.spans if s.parent_span_id == root.span_id]
    assert sorted(children) == sorted(
        ["cordon.policy", "cordon.upstream", "cordon.record.commit", "cordon.record.commit"]
    )
    assert PROMPT not in str(receiver.spans)


def test_off_the_sdk_is_never_imported() -> None:
    """Off costs nothing: a replica's tracer without an OTLP endpoint loads no SDK."""
    probe = (
        "import os, sys\n"
        "from gateway.telemetry import Tracing, enabled_by\n"
        "assert not enabled_by(os.environ)\n"
        "span = Tracing(enabled_by(os.environ)).start('chat', 'openai', {})\n"
        "span.set({'gen_ai.request.model': 'm'})\n"
        "span.end()\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    ran = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=30
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "[]"
