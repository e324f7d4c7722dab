"""A gateway in front of one provider target on a mock, with the pack's email rules
both ways (or those a test names), and the caller's real `openai` or `anthropic` SDK:
what the dialect tests share."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anthropic
import openai

from cordon_dev.inprocess import InProcessGateway, in_process_gateway, serve_in_loop
from cordon_dev.mock_provider import MockProvider

EMAIL_RULES = [
    {"name": "in", "type": "input_filter", "action": "redact", "patterns": ["email"]},
    {"name": "out", "type": "output_filter", "action": "redact", "patterns": ["email"]},
]


@contextlib.asynccontextmanager
async def fronting(
    tmp_path: Path,
    target: Callable[[str], dict[str, Any]],
    rules: list[dict[str, Any]] = EMAIL_RULES,
) -> AsyncIterator[tuple[InProcessGateway, MockProvider, str]]:
    """A gateway on loopback whose pack routes to `target(mock_url)` only (called before
    the gateway starts, so a variable it sets is in the gateway's environment)."""
    mock = MockProvider()
    async with serve_in_loop(mock) as mock_url:
        document = {
            "pack": {"name": "default", "version": "1"},
            "providers": {"targets": [target(mock_url)]},
            "policies": rules,
        }
        async with in_process_gateway(tmp_path) as gateway, serve_in_loop(gateway.app) as url:
            await gateway.activate(document, 2)
            yield gateway, mock, url


def sdk(url: str, gateway: InProcessGateway) -> openai.AsyncOpenAI:
    """The caller: the real `openai` SDK with the gateway's key."""
    key = gateway.auth["authorization"].split()[1]
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def anthropic_sdk(url: str, gateway: InProcessGateway) -> anthropic.AsyncAnthropic:
    """The caller: the real `anthropic` SDK with the gateway's key."""
    key = gateway.auth["authorization"].split()[1]
    return anthropic.AsyncAnthropic(base_url=url, api_key=key, max_retries=0)


def bedrock_target(base_url: str) -> dict[str, Any]:
    """Bedrock in eu-central-1 at `base_url`, its key pair in CORDON_PROVIDER_BEDROCK."""
    return {
        "id": "bedrock-eu",
        "provider": {"api": "bedrock", "base_url": base_url},
        "secret_key_ref": {"env": "CORDON_PROVIDER_BEDROCK"},
        "region": "eu-central-1",
    }


def gemini_target(base_url: str) -> dict[str, Any]:
    """Gemini in europe-west4 at `base_url`/v1beta, its key in CORDON_PROVIDER_GEMINI."""
    return {
        "id": "gemini-eu",
        "provider": {"api": "gemini", "base_url": f"{base_url}/v1beta"},
        "secret_key_ref": {"env": "CORDON_PROVIDER_GEMINI"},
        "region": "europe-west4",
    }
