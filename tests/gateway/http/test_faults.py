"""A fault of the gateway's own (a bug, not the caller's input) after authentication: a
500 in the caller's API shape with a receipt, a record that says so, and a log line
naming the record. The replica runs in-process (httpx's ASGI transport) against the
suite's regional NATS, so the fault can be planted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from cordon_dev.procs import free_port
from cordon_dev.stack import DevStack
from gateway import settings
from gateway.http import calls
from gateway.http.app import GatewayApp, create_app
from gateway.runtime import build_runtime
from tests.helpers import find_record


@pytest.fixture
async def in_process(stack: DevStack, endpoints: dict[str, Any]) -> AsyncIterator[GatewayApp]:
    config = stack.gateway_config(
        "eu-west", "gw-in-process", endpoints["mock_provider"], free_port()
    )
    app = create_app(build_runtime(settings.load(config)))
    await app.runtime.start()
    try:
        for _ in range(200):
            if app.runtime.ready:
                break
            await asyncio.sleep(0.05)
        assert app.runtime.ready
        yield app
    finally:
        await app.runtime.stop()


async def test_a_fault_of_our_own_is_a_500_with_a_receipt_and_a_record(
    in_process: GatewayApp,
    endpoints: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug in the call pipeline")

    monkeypatch.setattr(calls, "serve", broken)
    transport = httpx.ASGITransport(app=in_process)
    async with httpx.AsyncClient(transport=transport, base_url="http://replica") as client:
        response = await client.post(
            "/v1/messages",
            json={
                "model": "mock-claude",
                "max_tokens": 9,
                "messages": [{"role": "user", "content": "hi"}],
            },
            headers={"x-api-key": endpoints["api_key"]},
        )
    assert response.status_code == 500
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "api_error"  # Anthropic's shape
    record_id = response.headers["x-cordon-record-id"]
    assert record_id in body["error"]["message"]
    record = await find_record(endpoints, "eu-west", record_id)
    assert record is not None and record["status"] == 500 and record["outcome"] == "error"
    assert record["error"] == "internal_error: RuntimeError"
    logged = [
        r for r in caplog.records if r.levelno == logging.ERROR and record_id in r.getMessage()
    ]
    assert logged and logged[0].exc_info is not None  # the traceback, beside the record id
